import ArgumentParser
import Builder
import Errors
import Foundation
import Layers

/// Concourse's oci-build-task: the task image's `build` runs this in the task's working
/// directory. Params come from the environment as upstream reads them (BuildTaskParams), or
/// with the message `build`, from the oci-image prototype's JSON request on stdin.
struct OCIBuildTask: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oci-build-task",
        abstract: "Build as Concourse's oci-build-task does: params from the environment, image/image.tar and image/digest out.",
        discussion: "Params: CONTEXT, DOCKERFILE, BUILD_ARG_*, BUILD_ARGS_FILE, TARGET, TARGET_FILE, ADDITIONAL_TARGETS, LABEL_*, LABELS_FILE, BUILDKIT_SECRET_*, BUILDKIT_SECRETTEXT_*, IMAGE_ARG_*, IMAGE_PLATFORM, OUTPUT_OCI, UNPACK_ROOTFS, REGISTRY_MIRRORS, BUILDKIT_ADD_HOSTS, DOCKER_CONFIG, LOGIN=PASS with PASS=USER:PASSWORD and REG_URL, DEBUG; CTR_CACHE_MAX bounds ./cache (default 10g). With ./cache present the store lives in it (cache/ctr), so a restored cache rebuilds nothing it has.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Argument(help: "build: read the oci-image prototype's request ({\"object\": …, \"response_path\": …}) on stdin.") var message: String?

    func run() throws {
        var params: BuildTaskParams
        var responsePath: String?
        switch message {
        case nil:
            params = try BuildTaskParams(environment: ProcessInfo.processInfo.environment, order: Self.environmentOrder())
        case "build"?:
            (params, responsePath) = try BuildTaskParams.prototype(FileHandle.standardInput.readDataToEndOfFile())
        case let m?:
            throw ValidationError("\(m): the only message is build (the oci-image prototype's)")
        }
        let cwd = FileManager.default.currentDirectoryPath
        var isDir: ObjCBool = false
        let useCache = params.cache ?? (FileManager.default.fileExists(atPath: "\(cwd)/cache", isDirectory: &isDir) && isDir.boolValue)
        if params.cache == true { try FileManager.default.createDirectory(atPath: "\(cwd)/cache", withIntermediateDirectories: true) }
        // the store: in cache/ when there is one, so a restored cache is the whole store
        let root = global.root ?? (useCache ? "\(cwd)/cache/ctr" : nil)
        let store = try GlobalOptions.store(root: root)
        // the task's own files (secret texts, registries.conf, an auth file): 0700, in the store
        try FileManager.default.createDirectory(atPath: "\(store.root)/build-tmp", withIntermediateDirectories: true)
        var template = Array("\(store.root)/build-tmp/task-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CtrError.errno("mkdtemp", "cannot create a scratch dir in \(store.root)/build-tmp") }
        let scratch = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try Self.registryEnvironment(params, cwd: cwd, scratch: scratch)
        let targets = try BuildTask.plan(params, cwd: cwd, secretDir: "\(scratch)/secrets")
        let (runtime, hooks) = Build.machinery(store: store, quiet: false, pull: "missing", registry: registry)
        if params.debug { Out.progress("oci-build-task: store \(store.root), \(targets.count) build(s)") }
        try BuildTask.run(targets, outputOCI: params.outputOCI, store: store) { request in
            Out.progress(request.options.target.map { "building target '\($0)'" } ?? "building image")
            let r = try Builder.run(request, store: store, runtime: runtime, hooks: hooks)
            Out.progress("--> \(r.imageID.encoded.prefix(12)) (\(r.steps) steps, \(r.cached) cached)")
            return r
        }
        if useCache {
            let p = try BuildCachePrune.run(store: store, maxBytes: params.cacheMax)
            if p.entriesRemoved > 0 || params.debug {
                Out.progress("cache: \(p.bytesAfter >> 20) MiB (limit \(params.cacheMax >> 20) MiB)\(p.entriesRemoved > 0 ? ", \(p.entriesRemoved) least recently used steps dropped" : "")")
            }
        }
        if let responsePath { try Data().write(to: URL(fileURLWithPath: responsePath)) }
    }

    /// The environment's names in its own order (a later BUILD_ARG_ of the same name wins).
    static func environmentOrder() -> [String] {
        var out: [String] = []
        var p = environ
        while let e = p.pointee {
            let s = String(cString: e)
            if let eq = s.firstIndex(of: "=") { out.append(String(s[..<eq])) }
            p += 1
        }
        return out
    }

    /// REGISTRY_MIRRORS, DOCKER_CONFIG and the LOGIN fork's credentials as the files and
    /// variables ctr's registry client reads (registries.conf, an auth file); credentials are
    /// never printed.
    static func registryEnvironment(_ p: BuildTaskParams, cwd: String, scratch: String) throws {
        if let d = p.dockerConfig { setenv("DOCKER_CONFIG", d.hasPrefix("/") ? d : "\(cwd)/\(d)", 1) }
        if !p.registryMirrors.isEmpty {
            var conf = "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n"
            for m in p.registryMirrors {
                var host = m
                for scheme in ["https://", "http://"] where host.hasPrefix(scheme) { host.removeFirst(scheme.count) }
                while host.hasSuffix("/") { host.removeLast() }
                conf += "[[registry.mirror]]\nlocation = \"\(host)\"\n"
            }
            let file = "\(scratch)/registries.conf"
            try Data(conf.utf8).write(to: URL(fileURLWithPath: file))
            setenv("CONTAINERS_REGISTRIES_CONF", file, 1)
        }
        if let l = p.login {
            var key = l.registry
            for scheme in ["https://", "http://"] where key.hasPrefix(scheme) { key.removeFirst(scheme.count) }
            while key.hasSuffix("/") { key.removeLast() }
            if key == "index.docker.io/v1" { key = "docker.io" }
            let auth = Data("\(l.user):\(l.password)".utf8).base64EncodedString()
            let json = try JSONSerialization.data(withJSONObject: ["auths": [key: ["auth": auth]]])
            let file = "\(scratch)/auth.json"
            try Store.writeFile(path: file, data: json, sync: false, mode: 0o600)
            setenv("REGISTRY_AUTH_FILE", file, 1)
        }
    }
}
