import ArgumentParser
import Builder
import enum Dockerfile.OptionList
import Foundation
import Layers
import struct HostOS.SysError
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
    @Option(help: "Build up to this stage.") var target: String?
    @Flag(name: .customLong("no-cache"), help: "Run every step again.") var noCache = false
    @Flag(name: [.short, .long], help: "Print only the image id.") var quiet = false
    @Option(name: .customLong("label"), help: "KEY=VALUE label on the image (repeatable).") var labels: [String] = []
    @Option(help: "Network for RUN steps: none, host (default: a private network when pasta or slirp4netns can run, else host).") var network: String?
    @Option(name: .customLong("cache-dir"), help: "Keep the step cache in this directory.") var cacheDir: String?
    @Option(name: .customLong("digest-file"), help: "Write the image's manifest digest here.") var digestFile: String?
    @Option(name: .customLong("iidfile"), help: "Write the image id (sha256:…) here.") var iidFile: String?
    @Option(help: "Build for this platform (os/arch[/variant]): FROM pulls it and the image says it.") var platform: String?
    @Option(name: [.short, .customLong("output")], help: "type=local|tar|oci-archive|docker-archive|oci-dir|rootfs,dest=PATH (a bare PATH: type=local)") var outputs: [String] = []
    @Option(help: "Pull base images: missing (default), always, never.") var pull: String = "missing"
    @Option(name: .customLong("cache-from"), help: "A registry repository (REGISTRY/REPO[:TAG] or type=registry,ref=…) to take cached steps from.") var cacheFrom: [String] = []
    @Option(name: .customLong("cache-to"), help: "A registry repository to push this build's cached steps to.") var cacheTo: String?
    @Flag(name: .customLong("push"), help: "Push every -t name to its registry after the build.") var push = false
    @Option(name: .customLong("secret"), help: "id=ID,src=PATH (or env=VAR): a secret for RUN --mount=type=secret; never stored in the image.") var secrets: [String] = []
    @Option(name: .customLong("add-host"), help: "HOST:IP for /etc/hosts during RUN.") var addHosts: [String] = []
    @Option(name: .customLong("image-archive"), help: "NAME=PATH: FROM NAME takes the image from this OCI archive, OCI layout dir or docker-archive.") var imageArchives: [String] = []
    @Option(help: "Progress on stderr: plain (default), tty (emphasised step lines; the default on a terminal), json (one object per event).") var progress: String?
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "The build context directory; - reads a tar of it (or a lone Dockerfile) from stdin.") var context: String = "."

    func run() throws {
        if push && tags.isEmpty { throw CLIError("--push needs a name to push to: -t REGISTRY/REPO:TAG") }
        let store = try global.store()
        // the whole build (stdin spooled into ingest/, --image-archive loads, the build, its
        // outputs) holds the gc lock shared: prune waits until it is done
        let hold = try store.holdForWriting()
        defer { hold.release() }
        // stdin: a Dockerfile (-f -) or the context (-), as docker build takes them; scratch
        // files and dirs of this command go when it ends
        var scratch: [String] = []
        defer { for d in scratch { _ = try? store.ops.removeTree(d) } }
        func scratchDir() throws -> String {
            let d = "\(store.root)/build-tmp/cli-\(UUID().uuidString.lowercased())"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            scratch.append(d)
            return d
        }
        var contextDir = context, dockerfile = file
        if file == "-" && context == "-" { throw ValidationError("stdin can be the Dockerfile (-f -) or the context (-), not both") }
        // stdin spooled, then named in a scratch dir (the name is what errors show: Dockerfile:3)
        func spooled(as name: String) throws -> String {
            let spool = try Self.spoolStdin(store)
            let path = "\(try scratchDir())/\(name)"
            guard rename(spool, path) == 0 else { unlink(spool); throw SysError.errno("rename", "cannot move \(spool)") }
            return path
        }
        if file == "-" { dockerfile = try spooled(as: "Dockerfile") }
        if context == "-" {
            let input = try spooled(as: "stdin")
            contextDir = "\(try scratchDir())/context"
            try FileManager.default.createDirectory(atPath: contextDir, withIntermediateDirectories: true)
            if (try? LayerOps.scan(blob: input)) != nil {
                do { _ = try store.ops.apply(blob: input, to: contextDir, tree: .plain) } catch { throw CLIError("the context on stdin: \(error)") }
            } else if dockerfile == nil {
                // not a tar: a Dockerfile with an empty context
                dockerfile = input
            } else {
                throw CLIError("the context on stdin is not a tar (plain, gzip or zstd)")
            }
        }
        var o = BuildOptions(context: contextDir)
        o.file = dockerfile
        if let platform {
            do { o.platform = try Platform(parsing: platform) } catch { throw ValidationError("--platform \(platform): \(error)") }
        }
        o.tags = try tags.map { try Reference(parsing: $0) }
        for f in buildArgFiles {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { throw CLIError("--build-arg-file \(f): cannot read it") }
            for line in text.split(separator: "\n") {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty || l.hasPrefix("#") { continue }
                try Self.addArg(String(l), to: &o.buildArgs, flag: "--build-arg-file \(f)")
            }
        }
        for a in buildArgs { try Self.addArg(a, to: &o.buildArgs, flag: "--build-arg") }
        o.target = target
        o.noCache = noCache
        for l in labels {
            let kv = l.split(separator: "=", maxSplits: 1).map(String.init)
            o.labels[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        if let n = network, !["none", "host", "default"].contains(n) {
            throw ValidationError("--network \(n): expected none, host or default")
        }
        o.network = network == "default" ? nil : network
        o.cacheDir = cacheDir
        o.addHosts = addHosts
        o.quietSteps = quiet
        if let progress {
            guard let m = ProgressMode(rawValue: progress) else { throw ValidationError("--progress \(progress): expected plain, tty or json") }
            o.progress = m
        } else {
            o.progress = isatty(2) != 0 ? .tty : .plain
        }
        var secretFiles: [String] = []
        defer { for f in secretFiles { unlink(f) } }
        for spec in secrets {
            let f = OptionList.parse(spec)
            guard let id = f["id"], !id.isEmpty else { throw ValidationError("--secret \(spec): expected id=ID,src=PATH or id=ID,env=VAR") }
            if let src = f["src"] ?? f["source"] {
                let path = URL(fileURLWithPath: src).standardizedFileURL.path
                guard access(path, R_OK) == 0 else { throw CLIError("--secret \(spec): cannot read \(src)") }
                o.secrets[id] = path
            } else {
                let name = f["env"] ?? id
                guard let v = ProcessInfo.processInfo.environment[name] else { throw CLIError("--secret \(spec): $\(name) is not set") }
                // an env secret goes through a private file that is removed after the build
                let dir = (ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { access($0, W_OK) == 0 ? $0 : nil }) ?? NSTemporaryDirectory()
                let path = "\(dir)/ctr-secret-\(getpid())-\(id)"
                try Store.writeFile(path: path, data: Data(v.utf8), sync: false, mode: 0o600)
                secretFiles.append(path)
                o.secrets[id] = path
            }
        }
        enum Output { case archive(ArchiveFormat), files(String) }
        var outs: [(Output, String)] = []
        // base images a CI job already has, by the name the Dockerfile uses
        var archived: [String: ImageRecord] = [:]
        for spec in imageArchives {
            let kv = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else { throw ValidationError("--image-archive \(spec): expected NAME=PATH") }
            let images: [CopiedImage]
            do { images = try ImageArchive.load(kv[1], into: store, progress: nil).images } catch { throw CLIError("--image-archive \(spec): \(error)") }
            guard let first = images.first else { throw CLIError("--image-archive \(spec): the archive holds no image") }
            archived[kv[0]] = ImageRecord(name: nil, descriptor: first.descriptor)
        }
        for spec in outputs {
            // a bare path is a local export, as in docker build -o DIR
            let fields = spec.contains("=") ? OptionList.parse(spec) : ["type": "local", "dest": spec]
            guard let type = fields["type"], let dest = fields["dest"] else { throw ValidationError("--output \(spec): expected type=TYPE,dest=PATH") }
            switch type {
            case "rootfs", "local", "tar": outs.append((.files(type), dest))
            default:
                guard let fmt = ArchiveFormat(rawValue: type) else {
                    throw ValidationError("--output \(spec): type \(type) is not supported (local, tar, oci-archive, docker-archive, oci-dir, rootfs)")
                }
                outs.append((.archive(fmt), dest))
            }
        }
        let notices = Notices()
        var runtime = Runtime(store: store, notice: { notices.say($0) })
        runtime.selfPath = Run.selfPath()
        let quiet = self.quiet
        let buildPlatform = o.platform
        let builder = Builder(store: store, runtime: runtime,
                              progress: { line in if !quiet { Out.write(2, Data((line + "\n").utf8)) } },
                              resolveImage: { name, plat in
                                  if let r = archived[name] { return r }
                                  return try Run.image(name, store: store, policy: pull, platform: plat ?? buildPlatform, registry: registry)
                              })
        for spec in cacheFrom {
            let ref = Self.cacheRef(spec)
            do {
                let rec = try Run.image(ref, store: store, policy: "always", platform: .current, registry: registry)
                let n = try BuildCacheImage.importEntries(rec, store: store, cacheDir: cacheDir)
                if !quiet { Out.write(2, Data("cache: \(n) steps from \(ref)\n".utf8)) }
            } catch {
                // a first build has nothing there yet: say so and build
                Out.write(2, Data("warning: --cache-from \(ref): \(error)\n".utf8))
            }
        }
        let result: BuildResult
        do { result = try builder.build(o) } catch let e as BuildError { throw CLIError(e.message) }
        if let cacheTo {
            let ref = try Reference(parsing: Self.cacheRef(cacheTo))
            try BuildCacheImage.make(result.cacheEntries, store: store, name: ref, platform: o.platform)
            let access = try RegistryAccess(registry.options())
            let view = quiet ? nil : ProgressView(verb: "push")
            _ = try ImagePush.run(try store.resolve(ref.string), to: ref, store: store, access: access, progress: view, chunkSize: nil)
            view?.finish()
            if !quiet { Out.write(2, Data("cache: \(result.cacheEntries.count) steps to \(ref.string)\n".utf8)) }
        }
        if let digestFile {
            try Store.atomicWrite(path: digestFile, data: Data(result.manifest.digest.string.utf8))
        }
        if let iidFile {
            try Store.atomicWrite(path: iidFile, data: Data(result.imageID.string.utf8))
        }
        for (kind, dest) in outs {
            switch kind {
            case .archive(let fmt):
                // under the -t names (an image saved by id is nameless)
                let refs = o.tags.isEmpty ? [result.imageID.encoded] : o.tags.map(\.string)
                try ImageArchive.save(refs, from: store, format: fmt, output: dest)
            case .files("rootfs"):
                try Unpack.unpack(store: store, image: result.imageID.encoded, destination: dest)
            case .files(let type):
                // BuildKit's local (the files in DEST) and tar (a tar of them)
                let info = try ImageInfo(try store.resolve(result.imageID.encoded), store: store)
                let root = type == "local" ? dest : "\(try scratchDir())/files"
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
                try Unpack.applyLayers(store: store, info: info, to: root)
                if type == "tar" { _ = try store.ops.create(from: root, to: dest, tree: .plain, compression: .none) }
            }
        }
        if push {
            let access = try RegistryAccess(registry.options())
            let record = try store.resolve(result.imageID.encoded)
            for t in o.tags {
                let view = quiet ? nil : ProgressView(verb: "push")
                let pushed = try ImagePush.run(record, to: t, store: store, access: access, progress: view, chunkSize: nil)
                view?.finish()
                if !quiet { Out.write(2, Data("pushed \(t.string): \(pushed.digest)\n".utf8)) }
            }
        }
        if !quiet {
            Out.write(2, Data("COMMIT\(tags.isEmpty ? "" : " " + tags.joined(separator: " "))\n--> \(result.imageID.encoded.prefix(12)) (\(result.steps) steps, \(result.cached) cached)\n".utf8))
        }
        Out.line(result.imageID.encoded)
    }

    /// REGISTRY/REPO[:TAG], or BuildKit's type=registry,ref=REGISTRY/REPO[:TAG]
    static func cacheRef(_ spec: String) -> String {
        guard spec.contains("=") else { return spec }
        return OptionList.parse(spec)["ref"] ?? spec
    }

    static func addArg(_ a: String, to args: inout [String: String], flag: String) throws {
        let kv = a.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard !kv[0].isEmpty else { throw ValidationError("\(flag) \(a): expected NAME=VALUE") }
        if kv.count == 2 { args[kv[0]] = kv[1] } else if let v = ProcessInfo.processInfo.environment[kv[0]] { args[kv[0]] = v }
    }
}
