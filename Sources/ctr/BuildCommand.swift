import ArgumentParser
import Builder
import Errors
import Foundation
import Layers
import Sandbox

struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build an image from a Dockerfile (or Containerfile).",
        aliases: ["bud"])

    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("file")], help: "The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile).") var file: String?
    @Option(name: [.short, .customLong("tag")], help: "Name the image (repeatable).") var tags: [String] = []
    @Option(name: .customLong("build-arg"), help: "NAME=VALUE for an ARG (NAME alone takes it from the environment).") var buildArgs: [String] = []
    @Option(name: .customLong("build-arg-file"), help: "A file of NAME=VALUE lines.") var buildArgFiles: [String] = []
    @Option(name: .customLong("target"), help: "Build up to this stage (repeatable: several targets in one run, sharing their steps; -t and -o then take {target}, or one per target in order).") var targets: [String] = []
    @Flag(name: .customLong("no-cache"), help: "Run every step again.") var noCache = false
    @Flag(name: [.short, .long], help: "Print only the image id.") var quiet = false
    @Option(name: .customLong("label"), help: "KEY=VALUE label on the image (repeatable).") var labels: [String] = []
    @Option(help: "Network for RUN steps: none, host (default: a private network when pasta or slirp4netns can run, else host).") var network: String?
    @Option(name: .customLong("cache-dir"), help: "Keep the step cache in this directory.") var cacheDir: String?
    @Option(name: .customLong("digest-file"), help: "Write the image's manifest digest here.") var digestFile: String?
    @Option(name: .customLong("iidfile"), help: "Write the image id (sha256:…) here.") var iidFile: String?
    @Option(help: "Build for this platform (os/arch[/variant]): FROM pulls it and the image says it.") var platform: String?
    @Option(name: [.short, .customLong("output")], help: "type=local|tar|oci|docker|oci-archive|docker-archive|oci-dir|rootfs,dest=PATH (oci: tar=false for a layout dir; a bare PATH: type=local)") var outputs: [String] = []
    @Option(help: "Pull base images: missing (default), always, never.") var pull: String = "missing"
    @Option(name: .customLong("cache-from"), help: "A registry repository (REGISTRY/REPO[:TAG] or type=registry,ref=…) to take cached steps from.") var cacheFrom: [String] = []
    @Option(name: .customLong("cache-to"), help: "A registry repository to push this build's cached steps to.") var cacheTo: String?
    @Flag(name: .customLong("push"), help: "Push every -t name to its registry after the build.") var push = false
    @Option(name: .customLong("secret"), help: "id=ID,src=PATH (or env=VAR): a secret for RUN --mount=type=secret; never stored in the image.") var secrets: [String] = []
    @Option(name: .customLong("add-host"), help: "HOST:IP for /etc/hosts during RUN.") var addHosts: [String] = []
    @Option(name: .customLong("image-archive"), help: "NAME=PATH: FROM NAME takes the image from this OCI archive, OCI layout dir or docker-archive.") var imageArchives: [String] = []
    @Option(help: "How RUN steps are sandboxed: auto (default: the strongest this environment allows), userns, nested, chroot, container (only inside a container: RUN in it itself).") var isolation: String = "auto"
    @Option(help: "Progress on stderr: plain (default), tty (emphasised step lines; the default on a terminal), json (one object per event).") var progress: String?
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The build context directory; - reads a tar of it (or a lone Dockerfile) from stdin.") var context: String = "."

    func run() throws {
        let request: BuildRequest
        // a flag value it cannot use is shown with the usage (exit 64)
        do { request = try self.request() } catch let e as CtrError where e.code == .usage { throw ValidationError(e.message) }
        let store = try global.store()
        let (runtime, hooks) = Self.machinery(store: store, quiet: quiet, pull: pull, registry: registry)
        let results = try Builder.runTargets(request, store: store, runtime: runtime, hooks: hooks)
        for result in results {
            if !quiet {
                let names = result.names
                let which = results.count > 1 ? " (target \(result.target ?? "last"))" : ""
                Out.progress("COMMIT\(names.isEmpty ? "" : " " + names.joined(separator: " "))\(which)\n--> \(result.imageID.encoded.prefix(12)) (\(result.steps) steps, \(result.cached) cached)")
            }
            Out.line(result.imageID.encoded)
        }
    }

    /// The runtime and the hooks a build runs with (also the oci-build-task's builds).
    static func machinery(store: Store, quiet: Bool, pull: String, registry: RegistryFlags) -> (Runtime, BuildHooks) {
        let notices = Notices()
        var runtime = Runtime(store: store, notice: { notices.say($0) })
        runtime.selfPath = Run.selfPath()
        let hooks = BuildHooks(
            baseImage: { name, platform in try Run.image(name, store: store, policy: pull, platform: platform, registry: registry) },
            cacheImage: { name in try Run.image(name, store: store, policy: "always", platform: .current, registry: registry) },
            registry: { try RegistryAccess(registry.options()) },
            pushProgress: { quiet ? nil : ProgressView(verb: "push") },
            progress: { line in if !quiet { Out.write(2, Data((line + "\n").utf8)) } },
            event: { event in
                switch event {
                case .cacheImported(let from, let n): if !quiet { Out.progress("cache: \(n) steps from \(from)") }
                // a first build has nothing there yet: said, and the build goes on
                case .cacheUnavailable(let from, let error): Out.warn("--cache-from \(from): \(error)")
                case .cacheExported(let to, let n): if !quiet { Out.progress("cache: \(n) steps to \(to.string)") }
                case .unpacking(let mapping): RootlessNotes.mapping(mapping)
                case .unpacked(let reports): RootlessNotes.reports(reports)
                case .pushed(let to, let digest): if !quiet { Out.progress("pushed \(to.string): \(digest)") }
                }
            })
        return (runtime, hooks)
    }

    /// The flags as a build request.
    func request() throws -> BuildRequest {
        var r = BuildRequest(source: try BuildSource(context: context, file: file))
        if let platform {
            do { r.options.platform = try Platform(parsing: platform) } catch { throw ValidationError("--platform \(platform): \(error)") }
        }
        r.tagSpellings = tags
        // several targets: names with {target} are parsed once made (BuildRequest.perTarget)
        if targets.count <= 1 { r.options.tags = try tags.map { try Reference(parsing: $0) } }
        r.options.buildArgs = try BuildArgs.collect(files: buildArgFiles, args: buildArgs)
        if targets.count > 1 {
            r.options.targets = targets
        } else {
            r.options.target = targets.first
        }
        r.options.noCache = noCache
        for l in labels {
            let kv = l.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard !kv[0].isEmpty else { throw ValidationError("--label \(l.isEmpty ? "\"\"" : l): expected KEY=VALUE (the key is empty)") }
            r.options.labels[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        if let n = network, !["none", "host", "default"].contains(n) {
            throw ValidationError("--network \(n): expected none, host or default")
        }
        r.options.network = network == "default" ? nil : network
        r.options.cacheDir = cacheDir
        r.options.addHosts = addHosts
        r.options.quietSteps = quiet
        do { r.options.isolation = try IsolationRequest(parsing: isolation) } catch { throw ValidationError("\(error)") }
        if let progress {
            guard let m = ProgressMode(rawValue: progress) else { throw ValidationError("--progress \(progress): expected plain, tty or json") }
            r.options.progress = m
        } else {
            r.options.progress = isatty(2) != 0 ? .tty : .plain
        }
        r.secrets = try secrets.map { try BuildSecret(parsing: $0) }
        r.imageArchives = try imageArchives.map { try BaseImageArchive(parsing: $0) }
        r.outputs = try outputs.map { try BuildOutput(parsing: $0) }
        r.cacheFrom = cacheFrom.map { BuildCacheImage.reference($0) }
        r.cacheTo = try cacheTo.map { try Reference(parsing: BuildCacheImage.reference($0)) }
        r.digestFile = digestFile
        r.iidFile = iidFile
        r.push = push
        return r
    }
}
