import ArgumentParser
import Builder
import Errors
import Foundation
import Layers
import PyImages
import Sandbox

/// `ctr build-images`: pbrx's build-images, through ctr's Builder. The project's metadata and
/// bindep.txt become a multi-stage Dockerfile (PyImages.ImagesPlan); its targets (the base
/// image and one per console script) are built in one run, sharing the builder stage, with
/// the cache, isolation levels, outputs and pushes of `ctr build`.
struct BuildImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build-images",
        abstract: "Build images for a Python project with no Dockerfile, as pbrx build-images: {project}-base and one per console script.",
        discussion: """
            Reads pyproject.toml ([project] name, scripts, optional-dependencies) or setup.cfg \
            ([metadata] name, [entry_points] console_scripts, [extras], [options.extras_require]) \
            and bindep.txt (compile packages in the builder only, the others in the images; test \
            ignored). --print shows the Dockerfile it builds.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "The base image (it needs python3 with pip and venv).") var base: String = "docker.io/library/python:3-slim"
    @Option(help: "Put the images under this registry/repository prefix.") var prefix: String?
    @Option(help: "The images' tag.") var tag: String = "latest"
    @Flag(help: "Push every image after the build.") var push = false
    @Option(name: .customLong("find-links"), help: "A directory of wheels in the project (or a URL), for pip (repeatable).") var findLinks: [String] = []
    @Flag(name: .customLong("no-index"), help: "pip uses no package index (offline, with --find-links).") var noIndex = false
    @Flag(name: .customLong("print"), help: "Print the Dockerfile and build nothing.") var printOnly = false
    @Flag(name: .customLong("no-cache"), help: "Run every step again.") var noCache = false
    @Flag(name: [.short, .long], help: "Print only the image ids.") var quiet = false
    @Option(help: "Network for RUN steps: none, host (default as ctr build).") var network: String?
    @Option(help: "How RUN steps are sandboxed: auto, userns, nested, chroot, container.") var isolation: String = "auto"
    @Option(help: "Pull the base: missing (default), always, never.") var pull: String = "missing"
    @Option(name: [.short, .customLong("output")], help: "An output per image, as ctr build -o, with {target} in dest= (repeatable).") var outputs: [String] = []
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The project directory.") var project: String = "."

    func run() throws {
        let dir = URL(fileURLWithPath: project).standardizedFileURL.path
        let proj = try PythonProject.load(dir)
        let bindepPath = "\(dir)/bindep.txt"
        var bindep: Bindep?
        if let text = try? String(contentsOfFile: bindepPath, encoding: .utf8) { bindep = try Bindep.parse(text) }
        if let n = network, !["none", "host", "default"].contains(n) { throw ValidationError("--network \(n): expected none, host or default") }
        let store = try global.store()
        let os = try Self.osRelease(of: base, store: store, pull: pull, registry: registry)
        var plan = try ImagesPlan(project: proj, base: base, os: os, bindep: bindep)
        plan.noIndex = noIndex
        plan.findLinks = try findLinks.map { l in
            if l.contains("://") { return l }
            let abs = URL(fileURLWithPath: l, relativeTo: URL(fileURLWithPath: dir + "/")).standardizedFileURL.path
            guard abs == dir || abs.hasPrefix(dir + "/") else { throw CtrError.usage("--find-links \(l): not inside the project \(dir) (the builder sees only the project)") }
            guard FileManager.default.fileExists(atPath: abs) else { throw CtrError.notFound("--find-links \(l): no such directory") }
            return "/src" + abs.dropFirst(dir.count)
        }
        let dockerfile = plan.dockerfile
        if printOnly {
            Out.line(String(dockerfile.dropLast(dockerfile.hasSuffix("\n") ? 1 : 0)))
            return
        }
        // the Dockerfile goes beside the store, not into the project
        let tmp = "\(store.root)/build-tmp/images-\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try Data(dockerfile.utf8).write(to: URL(fileURLWithPath: "\(tmp)/Dockerfile"))

        var r = BuildRequest(source: .directory(dir, dockerfile: .path("\(tmp)/Dockerfile")))
        let targets = plan.targets
        let name = (prefix.map { $0.hasSuffix("/") ? $0 : $0 + "/" } ?? "") + "{target}:\(tag)"
        let names = targets.map { name.replacingOccurrences(of: "{target}", with: $0) }
        if targets.count > 1 {
            r.options.targets = targets
            r.tagSpellings = [name]
        } else {
            r.options.target = targets[0]
            r.tagSpellings = names
            r.options.tags = try names.map { try Reference(parsing: $0) }
        }
        r.options.noCache = noCache
        r.options.network = network == "default" ? nil : network
        r.options.quietSteps = quiet
        r.options.progress = isatty(2) != 0 ? .tty : .plain
        do { r.options.isolation = try IsolationRequest(parsing: isolation) } catch { throw ValidationError("\(error)") }
        r.outputs = try outputs.map { try BuildOutput(parsing: $0) }
        r.push = push
        let (runtime, hooks) = Build.machinery(store: store, quiet: quiet, pull: pull, registry: registry)
        let results = try Builder.runTargets(r, store: store, runtime: runtime, hooks: hooks)
        for (n, res) in zip(names, results) {
            if !quiet { Out.progress("COMMIT \(n)\n--> \(res.imageID.encoded.prefix(12))") }
            Out.line(quiet ? res.imageID.encoded : "\(n) \(res.imageID.encoded)")
        }
    }

    /// The base's /etc/os-release (or /usr/lib/os-release), read from its layers, topmost
    /// first: bindep's platforms and the package manager come from it.
    static func osRelease(of base: String, store: Store, pull: String, registry: RegistryFlags) throws -> OSRelease {
        let rec = try Run.image(base, store: store, policy: pull, platform: .current, registry: registry)
        let manifest = try store.manifest(rec.descriptor)
        let config = try store.config(manifest)
        let dirs = try store.writing { try store.unpackedLayers(manifest, config) }
        for f in ["/etc/os-release", "/usr/lib/os-release"] {
            if let text = ImageFiles.text(f, layers: dirs) { return OSRelease(parsing: text) }
        }
        throw CtrError.invalid("\(base): no /etc/os-release or /usr/lib/os-release in the image (bindep.txt needs to know its distribution)")
    }
}
