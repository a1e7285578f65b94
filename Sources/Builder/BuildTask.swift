import Errors
import HostOS
import Foundation
import Layers

/// Concourse's oci-build-task (vito/oci-build-task and its forks) done by ctr, unprivileged:
/// its params (environment variables, or the oci-image prototype's JSON request) become
/// builds, and the builds the task's outputs (`image/image.tar`, `image/digest`, …), exactly
/// where and as upstream writes them. Parsing is pure (`BuildTaskParams`); `BuildTask.run`
/// carries the builds out through the caller's build function.
public struct BuildTaskParams: Sendable, Equatable {
    public struct Pair: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { (self.name, self.value) = (name, value) }
    }

    public var context = "."
    /// Default: CONTEXT/Dockerfile.
    public var dockerfile: String?
    /// BUILD_ARG_*, in the environment's order.
    public var buildArgs: [Pair] = []
    public var buildArgsFile: String?
    public var target: String?
    public var targetFile: String?
    public var additionalTargets: [String] = []
    public var labels: [Pair] = []
    public var labelsFile: String?
    /// BUILDKIT_SECRET_<id>: id → file.
    public var secretFiles: [Pair] = []
    /// BUILDKIT_SECRETTEXT_<id>: id → the secret itself.
    public var secretTexts: [Pair] = []
    /// IMAGE_ARG_<name>: name → an image tarball (docker-archive, oci-archive) or OCI layout dir.
    public var imageArgs: [Pair] = []
    public var platform: String?
    public var outputOCI = false
    public var unpackRootfs = false
    public var registryMirrors: [String] = []
    /// BUILDKIT_ADD_HOSTS: host=ip pairs.
    public var addHosts: [Pair] = []
    /// A directory holding config.json (registry credentials).
    public var dockerConfig: String?
    /// The basic-auth fork's LOGIN=PASS, PASS=user:password, REG_URL.
    public var login: Login?
    public var debug = false
    /// The output the image goes to (`image`; the prototype names it).
    public var output = "image"
    /// Whether `cache/` is used: the task's cache dir exists (the prototype: `cache: true`).
    public var cache: Bool?
    /// CTR_CACHE_MAX: cache/ is pruned to this many bytes, least recently used first.
    public var cacheMax: Int64 = 10 << 30

    public struct Login: Sendable, Equatable {
        public var registry: String
        public var user: String
        public var password: String
    }

    public init() {}

    /// From the task's environment, as upstream reads it: CONTEXT, DOCKERFILE,
    /// ADDITIONAL_TARGETS, REGISTRY_MIRRORS and BUILDKIT_ADD_HOSTS by their exact names;
    /// every other plain param also lower-cased and without underscores (envconfig's forms);
    /// the prefixed ones (BUILD_ARG_, LABEL_, …) case-sensitively, the rest of the name kept.
    /// An empty value is unset; unknown variables are ignored.
    public init(environment env: [String: String], order: [String] = []) throws(CtrError) {
        func exact(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        func plain(_ k: String) -> String? {
            for form in [k, k.lowercased(), k.replacingOccurrences(of: "_", with: ""), k.lowercased().replacingOccurrences(of: "_", with: "")] {
                if let v = exact(form) { return v }
            }
            return nil
        }
        func bool(_ k: String) throws(CtrError) -> Bool {
            guard let v = plain(k) else { return false }
            switch v {
            case "1", "t", "T", "true", "TRUE", "True": return true
            case "0", "f", "F", "false", "FALSE", "False": return false
            default: throw CtrError.usage("\(k)=\(v): expected true or false")
            }
        }
        func list(_ v: String?) -> [String] { v.map { $0.split(separator: ",", omittingEmptySubsequences: true).map(String.init) } ?? [] }
        // the environment's order for the prefixed params (a later one wins, as upstream)
        let keys = order.isEmpty ? env.keys.sorted() : order.filter { env[$0] != nil }
        func prefixed(_ p: String) -> [Pair] {
            keys.filter { $0.hasPrefix(p) && $0.count > p.count }.map { Pair(String($0.dropFirst(p.count)), env[$0]!) }
        }
        context = exact("CONTEXT") ?? "."
        dockerfile = exact("DOCKERFILE")
        buildArgs = prefixed("BUILD_ARG_")
        buildArgsFile = plain("BUILD_ARGS_FILE")
        target = plain("TARGET")
        targetFile = plain("TARGET_FILE")
        additionalTargets = list(exact("ADDITIONAL_TARGETS"))
        labels = prefixed("LABEL_")
        labelsFile = plain("LABELS_FILE")
        secretFiles = prefixed("BUILDKIT_SECRET_")
        secretTexts = prefixed("BUILDKIT_SECRETTEXT_")
        imageArgs = prefixed("IMAGE_ARG_")
        platform = plain("IMAGE_PLATFORM")
        outputOCI = try bool("OUTPUT_OCI")
        unpackRootfs = try bool("UNPACK_ROOTFS")
        registryMirrors = list(exact("REGISTRY_MIRRORS"))
        addHosts = try Self.hosts(exact("BUILDKIT_ADD_HOSTS"))
        dockerConfig = exact("DOCKER_CONFIG")
        debug = try bool("DEBUG")
        if let l = exact("LOGIN"), l.lowercased() == "pass" {
            guard let pass = exact("PASS"), let colon = pass.firstIndex(of: ":") else {
                throw CtrError.usage("LOGIN=PASS needs PASS=USER:PASSWORD")
            }
            login = Login(registry: exact("REG_URL") ?? "https://index.docker.io/v1/",
                          user: String(pass[..<colon]), password: String(pass[pass.index(after: colon)...]))
        }
        if let m = exact("CTR_CACHE_MAX") {
            guard let n = Self.bytes(m) else { throw CtrError.usage("CTR_CACHE_MAX=\(m): expected a size (10g, 500m, bytes)") }
            cacheMax = n
        }
    }

    /// The oci-image prototype's request: `{"object": {…}, "response_path": …}`. Every key of
    /// the object must be known; `context` and `output` are required.
    public static func prototype(_ data: Data) throws(CtrError) -> (BuildTaskParams, responsePath: String?) {
        guard let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let obj = top["object"] as? [String: Any] else {
            throw CtrError.invalid("the request on stdin is not {\"object\": {…}, \"response_path\": …}")
        }
        let known: Set<String> = ["debug", "context", "context_inputs", "dockerfile", "output", "cache", "target",
                                  "additional_targets", "build_args", "registry_mirrors", "labels", "buildkit_secrets",
                                  "unpack_rootfs", "image_args", "add_hosts"]
        if let unknown = obj.keys.sorted().first(where: { !known.contains($0) }) {
            throw CtrError.invalid("object.\(unknown): not a field of the oci-image prototype")
        }
        func string(_ k: String) throws(CtrError) -> String? {
            guard let v = obj[k] else { return nil }
            guard let s = v as? String else { throw CtrError.invalid("object.\(k): expected a string") }
            return s.isEmpty ? nil : s
        }
        func strings(_ k: String) throws(CtrError) -> [String] {
            guard let v = obj[k] else { return [] }
            guard let a = v as? [String] else { throw CtrError.invalid("object.\(k): expected a list of strings") }
            return a
        }
        func bool(_ k: String) throws(CtrError) -> Bool {
            guard let v = obj[k] else { return false }
            guard let b = v as? Bool else { throw CtrError.invalid("object.\(k): expected true or false") }
            return b
        }
        func pairs(_ k: String) throws(CtrError) -> [Pair] {
            try strings(k).map { (s: String) throws(CtrError) -> Pair in
                guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { throw CtrError.invalid("object.\(k): \(s): expected NAME=VALUE") }
                return Pair(String(s[..<eq]), String(s[s.index(after: eq)...]))
            }
        }
        var p = BuildTaskParams()
        guard let context = try string("context") else { throw CtrError.invalid("object.context: required") }
        guard let output = try string("output") else { throw CtrError.invalid("object.output: required") }
        p.context = context
        p.output = output
        p.dockerfile = try string("dockerfile")
        p.cache = try bool("cache")
        p.target = try string("target")
        p.additionalTargets = try strings("additional_targets")
        p.buildArgs = try pairs("build_args")
        p.registryMirrors = try strings("registry_mirrors")
        p.labels = try pairs("labels")
        if let s = obj["buildkit_secrets"] {
            guard let m = s as? [String: String] else { throw CtrError.invalid("object.buildkit_secrets: expected {id: path}") }
            p.secretFiles = m.keys.sorted().map { Pair($0, m[$0]!) }
        }
        p.unpackRootfs = try bool("unpack_rootfs")
        p.imageArgs = try pairs("image_args")
        p.addHosts = try hosts(try string("add_hosts"))
        p.debug = try bool("debug")
        return (p, top["response_path"] as? String)
    }

    /// `host=ip,host2=ip2`.
    static func hosts(_ s: String?) throws(CtrError) -> [Pair] {
        guard let s else { return [] }
        return try s.split(separator: ",").map { (h: Substring) throws(CtrError) -> Pair in
            let kv = h.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else { throw CtrError.usage("BUILDKIT_ADD_HOSTS: \(h): expected HOST=IP") }
            return Pair(kv[0], kv[1])
        }
    }

    static func bytes(_ s: String) -> Int64? {
        let units: [Character: Int64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
        var t = s.lowercased()
        if t.hasSuffix("b") { t.removeLast() }
        if let u = t.last, let m = units[u], let n = Int64(t.dropLast()) { return n * m }
        return Int64(t)
    }
}

/// One build of the task: a target (nil: the Dockerfile's last stage) and the directory its
/// outputs go to.
public struct BuildTaskTarget: Sendable, Equatable {
    public var target: String?
    public var outputDir: String
    public var request: BuildRequest
}

extension BuildRequest: Equatable {
    public static func == (a: BuildRequest, b: BuildRequest) -> Bool {
        a.source == b.source && a.options.context == b.options.context && a.options.file == b.options.file
            && a.options.buildArgs == b.options.buildArgs && a.options.target == b.options.target
            && a.options.labels == b.options.labels && a.options.addHosts == b.options.addHosts
            && a.imageArchives == b.imageArchives && a.secrets == b.secrets && a.outputs == b.outputs
    }
}

public enum BuildTask {
    /// The name FROM ${NAME} resolves to for IMAGE_ARG_NAME (its archive, never a pull).
    public static func imageArgReference(_ name: String) -> String { "ctr-image-arg/\(name.lowercased())" }

    /// The task's builds, in order: each additional target (exported to `./TARGET/` when that
    /// output exists), then the main one (to the output dir, when it exists). Files the
    /// params name are read here: a missing one is an error before anything is built.
    /// `secretDir` is where BUILDKIT_SECRETTEXT_ values are written (0600).
    public static func plan(_ p: BuildTaskParams, cwd: String, secretDir: String) throws -> [BuildTaskTarget] {
        func path(_ s: String) -> String { s.hasPrefix("/") ? s : "\(cwd)/\(s)" }
        func isDir(_ s: String) -> Bool {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: s, isDirectory: &isDir) && isDir.boolValue
        }
        func lines(_ file: String, _ param: String) throws -> [String] {
            guard let text = try? String(contentsOfFile: path(file), encoding: .utf8) else {
                throw CtrError.notFound("\(param)=\(file): cannot read it")
            }
            return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        let context = path(p.context)
        guard isDir(context) else { throw CtrError.notFound("CONTEXT=\(p.context): no such directory") }
        let dockerfile = path(p.dockerfile ?? "\(p.context)/Dockerfile")
        guard FileManager.default.fileExists(atPath: dockerfile) else {
            throw CtrError.notFound("DOCKERFILE=\(p.dockerfile ?? "\(p.context)/Dockerfile"): no such file")
        }
        // build args: the params, the file, then the image args (a later one wins)
        var args: [String: String] = [:]
        for a in p.buildArgs { args[a.name] = a.value }
        if let f = p.buildArgsFile {
            for l in try lines(f, "BUILD_ARGS_FILE") {
                let kv = l.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard !kv[0].isEmpty else { throw CtrError.invalid("BUILD_ARGS_FILE=\(f): \(l): expected NAME=VALUE") }
                args[kv[0]] = kv.count == 2 ? kv[1] : ""
            }
        }
        var archives: [BaseImageArchive] = []
        for a in p.imageArgs {
            let file = path(a.value)
            guard FileManager.default.fileExists(atPath: file) else { throw CtrError.notFound("IMAGE_ARG_\(a.name)=\(a.value): no such file") }
            let ref = imageArgReference(a.name)
            args[a.name] = ref
            var archive = try BaseImageArchive(parsing: "\(ref)=\(file)")
            archive.label = "IMAGE_ARG_\(a.name)=\(a.value)"
            archives.append(archive)
        }
        var labels: [String: String] = [:]
        for l in p.labels { labels[l.name] = l.value }
        if let f = p.labelsFile {
            for l in try lines(f, "LABELS_FILE") {
                let kv = l.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard !kv[0].isEmpty else { throw CtrError.invalid("LABELS_FILE=\(f): \(l): expected KEY=VALUE") }
                labels[kv[0]] = kv.count == 2 ? kv[1] : ""
            }
        }
        var target = p.target
        if let f = p.targetFile {
            guard let t = try? String(contentsOfFile: path(f), encoding: .utf8) else { throw CtrError.notFound("TARGET_FILE=\(f): cannot read it") }
            target = t.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var secrets: [String: BuildSecret] = [:]
        for s in p.secretFiles {
            guard FileManager.default.fileExists(atPath: path(s.value)) else { throw CtrError.notFound("BUILDKIT_SECRET_\(s.name)=\(s.value): no such file") }
            secrets[s.name] = try BuildSecret(parsing: "id=\(s.name),src=\(path(s.value))")
        }
        if !p.secretTexts.isEmpty {
            try FileManager.default.createDirectory(atPath: secretDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        for s in p.secretTexts {
            let file = "\(secretDir)/\(s.name.replacingOccurrences(of: "/", with: "_"))"
            try Store.writeFile(path: file, data: Data(s.value.utf8), sync: false, mode: 0o600)
            secrets[s.name] = try BuildSecret(parsing: "id=\(s.name),src=\(file)")
        }
        let platform: Platform
        if let s = p.platform {
            do { platform = try Platform(parsing: s) } catch { throw CtrError.usage("IMAGE_PLATFORM=\(s): \(error)") }
        } else {
            platform = .current
        }

        func request(_ t: String?, outputDir: String) throws -> BuildRequest {
            var r = BuildRequest(source: .directory(context, dockerfile: .path(dockerfile)))
            r.options.buildArgs = args
            r.options.labels = labels
            r.options.target = t
            r.options.platform = platform
            r.options.addHosts = p.addHosts.map { "\($0.name):\($0.value)" }
            r.options.quietSteps = false
            r.imageArchives = archives
            r.secrets = secrets.keys.sorted().map { secrets[$0]! }
            let out = path(outputDir)
            if isDir(out) {
                if p.outputOCI {
                    r.outputs = [.archive(.ociArchive, dest: "\(out)/image.tar"), .archive(.ociDir, dest: "\(out)/image")]
                } else {
                    r.outputs = [.archive(.dockerArchive, dest: "\(out)/image.tar")]
                    if p.unpackRootfs { r.outputs.append(.rootfs(dest: out)) }
                }
            }
            return r
        }
        var out: [BuildTaskTarget] = []
        for t in p.additionalTargets {
            out.append(BuildTaskTarget(target: t, outputDir: path(t), request: try request(t, outputDir: t)))
        }
        out.append(BuildTaskTarget(target: target, outputDir: path(p.output), request: try request(target, outputDir: p.output)))
        return out
    }

    /// Carry the plan out: every build through `build`, each target's outputs written into a
    /// staging dir next to them and moved in only when every build worked (a failed task
    /// leaves its outputs as they were). `digest` holds the image id (the config digest), or
    /// with OUTPUT_OCI the manifest digest, `sha256:…` without a newline, as upstream.
    public static func run(_ targets: [BuildTaskTarget], outputOCI: Bool, store: Store,
                           build: (BuildRequest) throws -> BuildResult) throws {
        // the image args first, once for every build: a tarball that is not an image stops
        // the task before anything is built
        var loaded: [String: ImageRecord] = [:]
        for a in targets.first?.request.imageArchives ?? [] { loaded[a.name] = try Builder.loadBaseImage(a, into: store) }
        var staged: [(dir: String, staging: String)] = []
        defer { for s in staged { try? FileManager.default.removeItem(atPath: s.staging) } }
        for t in targets {
            var r = t.request
            r.imageArchives = []
            r.baseImages = loaded
            guard !r.outputs.isEmpty else { _ = try build(r); continue }
            let staging = "\(t.outputDir)/.ctr-partial-\(getpid())"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
            staged.append((t.outputDir, staging))
            r.outputs = r.outputs.map { o in
                switch o {
                case .archive(let f, let dest): return .archive(f, dest: staging + "/" + (dest as NSString).lastPathComponent)
                case .rootfs: return .rootfs(dest: staging)
                case .local(let dest): return .local(dest: staging + "/" + (dest as NSString).lastPathComponent)
                case .tar(let dest): return .tar(dest: staging + "/" + (dest as NSString).lastPathComponent)
                }
            }
            let result = try build(r)
            let digest = outputOCI ? result.manifest.digest.string : result.imageID.string
            try Store.writeFile(path: "\(staging)/digest", data: Data(digest.utf8), sync: false)
        }
        // every build worked: the outputs move in
        for s in staged {
            for name in try FileManager.default.contentsOfDirectory(atPath: s.staging) {
                let dest = "\(s.dir)/\(name)"
                if FileManager.default.fileExists(atPath: dest) { try FileManager.default.removeItem(atPath: dest) }
                try valueOrErrno("rename", "cannot move \(name) into \(s.dir)") { rename("\(s.staging)/\(name)", dest) }
            }
        }
    }
}

/// A build cache kept within a size: the store's unreferenced data goes first (the cache's
/// entries count as references), then the least recently used entries, a tenth at a time,
/// until the store fits. Safe beside running builds: the sweep waits for every writer.
public enum BuildCachePrune {
    public struct Report: Sendable {
        public var entriesRemoved = 0
        public var bytesBefore: Int64 = 0
        public var bytesAfter: Int64 = 0
    }

    public static func run(store: Store, cacheDir: String? = nil, maxBytes: Int64) throws -> Report {
        let dir = cacheDir ?? "\(store.root)/build-cache"
        var report = Report()
        report.bytesBefore = diskUsage(store.root)
        func entries() -> [(path: String, used: Date, entry: BuildRun.CacheEntry)] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            return names.filter { $0.hasSuffix(".json") }.compactMap { n in
                let p = "\(dir)/\(n)"
                guard let d = FileManager.default.contents(atPath: p),
                      let e = try? JSONDecoder().decode(BuildRun.CacheEntry.self, from: d),
                      let a = try? FileManager.default.attributesOfItem(atPath: p), let m = a[.modificationDate] as? Date else { return nil }
                return (p, m, e)
            }.sorted { $0.used < $1.used }
        }
        let keep = { entries().map { (blob: $0.entry.layer.digest, diffID: $0.entry.diffID) } }
        _ = try store.prune(keeping: keep)
        var size = diskUsage(store.root)
        while size > maxBytes {
            let all = entries()
            if all.isEmpty { break }
            for e in all.prefix(max(1, all.count / 10)) {
                unlink(e.path)
                report.entriesRemoved += 1
            }
            _ = try store.prune(keeping: keep)
            size = diskUsage(store.root)
        }
        report.bytesAfter = size
        return report
    }

    /// Bytes of disk under `path` (st_blocks), hard links counted once.
    static func diskUsage(_ path: String) -> Int64 {
        var total: Int64 = 0
        var seen = Set<UInt64>()
        guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
        while let rel = e.nextObject() as? String {
            var st = stat()
            guard lstat("\(path)/\(rel)", &st) == 0 else { continue }
            if st.st_nlink > 1 && (st.st_mode & S_IFMT) != S_IFDIR && !seen.insert(UInt64(st.st_ino)).inserted { continue }
            total += Int64(st.st_blocks) * 512
        }
        return total
    }
}
