import Errors
import Foundation
import enum HostOS.IDMapping
import Layers
import Sandbox

/// What `Builder.run` reports as it goes (besides the steps' lines), for the CLI to show.
public enum BuildEvent {
    /// Steps taken into the local cache from a --cache-from image.
    case cacheImported(from: String, steps: Int)
    /// A --cache-from image could not be had (a first build has none yet); the build goes on.
    case cacheUnavailable(from: String, error: any Error)
    /// The --cache-to image was pushed.
    case cacheExported(to: Reference, steps: Int)
    /// A files output (rootfs, local, tar) is about to write the image's files with this mapping.
    case unpacking(IDMapping)
    /// It wrote them.
    case unpacked([ApplyReport])
    /// The image was pushed to a -t name (--push).
    case pushed(Reference, Digest)
}

/// What the build takes from the host program: pulls (with its policy and progress), registry
/// access, and where the progress goes.
public struct BuildHooks {
    /// A FROM image not given by --image-archive: from the store or pulled (per --pull).
    public var baseImage: (_ name: String, _ platform: Platform) throws -> ImageRecord
    /// A --cache-from image, pulled.
    public var cacheImage: (_ name: String) throws -> ImageRecord
    /// The registries, for --cache-to and --push.
    public var registry: () throws -> RegistryAccess
    /// A view for one push's progress (nil: none); `finish` is called when the push ends.
    public var pushProgress: () -> (any TransferProgress)?
    /// A line of the steps' progress (stderr).
    public var progress: (String) -> Void
    public var event: (BuildEvent) -> Void

    public init(baseImage: @escaping (String, Platform) throws -> ImageRecord,
                cacheImage: @escaping (String) throws -> ImageRecord,
                registry: @escaping () throws -> RegistryAccess,
                pushProgress: @escaping () -> (any TransferProgress)? = { nil },
                progress: @escaping (String) -> Void = { _ in },
                event: @escaping (BuildEvent) -> Void = { _ in }) {
        self.baseImage = baseImage
        self.cacheImage = cacheImage
        self.registry = registry
        self.pushProgress = pushProgress
        self.progress = progress
        self.event = event
    }
}

/// Directories of one `ctr build` invocation under ROOT/build-tmp, removed at its end.
final class BuildScratch {
    let store: Store
    private(set) var dirs: [String] = []

    init(_ store: Store) { self.store = store }

    func dir() throws -> String {
        let d = "\(store.root)/build-tmp/cli-\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        dirs.append(d)
        return d
    }

    func removeAll() {
        for d in dirs { _ = try? store.ops.removeTree(d) }
        dirs.removeAll()
    }
}

extension Builder {
    /// `ctr build`: the context and Dockerfile (standard input spooled), secrets, base images
    /// from archives, cached steps from a registry, the build, then its actions in order (cache
    /// export, digest and id files, outputs, pushes). The whole run holds the store's gc lock
    /// shared, so prune waits; its scratch files go when it ends.
    public static func run(_ request: BuildRequest, store: Store, runtime: Runtime, hooks: BuildHooks,
                           stdin: Int32 = 0) throws -> BuildResult {
        try runTargets(request, store: store, runtime: runtime, hooks: hooks, stdin: stdin)[0]
    }

    /// `run` for every target of the request (several `--target`s: one run, the steps they
    /// share built once, each target's names and outputs its own).
    public static func runTargets(_ request: BuildRequest, store: Store, runtime: Runtime, hooks: BuildHooks,
                                  stdin: Int32 = 0) throws -> [BuildResult] {
        let parts = try request.perTarget()
        for p in parts where p.push && p.options.tags.isEmpty {
            throw CtrError.build("--push needs a name to push to: -t REGISTRY/REPO:TAG\(parts.count > 1 ? " (one per target, or with {target})" : "")")
        }
        let hold = try store.holdForWriting()
        defer { hold.release() }
        let scratch = BuildScratch(store)
        defer { scratch.removeAll() }
        var o = request.options
        (o.context, o.file) = try prepare(request.source, store: store, scratch: scratch, stdin: stdin)
        var secretFiles: [String] = []
        defer { for f in secretFiles { unlink(f) } }
        for s in request.secrets {
            let (path, owned) = try materialize(s, environment: request.environment)
            if owned { secretFiles.append(path) }
            o.secrets[s.id] = path
        }
        o.keepPaths += request.writesTo + o.secrets.values
        // base images a CI job already has, by the name the Dockerfile uses
        var archived = request.baseImages
        for a in request.imageArchives { archived[a.name] = try loadBaseImage(a, into: store) }
        let buildPlatform = o.platform
        let builder = Builder(store: store, runtime: runtime, progress: hooks.progress, resolveImage: { name, plat in
            if let r = archived[name] { return r }
            return try hooks.baseImage(name, plat ?? buildPlatform)
        })
        for ref in request.cacheFrom {
            do {
                let n = try BuildCacheImage.importEntries(try hooks.cacheImage(ref), store: store, cacheDir: o.cacheDir)
                hooks.event(.cacheImported(from: ref, steps: n))
            } catch {
                hooks.event(.cacheUnavailable(from: ref, error: error))
            }
        }
        if parts.count > 1 { o.targetTags = parts.map(\.options.tags) }
        var results = try builder.buildTargets(o)
        for i in results.indices where i < parts.count { results[i].names = parts[i].tagSpellings }
        // one registry access for the cache export and every push: clients and tokens shared
        var access: RegistryAccess?
        let registry: () throws -> RegistryAccess = {
            if let access { return access }
            let a = try hooks.registry()
            access = a
            return a
        }
        for (result, part) in zip(results, parts) {
            for action in part.actions(imageID: result.imageID, manifest: result.manifest.digest) {
                try perform(action, result: result, platform: o.platform, store: store, scratch: scratch,
                            registry: registry, hooks: hooks)
            }
        }
        return results
    }

    /// A base image from an archive (--image-archive, IMAGE_ARG_), into the store.
    public static func loadBaseImage(_ a: BaseImageArchive, into store: Store) throws -> ImageRecord {
        do {
            return try ImageTransport.load(a.location, into: store)
        } catch {
            throw CtrError.build("\(a.display): \(error)", cause: error)
        }
    }

    /// The context directory and Dockerfile (nil: the context's) to build from, with what
    /// standard input gives spooled into `scratch` first: a Dockerfile (`-f -`) named
    /// `Dockerfile`, or the context (`-`): a tar unpacked into a directory, or else a lone
    /// Dockerfile (named `stdin`) with an empty context. The name is what errors show
    /// (Dockerfile:3).
    static func prepare(_ source: BuildSource, store: Store, scratch: BuildScratch,
                        stdin: Int32) throws -> (context: String, dockerfile: String?) {
        func spooled(as name: String) throws -> String {
            let spool = try store.spool(fd: stdin)
            let path = "\(try scratch.dir())/\(name)"
            guard rename(spool, path) == 0 else { unlink(spool); throw CtrError.errno("rename", "cannot move \(spool)") }
            return path
        }
        switch source {
        case .directory(let dir, .inContext): return (dir, nil)
        case .directory(let dir, .path(let f)): return (dir, f)
        case .directory(let dir, .stdin): return (dir, try spooled(as: "Dockerfile"))
        case .stdin(let dockerfile):
            let input = try spooled(as: "stdin")
            let context = "\(try scratch.dir())/context"
            try FileManager.default.createDirectory(atPath: context, withIntermediateDirectories: true)
            if (try? LayerOps.scan(blob: input)) != nil {
                do { _ = try store.ops.apply(blob: input, to: context, tree: .plain) } catch { throw CtrError.build("the context on stdin: \(error)", cause: error) }
                return (context, dockerfile)
            }
            // not a tar: a Dockerfile with an empty context
            guard dockerfile == nil else { throw CtrError.build("the context on stdin is not a tar (plain, gzip or zstd)") }
            return (context, input)
        }
    }

    /// A secret's file: the one named (checked readable), or for a variable a private file
    /// (0600, in $XDG_RUNTIME_DIR when writable, else the temporary dir) that the caller
    /// removes after the build (`owned`).
    static func materialize(_ s: BuildSecret, environment: [String: String]) throws -> (path: String, owned: Bool) {
        switch s.source {
        case .file(let src):
            let path = URL(fileURLWithPath: src).standardizedFileURL.path
            guard access(path, R_OK) == 0 else { throw CtrError.build("--secret \(s.spec): cannot read \(src)") }
            return (path, false)
        case .env(let name):
            guard let v = environment[name] else { throw CtrError.build("--secret \(s.spec): $\(name) is not set") }
            let dir = (environment["XDG_RUNTIME_DIR"].flatMap { access($0, W_OK) == 0 ? $0 : nil }) ?? NSTemporaryDirectory()
            let path = "\(dir)/ctr-secret-\(getpid())-\(s.id)"
            try Store.writeFile(path: path, data: Data(v.utf8), sync: false, mode: 0o600)
            return (path, true)
        }
    }

    static func perform(_ action: BuildAction, result: BuildResult, platform: Platform, store: Store,
                        scratch: BuildScratch, registry: () throws -> RegistryAccess, hooks: BuildHooks) throws {
        func push(_ record: ImageRecord, to ref: Reference, access: RegistryAccess) throws -> ImagePush.Result {
            let view = hooks.pushProgress()
            defer { view?.finish() }
            return try ImagePush.run(record, to: ref, store: store, access: access, progress: view, chunkSize: nil)
        }
        func unpacking(_ write: (ImageRecord, @escaping () -> Void) throws -> [ApplyReport]) throws {
            let reports = try write(try store.resolve(result.imageID.encoded), { hooks.event(.unpacking(store.ops.mapping)) })
            hooks.event(.unpacked(reports))
        }
        switch action {
        case .exportCache(let ref):
            try BuildCacheImage.make(result.cacheEntries, store: store, name: ref, platform: platform)
            _ = try push(try store.resolve(ref.string), to: ref, access: try registry())
            hooks.event(.cacheExported(to: ref, steps: result.cacheEntries.count))
        case .writeFile(let path, let contents):
            try Store.atomicWrite(path: path, data: Data(contents.utf8))
        case .save(let names, let format, let dest):
            try ImageArchive.save(names, from: store, format: format, output: dest)
        case .rootfs(let dest):
            try unpacking { try ImageUnpack.unpack($0, store: store, to: dest, applying: $1) }
        case .files(let dest):
            try unpacking { try ImageUnpack.files($0, store: store, to: dest, applying: $1) }
        case .tar(let dest):
            let files = "\(try scratch.dir())/files"
            try unpacking { try ImageUnpack.tar($0, store: store, to: dest, scratch: files, applying: $1) }
        case .push(let ref):
            let pushed = try push(try store.resolve(result.imageID.encoded), to: ref, access: try registry())
            hooks.event(.pushed(ref, pushed.digest))
        }
    }
}
