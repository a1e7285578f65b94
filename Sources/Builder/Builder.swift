import CSysShims
import Dockerfile
import Errors
import Foundation
import struct HostOS.IDRange
import enum HostOS.IDMapping
import Layers
import Sandbox

/// What `ctr build` was asked for.
public struct BuildOptions: Sendable {
    public var context: String
    public var file: String?
    public var tags: [Reference] = []
    public var buildArgs: [String: String] = [:]
    public var target: String?
    /// Several targets built in one run (`--target a --target b`), sharing their common
    /// steps; each committed under its `targetTags` (same order). Empty: `target` alone.
    public var targets: [String] = []
    public var targetTags: [[Reference]] = []
    public var noCache = false
    public var labels: [String: String] = [:]
    public var network: String?
    public var cacheDir: String?
    public var platform: Platform = .current
    /// --secret id=ID,src=PATH (or env=VAR): for RUN --mount=type=secret, never in the image.
    public var secrets: [String: String] = [:]
    public var addHosts: [String] = []
    public var progress: ProgressMode = .plain
    /// What RUN steps print is kept back, and shown only for a step that fails (-q).
    public var quietSteps = false
    /// --isolation: how RUN steps are sandboxed (auto: the strongest this environment allows).
    public var isolation: IsolationRequest = .auto
    /// Paths the container isolation level leaves alone besides the store, the context and the
    /// cache: outputs, id files, secret files (Builder.run fills it from the request).
    public var keepPaths: [String] = []

    public init(context: String) { self.context = context }
}

/// How steps are shown on stderr: plain lines, the same with emphasis for a terminal, or one
/// JSON object per event (step, cached, done) for tools.
public enum ProgressMode: String, Sendable { case plain, tty, json }

extension CtrError {
    /// A build that cannot go on (its context, its Dockerfile, a step): `.invalidInput`, the
    /// error it wraps (if any) as its cause. A step's own exit status never becomes ctr build's.
    static func build(_ message: String, cause: (any Error)? = nil) -> CtrError {
        guard let cause else { return .invalid(message) }
        return .wrapping(cause, message, code: .invalidInput)
    }
}

public struct BuildResult: Sendable {
    public var imageID: Digest
    public var manifest: Descriptor
    public var steps: Int
    public var cached: Int
    /// Every layer step of this build (run or cached): what --cache-to exports.
    public var cacheEntries: [BuildCacheEntry]
    /// The stage it is the image of (nil: the last).
    public var target: String? = nil
    /// The names it was given, as typed (`-t`, with `{target}` made).
    public var names: [String] = []
}

/// One step of the cache: its key and the layer it made.
public struct BuildCacheEntry: Codable, Sendable, Hashable {
    public var key: String
    public var layer: Descriptor
    public var diffID: Digest
}

/// The build cache as an image (for --cache-to / --cache-from a registry): the layers of the
/// steps, and the keys in a label, so any registry stores it and any pull brings it back.
public enum BuildCacheImage {
    public static let label = "io.github.ctr.build-cache.v1"

    public static func make(_ entries: [BuildCacheEntry], store: Store, name: Reference, platform: Platform) throws {
        var seen = Set<Digest>()
        var layers: [Descriptor] = [], diffIDs: [Digest] = []
        for e in entries where seen.insert(e.layer.digest).inserted {
            layers.append(e.layer)
            diffIDs.append(e.diffID)
        }
        let keys = String(decoding: try JSONEncoder().encode(entries), as: UTF8.self)
        var cc = ContainerConfig()
        cc.labels = [label: keys]
        let config = ImageConfig(architecture: platform.architecture, os: platform.os, config: cc, rootfs: RootFS(diffIDs: diffIDs))
        try store.writing {
            try store.setName(name, to: try store.putImage(config: config, layers: layers).manifest)
        }
    }

    /// The entries of a pulled cache image, written into the cache dir. Returns how many.
    public static func importEntries(_ image: ImageRecord, store: Store, cacheDir: String?) throws -> Int {
        let manifest = try store.manifest(image.descriptor)
        let config = try store.config(manifest)
        guard let text = config.config?.labels?[label],
              let entries = try? JSONDecoder().decode([BuildCacheEntry].self, from: Data(text.utf8)) else { return 0 }
        let dir = cacheDir ?? "\(store.root)/build-cache"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for e in entries {
            let data = try JSONEncoder().encode(BuildRun.CacheEntry(layer: e.layer, diffID: e.diffID))
            try Store.atomicWrite(path: "\(dir)/\(e.key).json", data: data)
        }
        return entries.count
    }
}

/// One stage's image as the build goes.
struct ImageState {
    var layers: [Descriptor] = []
    var diffIDs: [Digest] = []
    var config: ImageConfig
    var cacheKey: String
    var args: [String: String] = [:]
    /// The stage (its real tree, at the chroot level, is per stage).
    var stage = 0
}

/// Builds Dockerfiles: RUN in the Sandbox on an overlay of the stage's layers (the upper dir
/// becomes the layer), COPY/ADD as layers written directly from their sources, a cache keyed
/// by parent, instruction (with its expanded arguments) and the content of what it reads.
public final class Builder {
    let store: Store
    let runtime: Runtime
    let progress: (String) -> Void
    let resolveImage: (String, Platform?) throws -> ImageRecord
    var networkNoted = false

    public init(store: Store, runtime: Runtime, progress: @escaping (String) -> Void,
                resolveImage: @escaping (String, Platform?) throws -> ImageRecord) {
        self.store = store
        self.runtime = runtime
        self.progress = progress
        self.resolveImage = resolveImage
    }

    // MARK: the build

    public func build(_ o: BuildOptions) throws -> BuildResult {
        try buildTargets(o)[0]
    }

    /// Every target of `o.targets` (or the one `o.target`) from one run: the stages they need
    /// are built once, in Dockerfile order, and each target committed under its tags.
    public func buildTargets(_ o: BuildOptions) throws -> [BuildResult] {
        let context = URL(fileURLWithPath: o.context).standardizedFileURL.path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: context, isDirectory: &isDir), isDir.boolValue else {
            throw CtrError.build("\(o.context): the build context must be a directory")
        }
        let dfPath: String
        if let f = o.file {
            dfPath = f.hasPrefix("/") ? f : URL(fileURLWithPath: f).standardizedFileURL.path
        } else if access("\(context)/Dockerfile", F_OK) == 0 {
            dfPath = "\(context)/Dockerfile"
        } else if access("\(context)/Containerfile", F_OK) == 0 {
            dfPath = "\(context)/Containerfile"
        } else {
            throw CtrError.build("\(context): no Dockerfile or Containerfile (use -f FILE)")
        }
        guard let text = try? String(contentsOfFile: dfPath, encoding: .utf8) else {
            throw CtrError.build("\(dfPath): cannot read it")
        }
        let displayName = (dfPath as NSString).lastPathComponent
        let df = try Dockerfile.parse(text, file: displayName)

        let run = BuildRun(builder: self, o: o, df: df, file: displayName, dockerfilePath: dfPath, context: context)
        // every layer of the build is unreferenced until the image is named (or the cache
        // records it): prune waits for the build, not the other way round
        return try store.writing { try run.execute() }
    }

}

/// One `ctr build` invocation.
final class BuildRun {
    let b: Builder
    let o: BuildOptions
    let df: Dockerfile
    let file: String
    let context: String
    let ignore: IgnorePatterns
    let epoch: Int64?
    let created: String
    var globalArgs: [String: String] = [:]
    var usedBuildArgs = Set<String>()
    var states: [Int: ImageState] = [:]
    var stepNumber = 0
    var totalSteps = 0
    var cachedSteps = 0
    var ranSteps = 0
    var cacheEntries: [BuildCacheEntry] = []
    var stepCached = false
    var stepStart = Date()
    let cacheDir: String
    let tmpRoot: String
    /// The context as RUN --mount=type=bind sees it, once a mount needed it (ContextView.swift).
    var contextViewDir: String?
    /// How RUN steps are sandboxed here, decided at the first one (TreeSteps.swift).
    var isolationDecision: IsolationDecision?
    /// Real trees of the stages, for the levels without an overlay (TreeSteps.swift).
    var trees: [Int: TreeState] = [:]
    /// The container level's paths of `/` that no stage touches (TreeSteps.swift).
    var containerKeepPaths: [String]?
    /// Whether the build said which isolation its RUN steps get (at the first that runs).
    var isolationSaid = false
    /// Reads stage files this user may not (rootless, files of subordinate ids).
    lazy var opener: PrivilegedOpener? = {
        if case .mapped = b.store.ops.mapping { return PrivilegedOpener(mapping: b.store.ops.mapping) }
        return nil
    }()

    init(builder: Builder, o: BuildOptions, df: Dockerfile, file: String, dockerfilePath: String, context: String) {
        self.b = builder
        self.o = o
        self.df = df
        self.file = file
        self.context = context
        // BuildKit: FILE.dockerignore next to the Dockerfile wins over the context's .dockerignore
        var ignoreText = ""
        for path in ["\(dockerfilePath).dockerignore", "\(context)/.dockerignore", "\(context)/.containerignore"] {
            if let t = try? String(contentsOfFile: path, encoding: .utf8) { ignoreText = t; break }
        }
        ignore = IgnorePatterns(text: ignoreText)
        let (c, e) = ImageImport.timestamp()
        created = c
        epoch = e
        cacheDir = o.cacheDir ?? "\(builder.store.root)/build-cache"
        // this build's own: removing it at the end leaves other builds' steps alone
        tmpRoot = "\(builder.store.root)/build-tmp/\(UUID().uuidString.lowercased())"
    }

    /// An error at the instruction's line of the Dockerfile (`.invalidInput`, see `CtrError.build`).
    func fail(_ inst: Instruction, _ message: String, cause: (any Error)? = nil) -> CtrError {
        var e = CtrError.build(message, cause: cause)
        (e.file, e.line) = (file, inst.line)
        return e
    }

    func expand(_ s: String, _ env: [String: String], _ inst: Instruction) throws -> String {
        do { return try Expander.expandWord(s, env: env, escape: df.escape) } catch { throw fail(inst, error.message) }
    }

    func expandWords(_ s: String, _ env: [String: String], _ inst: Instruction) throws -> [String] {
        do { return try Expander.expandWords(s, env: env, escape: df.escape) } catch { throw fail(inst, error.message) }
    }

    // MARK: stages

    func execute() throws -> [BuildResult] {
        try FileManager.default.createDirectory(atPath: cacheDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tmpRoot, withIntermediateDirectories: true)
        // the build's scratch (the context's view, scratch layers of rw mounts with files of
        // subordinate ids) goes at the end, whether the build worked or not
        defer { _ = try? b.store.ops.removeTree(tmpRoot) }
        // global ARGs (before the first FROM) and the predefined platform ones
        let p = o.platform, host = Platform.current
        var predefined = ["TARGETPLATFORM": p.description, "TARGETOS": p.os, "TARGETARCH": p.architecture,
                          "TARGETVARIANT": p.variant ?? "",
                          "BUILDPLATFORM": host.description,
                          "BUILDOS": host.os, "BUILDARCH": host.architecture, "BUILDVARIANT": host.variant ?? ""]
        for (k, v) in o.buildArgs where Dockerfile.platformArgNames.contains(k) { predefined[k] = v }
        globalArgs = predefined
        for inst in df.globalArgs {
            guard case .arg(let decls) = inst.kind else { continue }
            for d in decls {
                if let v = o.buildArgs[d.name] {
                    globalArgs[d.name] = v
                    usedBuildArgs.insert(d.name)
                } else if let def = d.defaultValue {
                    globalArgs[d.name] = try expand(def, globalArgs, inst)
                }
            }
        }

        // which stages, and the stages they need
        let targetNames: [String?] = o.targets.isEmpty ? [o.target] : o.targets
        let targetIndices: [Int] = try targetNames.map { t in
            guard let t else { return df.stages.count - 1 }
            guard let s = df.stages.first(where: { $0.name == t.lowercased() }) else {
                let names = df.stages.compactMap(\.name)
                throw CtrError.build("--target \(t): no stage of that name in \(file) (\(names.isEmpty ? "its stages have no names" : "stages: " + names.joined(separator: ", ")))")
            }
            return s.index
        }
        var needed = Set<Int>()
        func need(_ i: Int) throws {
            guard needed.insert(i).inserted else { return }
            let stage = df.stages[i]
            let base = try expand(stage.base, globalArgs, stage.from).lowercased()
            if let dep = stageIndex(base, before: i) { try need(dep) }
            for inst in stage.instructions {
                var refs: [String] = []
                if inst.keyword == "COPY", let f = inst.flagValue("from") { refs.append(f) }
                if inst.keyword == "RUN" {
                    for m in inst.flagValues("mount") {
                        if let from = OptionList.parse(m, bare: "true", lowercaseKeys: true)["from"] { refs.append(from) }
                    }
                }
                for r in refs {
                    let name = try expand(r, globalArgs, inst).lowercased()
                    if let dep = stageIndex(name, before: i) { try need(dep) }
                }
            }
        }
        for i in targetIndices { try need(i) }
        totalSteps = df.stages.filter { needed.contains($0.index) }.reduce(0) { $0 + 1 + $1.instructions.count }
        // where RUN cannot be sandboxed, a build with RUN fails before its first step
        if df.stages.contains(where: { needed.contains($0.index) && $0.instructions.contains { $0.keyword == "RUN" } }) {
            _ = try decidedIsolation()
        }

        for stage in df.stages where needed.contains(stage.index) {
            states[stage.index] = try buildStage(stage)
        }
        var results: [BuildResult] = []
        for (n, i) in targetIndices.enumerated() {
            let tags = o.targets.isEmpty ? o.tags : (n < o.targetTags.count ? o.targetTags[n] : [])
            let (manifestDesc, imageID) = try commit(states[i]!, tags: tags)
            results.append(BuildResult(imageID: imageID, manifest: manifestDesc, steps: stepNumber, cached: cachedSteps,
                                       cacheEntries: cacheEntries, target: targetNames[n]))
        }
        let unused = Set(o.buildArgs.keys).subtracting(usedBuildArgs).subtracting(Dockerfile.platformArgNames)
            .subtracting(Dockerfile.proxyArgNames)
        if !unused.isEmpty {
            b.progress("[Warning] one or more build args were not consumed: \(unused.sorted().joined(separator: ", "))")
        }
        return results
    }

    func stageIndex(_ name: String, before i: Int) -> Int? {
        if let s = df.stages.first(where: { $0.name == name && $0.index < i }) { return s.index }
        if let n = Int(name), n >= 0, n < i { return n }
        return nil
    }

    func step(_ inst: Instruction) {
        stepNumber += 1
        stepCached = false
        stepStart = Date()
        switch o.progress {
        case .plain: b.progress("STEP \(stepNumber)/\(totalSteps): \(inst.original)")
        case .tty: b.progress("\u{1b}[1mSTEP \(stepNumber)/\(totalSteps):\u{1b}[0m \(inst.original)")
        case .json: event(["event": "step", "step": stepNumber, "total": totalSteps, "line": inst.line, "instruction": inst.original])
        }
    }

    /// After a step that did work: its time.
    func stepDone(_ inst: Instruction) {
        guard ["RUN", "COPY", "ADD"].contains(inst.keyword), !stepCached else { return }
        let t = Date().timeIntervalSince(stepStart)
        switch o.progress {
        case .plain, .tty: b.progress(String(format: "--> %.2fs", t))
        case .json: event(["event": "done", "step": stepNumber, "seconds": (t * 1000).rounded() / 1000])
        }
    }

    func event(_ fields: [String: Any]) {
        if let d = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) {
            b.progress(String(decoding: d, as: UTF8.self))
        }
    }

    func buildStage(_ stage: Stage) throws -> ImageState {
        step(stage.from)
        let base = try expand(stage.base, globalArgs, stage.from)
        var state: ImageState
        var fromStage = false
        if base.lowercased() == "scratch" {
            state = ImageState(config: ImageConfig(architecture: o.platform.architecture, os: o.platform.os,
                                                   variant: o.platform.variant, config: ContainerConfig(),
                                                   rootfs: RootFS(diffIDs: [])),
                               cacheKey: sha("scratch|\(o.platform.architecture)"))
        } else if let dep = stageIndex(base.lowercased(), before: stage.index), let s = states[dep] {
            state = s
            fromStage = true
        } else {
            let rec: ImageRecord
            // FROM --platform=…: that platform's image when it has to be pulled
            var plat: Platform?
            if let p = stage.platform {
                let v = try expand(p, globalArgs, stage.from)
                do { plat = try Platform(parsing: v) } catch { throw fail(stage.from, "FROM --platform=\(v): \(error)", cause: error) }
            }
            do { rec = try b.resolveImage(base, plat) } catch { throw fail(stage.from, "FROM \(base): \(error)", cause: error) }
            let manifest = try b.store.manifest(rec.descriptor)
            let config = try b.store.config(manifest)
            // an image of another platform is not relabelled: it must have been pulled for this one
            let want = plat ?? o.platform
            let have = Platform(os: config.os, architecture: config.architecture, variant: config.variant)
            if !config.architecture.isEmpty, !config.os.isEmpty, !have.matches(want) {
                throw fail(stage.from, "FROM \(base): the image is \(have), the build is for \(want): pull it for \(want) (--pull always, or FROM --platform=\(want)), or build for \(have)")
            }
            state = ImageState(layers: manifest.layers, diffIDs: config.rootfs.diffIDs, config: config,
                               cacheKey: sha("image|\(rec.descriptor.digest)"))
        }
        state.stage = stage.index
        // a stage built on another keeps the ARGs declared there (BuildKit, buildah)
        if !fromStage { state.args = [:] }
        if state.config.config == nil { state.config.config = ContainerConfig() }
        // every image gets a PATH (as BuildKit and buildah do when the base has none)
        if !(state.config.config?.env ?? []).contains(where: { $0.hasPrefix("PATH=") }) {
            let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + (state.config.config?.env ?? [])
            state.config.config?.env = env
        }
        let onbuild = state.config.config?.onBuild ?? []
        state.config.config?.onBuild = nil
        // ONBUILD triggers of the base run first
        if !onbuild.isEmpty && base.lowercased() != "scratch" && stageIndex(base.lowercased(), before: stage.index) == nil {
            for t in onbuild {
                let inst: Instruction
                inst = try Dockerfile.parseInstruction(t, escape: df.escape, file: file, line: stage.line)
                b.progress("  ONBUILD \(t)")
                try apply(inst, stage: stage, state: &state)
            }
        }
        for inst in stage.instructions {
            step(inst)
            try apply(inst, stage: stage, state: &state)
            stepDone(inst)
        }
        return state
    }

    // MARK: instructions

    /// The variables an instruction sees: ARGs of the stage, then ENV (ENV wins).
    func environment(_ state: ImageState) -> [String: String] {
        var env: [String: String] = [:]
        for (k, v) in state.args { env[k] = v }
        for e in state.config.config?.env ?? [] {
            let kv = e.split(separator: "=", maxSplits: 1).map(String.init)
            env[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return env
    }

    func addHistory(_ state: inout ImageState, _ createdBy: String, empty: Bool) {
        var h = state.config.history ?? []
        h.append(History(created: created, createdBy: createdBy, comment: "ctr build", emptyLayer: empty ? true : nil))
        state.config.history = h
    }

    func setEnv(_ state: inout ImageState, _ k: String, _ v: String) {
        state.config.config?.setEnv(k, v)
    }

    func commandArgs(_ c: Command, _ state: ImageState) -> [String] {
        switch c {
        case .exec(let a): return a
        case .shell(let s): return (state.config.config?.shell ?? ["/bin/sh", "-c"]) + [s]
        }
    }

    func apply(_ inst: Instruction, stage: Stage, state: inout ImageState) throws {
        let env = environment(state)
        var keyText = inst.original
        switch inst.kind {
        case .from:
            throw fail(inst, "FROM inside a stage")
        case .env(let pairs):
            var parts: [String] = []
            for kv in pairs {
                let k = try expand(kv.key, env, inst), v = try expand(kv.value, env, inst)
                setEnv(&state, k, v)
                parts.append("\(k)=\(v)")
            }
            keyText = "ENV " + parts.joined(separator: " ")
        case .label(let pairs):
            var labels = state.config.config?.labels ?? [:]
            var parts: [String] = []
            for kv in pairs {
                let k = try expand(kv.key, env, inst), v = try expand(kv.value, env, inst)
                labels[k] = v
                parts.append("\(k)=\(v)")
            }
            state.config.config?.labels = labels
            keyText = "LABEL " + parts.joined(separator: " ")
        case .arg(let decls):
            var parts: [String] = []
            for d in decls {
                var value: String?
                if let v = o.buildArgs[d.name] {
                    value = v
                    usedBuildArgs.insert(d.name)
                } else if let def = d.defaultValue {
                    value = try expand(def, env, inst)
                } else if let g = globalArgs[d.name] {
                    value = g
                }
                state.args[d.name] = value
                parts.append("\(d.name)=\(value ?? "")")
            }
            keyText = "ARG " + parts.joined(separator: " ")
        case .workdir(let raw):
            let w = try expand(raw, env, inst)
            let cur = state.config.config?.workingDir ?? "/"
            let path = IgnorePatterns.clean(w.hasPrefix("/") ? w : cur + "/" + w)
            state.config.config?.workingDir = path
            keyText = "WORKDIR \(path)"
            // the directory exists in the image afterwards (as Docker makes it)
            let tree = try layerTree(state)
            if path != "/" && tree.lookup(tree.resolve(String(path.dropFirst())) ?? "") == nil {
                // owned by the USER in effect, as BuildKit and buildah make it
                var owner: (Int64, Int64)?
                if let user = state.config.config?.user, !user.isEmpty {
                    do { owner = try userIDs(user, tree) } catch { throw fail(inst, "WORKDIR \(path): USER \(user): \(error)", cause: error) }
                    keyText += " \(owner!.0):\(owner!.1)"
                }
                state.cacheKey = sha(state.cacheKey + "\n" + keyText)
                try addFileLayer(&state, inst, entries: [], ensureDirs: [path], createdBy: "WORKDIR \(path)", dirOwner: owner)
                return
            }
        case .user(let raw):
            let u = try expand(raw, env, inst)
            state.config.config?.user = u
            keyText = "USER \(u)"
        case .expose(let words):
            var exposed = state.config.config?.exposedPorts ?? [:]
            for w in words {
                for p in try expandWords(w, env, inst) {
                    // PORT[-PORT][/tcp|udp|sctp], as BuildKit accepts
                    guard let key = exposedPortKey(p) else {
                        throw fail(inst, "EXPOSE \(p): expected PORT[/tcp|udp|sctp] or a range START-END")
                    }
                    exposed[key] = EmptyObject()
                }
            }
            state.config.config?.exposedPorts = exposed
            keyText = "EXPOSE " + exposed.keys.sorted().joined(separator: " ")
        case .volume(let words):
            var vols = state.config.config?.volumes ?? [:]
            for w in words { for v in try expandWords(w, env, inst) { vols[v] = EmptyObject() } }
            state.config.config?.volumes = vols
            keyText = "VOLUME " + vols.keys.sorted().joined(separator: " ")
        case .stopsignal(let raw):
            let sig = try expand(raw, env, inst)
            // checked now, as BuildKit does, not when `ctr stop` needs it
            do { _ = try Runtime.signal(sig) } catch { throw fail(inst, "STOPSIGNAL \(sig): \(error)", cause: error) }
            state.config.config?.stopSignal = sig
        case .cmd(let c):
            let args = commandArgs(c, state)
            state.config.config?.cmd = args
        case .entrypoint(let c):
            let args = commandArgs(c, state)
            state.config.config?.entrypoint = args
            // an ENTRYPOINT resets the base image's CMD (as Docker)
            if !stage.instructions.contains(where: { $0.keyword == "CMD" && $0.line < inst.line }) {
                state.config.config?.cmd = nil
            }
        case .shell(let s):
            state.config.config?.shell = s
        case .healthcheck(let h):
            if let h {
                var hc = HealthConfig()
                hc.test = h.test
                hc.interval = h.intervalNanoseconds
                hc.timeout = h.timeoutNanoseconds
                hc.startPeriod = h.startPeriodNanoseconds
                hc.startInterval = h.startIntervalNanoseconds
                hc.retries = h.retries
                state.config.config?.healthcheck = hc
            } else {
                var hc = HealthConfig()
                hc.test = ["NONE"]
                state.config.config?.healthcheck = hc
            }
        case .onbuild(let t):
            var ob = state.config.config?.onBuild ?? []
            ob.append(t)
            state.config.config?.onBuild = ob
        case .maintainer(let m):
            state.config.author = m
        case .run(let c, let heredocs):
            try runStep(inst, c, heredocs, state: &state)
            return
        case .copy(let sources, let dest, let heredocs):
            try copyStep(inst, sources: sources, dest: dest, heredocs: heredocs, isAdd: false, state: &state)
            return
        case .add(let sources, let dest, let heredocs):
            try copyStep(inst, sources: sources, dest: dest, heredocs: heredocs, isAdd: true, state: &state)
            return
        }
        state.cacheKey = sha(state.cacheKey + "\n" + keyText)
        addHistory(&state, keyText, empty: true)
    }

    // MARK: RUN

    func runStep(_ inst: Instruction, _ c: Command, _ heredocs: [Heredoc], state: inout ImageState) throws {
        // another architecture's binaries run only through a binfmt_misc handler (qemu-user)
        let arch = state.config.architecture
        if !arch.isEmpty, arch != Platform.current.architecture, Binfmt.handler(for: arch) == nil {
            throw fail(inst, "RUN for \(state.config.os)/\(arch) needs a binfmt_misc handler for \(Binfmt.machine(arch)) (qemu-user-static registers one); this host has none (see ctr info)")
        }
        let env = environment(state)
        var argv: [String]
        var scriptMount: RunMount?
        switch c {
        case .exec(let a): argv = a
        case .shell(let s):
            let shell = state.config.config?.shell ?? ["/bin/sh", "-c"]
            let bare = s.trimmingCharacters(in: .whitespaces)
            if heredocs.count == 1, let h = heredocs.first,
               ["<<\(h.name)", "<<-\(h.name)", "<<\"\(h.name)\"", "<<'\(h.name)'", "<<-\"\(h.name)\"", "<<-'\(h.name)'"].contains(bare) {
                // RUN <<EOF: the heredoc is the script (BuildKit); a #! line picks its interpreter,
                // which runs it as a file (/dev/pipes/NAME, as BuildKit), given as the kernel
                // gives it: the interpreter, the rest of the #! line as one argument, the file
                if h.content.hasPrefix("#!") {
                    let line = (h.content.split(separator: "\n", maxSplits: 1).first.map { String($0.dropFirst(2)) } ?? "")
                        .trimmingCharacters(in: .whitespaces)
                    let interp = String(line.prefix(while: { $0 != " " && $0 != "\t" }))
                    let rest = line.dropFirst(interp.count).trimmingCharacters(in: .whitespaces)
                    guard !interp.isEmpty else { throw fail(inst, "RUN <<\(h.name): the #! line names no interpreter") }
                    let file = "\(tmpRoot)/heredoc-\(UUID().uuidString.lowercased())"
                    try Store.writeFile(path: file, data: Data(h.content.utf8), sync: false, mode: 0o755)
                    let target = "/dev/pipes/\(h.name)"
                    scriptMount = RunMount(kind: .bind(file, readonly: true), target: target, cacheKey: "heredoc \(sha(h.content))")
                    argv = [interp] + (rest.isEmpty ? [] : [rest]) + [target]
                } else {
                    argv = shell + [h.content]
                }
            } else {
                argv = shell + [heredocs.isEmpty ? s : Command.script(s, heredocs: heredocs)]
            }
        }
        if argv.isEmpty { throw fail(inst, "RUN needs a command") }
        var network = o.network
        var mounts: [RunMount] = scriptMount.map { [$0] } ?? []
        for f in inst.flags {
            switch f.name {
            case "network":
                guard let v = f.value, ["none", "host", "default"].contains(v) else {
                    throw fail(inst, "RUN --network=\(f.value ?? ""): expected none, host or default")
                }
                if v != "default" { network = v }
            case "mount":
                mounts.append(try parseMount(try expand(f.value ?? "", env, inst), inst, state: state))
            case "security":
                throw fail(inst, "RUN --security=\(f.value ?? ""): not supported (ctr never runs build steps privileged)")
            default:
                throw fail(inst, "unknown flag: --\(f.name)")
            }
        }
        // ARGs reach RUN as environment (not kept in the image)
        var runEnv = state.config.config?.env ?? []
        for (k, v) in state.args.sorted(by: { $0.key < $1.key }) where !runEnv.contains(where: { $0.hasPrefix("\(k)=") }) {
            runEnv.append("\(k)=\(v)")
        }
        let key = sha([state.cacheKey, "RUN", argv.joined(separator: "\u{0}"), runEnv.joined(separator: "\u{0}"),
                       state.config.config?.user ?? "", state.config.config?.workingDir ?? "", network ?? "",
                       mounts.map(\.cacheKey).joined(separator: "\u{0}")].joined(separator: "\n"))
        let createdBy = "RUN " + (c.isShell ? argv.last! : "[" + argv.map { "\"\($0)\"" }.joined(separator: ", ") + "]")
        if try useCache(key, &state, createdBy: createdBy) { return }

        let tmp = "\(tmpRoot)/\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(atPath: "\(tmp)/upper", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(tmp)/work", withIntermediateDirectories: true)
        chmod("\(tmp)/upper", 0o755)
        defer { _ = try? b.store.ops.removeTree(tmp) }
        let lowers = try unpackedLayers(state)
        var cfg = state.config.config ?? ContainerConfig()
        cfg.env = runEnv + mounts.flatMap(\.env)
        cfg.entrypoint = nil
        cfg.cmd = nil
        var ro = RunSpec(source: .buildRoot(BuildRoot(lowers: lowers, upper: "\(tmp)/upper", work: "\(tmp)/work", config: cfg)))
        ro.command = argv
        ro.autoRemove = true
        ro.name = "ctr-build-\(UUID().uuidString.prefix(12).lowercased())"
        ro.stdoutFD = 2
        var captured: Int32 = -1
        if o.quietSteps {
            captured = open("\(tmp)/output", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if captured >= 0 { ro.stdoutFD = captured; ro.stderrFD = captured }
        }
        defer { if captured >= 0 { close(captured) } }
        // no network namespace at this isolation level: the host's, unless one was asked for
        let netDecision = try isolation()
        ro.network = try NetworkRequest(parsing: network ?? (netDecision.networkNamespace ? defaultNetwork() : "host"))
        ro.extraHosts = try o.addHosts.map(HostEntry.init(parsing:))
        var locks: [Int32] = []
        defer { for fd in locks { close(fd) } }
        for m in mounts {
            switch m.kind {
            case .nothing: continue
            case .tmpfs(let opts): ro.mounts.append(.tmpfs(target: m.target, options: opts))
            case .layers(let dirs, let scratch): ro.mounts.append(.layers(lowers: dirs, target: m.target, scratch: scratch))
            case .bind(let src, let readonly): ro.mounts.append(.bind(source: src, target: m.target, readOnly: readonly))
            case .cache(let dir, let locked):
                if locked {
                    let fd = open("\(dir).lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
                    if fd >= 0 { flock(fd, LOCK_EX); locks.append(fd) }
                }
                ro.mounts.append(.bind(source: dir, target: m.target, readOnly: false))
            }
        }
        // where no overlay can be had (the chroot level, a store on an overlayfs), the step runs
        // on a real tree of the stage and its layer is the tree's difference
        let decision = try isolation()
        if runsInTrees(decision) {
            try runInTree(inst, spec: ro, mounts: mounts, key: key, createdBy: createdBy, decision: decision,
                          captured: captured, outputPath: "\(tmp)/output", &state)
            return
        }
        if decision.level != .userns { ro.isolation = decision }
        let code: Int32
        let fuseRoot: Bool
        do {
            let r = try b.runtime.run(ro, image: nil)
            code = r.code
            fuseRoot = r.record.rootFS != nil
        } catch {
            throw fail(inst, "\(createdBy): \(error)", cause: error)
        }
        if code != 0 {
            if captured >= 0 {
                // -q: the failing step's own output comes out after all
                if let out = FileManager.default.contents(atPath: "\(tmp)/output") { FileHandle.standardError.write(out) }
            }
            // one line: a script's first line stands for it
            let lines = createdBy.split(separator: "\n", omittingEmptySubsequences: true)
            throw fail(inst, "\(lines.first ?? "")\(lines.count > 1 ? " …" : ""): exit status \(code)")
        }
        ranSteps += 1
        try dropMountPoints(upper: "\(tmp)/upper", lowers: lowers, extra: mounts.map(\.target).filter { !$0.isEmpty })
        // fuse-overlayfs's upper dir marks opaque dirs its own way: the layer is unpacked
        // from its blob when needed instead
        try commitUpper("\(tmp)/upper", key: key, &state, createdBy: createdBy, adopt: !fuseRoot)
    }

    func defaultNetwork() -> String {
        let (mode, note) = NetworkMode.resolveDefault(rootless: b.runtime.mapping != .root)
        if mode == .none {
            if !b.networkNoted {
                b.networkNoted = true
                b.progress("note: RUN steps use the host's network: \(note ?? "no private network is available") (--network none to cut it off)")
            }
            return "host"
        }
        return "\(mode)"
    }

    /// The runtime creates mount points (/etc/hosts, /proc, …) an image may lack; they are not
    /// the step's output. Remove them from the upper dir when they are empty and new.
    func dropMountPoints(upper: String, lowers: [String], extra: [String] = []) throws {
        let tree = LayeredTree(layers: lowers, opener: opener)
        // RUN --mount targets and the dirs made for them, deepest first
        var targets: [String] = []
        for t in extra {
            var comps = t.split(separator: "/").map(String.init)
            while !comps.isEmpty { targets.append(comps.joined(separator: "/")); comps.removeLast() }
        }
        targets.sort { $0.count > $1.count }
        for p in targets + ["etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/shm", "dev/mqueue", "dev/pts", "dev", "proc", "sys", "etc", "run"] {
            let path = "\(upper)/\(p)"
            var st = stat()
            guard lstat(path, &st) == 0, tree.lookup(p) == nil else { continue }
            if (st.st_mode & S_IFMT) == S_IFREG && st.st_size == 0 { unlink(path) }
            if (st.st_mode & S_IFMT) == S_IFDIR { rmdir(path) }  // only when empty
        }
    }

    func commitUpper(_ upper: String, key: String, _ state: inout ImageState, createdBy: String, adopt: Bool = true) throws {
        let blob = b.store.ingestPath()
        let d: LayerDigests
        do {
            d = try b.store.ops.create(from: upper, to: blob, tree: .overlay, compression: .gzip, clampMtime: epoch)
        } catch {
            unlink(blob)
            throw CtrError.build("cannot make the layer of \(createdBy): \(error)", cause: error)
        }
        let layer = Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)
        try b.store.writing {
            if !b.store.hasBlob(d.digest) { try b.store.commit(file: blob, as: d.digest) } else { unlink(blob) }
            if adopt && access(b.store.layerPath(d.diffID), F_OK) != 0 {
                // the upper dir is already in the store's overlay form: it becomes the unpacked layer
                let dest = "\(b.store.root)/layers/.tmp-\(UUID().uuidString.lowercased())"
                try FileManager.default.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                if rename(upper, dest) == 0 { try b.store.installLayer(dest, diffID: d.diffID) }
            }
        }
        try append(layer, diffID: d.diffID, key: key, &state, createdBy: createdBy)
    }

    /// The step's layer joins the image, whether built now or found in the cache.
    func addLayer(_ layer: Descriptor, diffID: Digest, key: String, _ state: inout ImageState, createdBy: String) {
        state.layers.append(layer)
        state.diffIDs.append(diffID)
        state.config.rootfs.diffIDs = state.diffIDs
        state.cacheKey = key
        addHistory(&state, createdBy, empty: false)
        cacheEntries.append(BuildCacheEntry(key: key, layer: layer, diffID: diffID))
    }

    /// A layer built now: it joins the image and the local cache.
    func append(_ layer: Descriptor, diffID: Digest, key: String, _ state: inout ImageState, createdBy: String) throws {
        addLayer(layer, diffID: diffID, key: key, &state, createdBy: createdBy)
        let entry = CacheEntry(layer: layer, diffID: diffID)
        if let data = try? JSONEncoder().encode(entry) {
            try? Store.atomicWrite(path: "\(cacheDir)/\(key).json", data: data)
        }
    }

    struct CacheEntry: Codable {
        var layer: Descriptor
        var diffID: Digest
    }

    func useCache(_ key: String, _ state: inout ImageState, createdBy: String) throws -> Bool {
        guard !o.noCache,
              let data = FileManager.default.contents(atPath: "\(cacheDir)/\(key).json"),
              let e = try? JSONDecoder().decode(CacheEntry.self, from: data),
              b.store.hasBlob(e.layer.digest) else { return false }
        stepCached = true
        // used now: what an LRU prune of the cache (BuildCachePrune) keeps longest
        utimes("\(cacheDir)/\(key).json", nil)
        if o.progress == .json { event(["event": "cached", "step": stepNumber]) } else { b.progress("--> CACHED") }
        cachedSteps += 1
        addLayer(e.layer, diffID: e.diffID, key: key, &state, createdBy: createdBy)
        return true
    }

    func unpackedLayers(_ state: ImageState) throws -> [String] {
        try b.store.unpackedLayers(state.layers, diffIDs: state.diffIDs)
    }

    func layerTree(_ state: ImageState) throws -> LayeredTree { LayeredTree(layers: try unpackedLayers(state), opener: opener) }

    /// The unpacked layers a `--from` names (a stage of this build, else an image) and what
    /// identifies that content in a cache key.
    func fromLayers(_ ref: String, _ inst: Instruction, what: String) throws -> (dirs: [String], identity: String) {
        if let i = stageIndex(ref.lowercased(), before: Int.max) {
            guard let st = states[i] else {
                throw fail(inst, "\(what): stage \(ref) is not built before this step (a stage cannot take files from itself or a later stage)")
            }
            return (try unpackedLayers(st), st.cacheKey)
        }
        let rec: ImageRecord
        do { rec = try b.resolveImage(ref, nil) } catch { throw fail(inst, "\(what): \(error)", cause: error) }
        let m = try b.store.manifest(rec.descriptor)
        return (try b.store.unpackedLayers(m, try b.store.config(m)), rec.descriptor.digest.string)
    }

    /// Open a file to copy, through the opener when this user may not read it.
    func openFile(_ path: String) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd >= 0 || errno != EACCES { return fd }
        return opener?.open(path, O_RDONLY) ?? -1
    }

    // MARK: RUN --mount

    struct RunMount {
        /// layers: an overlay of dirs, writable into `scratch` when given (writes are dropped)
        enum Kind { case bind(String, readonly: Bool), cache(String, locked: Bool), tmpfs(String), layers([String], scratch: String?), nothing }
        var kind: Kind
        var target: String
        var cacheKey: String
        /// NAME=value for the step's environment (a secret's env=), not in the cache key
        var env: [String] = []
    }

    /// A new dir of this build's scratch space (removed with it).
    func scratchDir() throws -> String {
        let d = "\(tmpRoot)/scratch-\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func parseMount(_ spec: String, _ inst: Instruction, state: ImageState) throws -> RunMount {
        let f = OptionList.parse(spec, bare: "true", lowercaseKeys: true)
        let type = f["type"] ?? "bind"
        let wd = state.config.config?.workingDir ?? "/"
        func absTarget(_ t: String?) throws -> String {
            guard let t, !t.isEmpty else { throw fail(inst, "RUN --mount=\(spec): needs a target") }
            return IgnorePatterns.clean(t.hasPrefix("/") ? t : wd + "/" + t)
        }
        let target = f["target"] ?? f["dst"] ?? f["destination"]
        switch type {
        case "tmpfs":
            let t = try absTarget(target)
            // size= bounds it (tmpfs's own size= takes BuildKit's bytes and k/m/g suffixes)
            var opts = "mode=1777"
            if let size = f["size"] {
                guard size.range(of: #"^[0-9]+[kKmMgG]?$"#, options: .regularExpression) != nil else {
                    throw fail(inst, "RUN --mount=\(spec): size=\(size) is not a size")
                }
                opts += ",size=\(size)"
            }
            return RunMount(kind: .tmpfs(opts), target: t, cacheKey: "tmpfs \(t) \(opts)")
        case "cache":
            let t = try absTarget(target)
            let id = f["id"] ?? t
            let sharing = f["sharing"] ?? "shared"
            guard ["shared", "private", "locked"].contains(sharing) else { throw fail(inst, "RUN --mount=\(spec): sharing must be shared, private or locked") }
            // uid, gid and mode set the cache dir's owner and mode when it is made (BuildKit;
            // 0:0 0755 by default)
            func number(_ k: String, radix: Int = 10) throws -> UInt32? {
                guard let v = f[k] else { return nil }
                guard let n = UInt32(v, radix: radix) else { throw fail(inst, "RUN --mount=\(spec): \(k)=\(v) is not a number") }
                return n
            }
            let uid = try number("uid") ?? 0, gid = try number("gid") ?? 0, mode = try number("mode", radix: 8) ?? 0o755
            let dir = "\(cacheDir)/mounts/\(sha(id).prefix(24))"
            if access(dir, F_OK) != 0 {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                if uid != 0 || gid != 0 || mode != 0o755 {
                    do { try b.store.ops.setOwner(dir, uid: uid, gid: gid, mode: mode) } catch {
                        _ = try? b.store.ops.removeTree(dir)
                        throw fail(inst, "RUN --mount=\(spec): \(error)", cause: error)
                    }
                }
            }
            return RunMount(kind: .cache(dir, locked: sharing == "locked"), target: t, cacheKey: "cache \(id) \(t)")
        case "bind":
            let t = try absTarget(target)
            let rw = f["rw"] == "true" || f["readwrite"] == "true"
            if let from = f["from"] {
                // a stage's (or an image's) files: its layers overlaid at the target
                var (dirs, identity) = try fromLayers(from, inst, what: "RUN --mount from=\(from)")
                let tree = LayeredTree(layers: dirs, opener: opener)
                let srcRel = IgnorePatterns.clean("/" + (f["source"] ?? f["src"] ?? "")).dropFirst()
                guard let r = tree.resolve(String(srcRel)), let e = tree.lookup(r), e.isDir else {
                    throw fail(inst, "RUN --mount=\(spec): \(srcRel.isEmpty ? "/" : String(srcRel)) is not a directory in \(from)")
                }
                if !r.isEmpty {
                    dirs = dirs.compactMap { d in
                        var st = stat()
                        return tree.lst("\(d)/\(r)", &st) && (st.st_mode & S_IFMT) == S_IFDIR ? "\(d)/\(r)" : nil
                    }
                }
                if dirs.isEmpty { dirs = [tree.dirs[0]] }
                return RunMount(kind: .layers(dirs, scratch: rw ? try scratchDir() : nil), target: t, cacheKey: "bindfrom \(identity) \(r) \(t) \(rw)")
            }
            let src = String(IgnorePatterns.clean("/" + (f["source"] ?? f["src"] ?? "")).dropFirst())
            let tree = LayeredTree(plain: context)
            guard let r = tree.resolve(src), let e = tree.lookup(r) else {
                throw fail(inst, "RUN --mount=\(spec): \(src.isEmpty ? "." : src) is not in the build context")
            }
            // what .dockerignore excludes is not in the context (BuildKit): no mount shows it
            if excludedFromContext(r, isDir: e.isDir) || (src != r && excludedFromContext(src, isDir: e.isDir)) {
                throw fail(inst, "RUN --mount=\(spec): \(src) is not in the build context (.dockerignore excludes it)")
            }
            // the bound content is part of the step's identity
            var entries: [FileEntry] = []
            var hidden = false
            if e.isDir { try walk(tree, r, into: "", fromContext: true, chown: nil, chmod: nil, &entries, excluded: { _ in hidden = true }) }
            else { entries.append(try entry(e, in: tree, path: r, fromContext: true, chown: nil, chmod: nil)) }
            var h = ""
            for x in entries { if case .file(let p) = x.kind { h += "\(x.path) \(try fileDigest(p))\n" } else { h += "\(x.path)\n" } }
            // a step that ran before with excluded files in sight (ctr before the view) is not
            // reused: its layer may hold them
            if hidden { h += "filtered\n" }
            // a directory holding excluded files (or, for rw, files of ids the build cannot
            // give) is mounted from the context's view
            var source = e.hostPath
            if e.isDir {
                do {
                    source = try contextMountSource(r, e, entries: entries, hidden: hidden || ignore.isExcluded(r), rw: rw)
                } catch {
                    throw fail(inst, "RUN --mount=\(spec): \(error)", cause: error)
                }
            }
            // rw (as in BuildKit): the step may write, and what it writes is dropped; the
            // context itself is never written
            if rw {
                if e.isDir { return RunMount(kind: .layers([source], scratch: try scratchDir()), target: t, cacheKey: "bind \(t) \(sha(h)) rw") }
                let copy = "\(try scratchDir())/\((r as NSString).lastPathComponent)"
                try FileManager.default.copyItem(atPath: e.hostPath, toPath: copy)
                return RunMount(kind: .bind(copy, readonly: false), target: t, cacheKey: "bind \(t) \(sha(h)) rw")
            }
            return RunMount(kind: .bind(source, readonly: true), target: t, cacheKey: "bind \(t) \(sha(h))")
        case "secret":
            guard let id = f["id"] ?? target.map({ ($0 as NSString).lastPathComponent }) else {
                throw fail(inst, "RUN --mount=\(spec): a secret needs an id")
            }
            let t = try absTarget(target ?? "/run/secrets/\(id)")
            guard let src = o.secrets[id] else {
                if f["required"] == "true" { throw fail(inst, "RUN --mount=\(spec): no secret \"\(id)\" given (--secret id=\(id),src=FILE)") }
                return RunMount(kind: .tmpfs("mode=1777"), target: "/run/ctr-missing-secret-\(id)", cacheKey: "nosecret \(id)")
            }
            // env=NAME: the secret as a variable of the step (and as a file only with target=)
            var env: [String] = []
            if let name = f["env"] {
                guard let value = FileManager.default.contents(atPath: src) else { throw fail(inst, "RUN --mount=\(spec): cannot read the secret \(id)") }
                env = ["\(name)=\(String(decoding: value, as: UTF8.self))"]
                if target == nil {
                    return RunMount(kind: .nothing, target: "", cacheKey: "secret \(id) env \(name)", env: env)
                }
            }
            // not its content: a secret must not change cache keys that end up in shared caches
            return RunMount(kind: .bind(src, readonly: true), target: t, cacheKey: "secret \(id) \(t)", env: env)
        default:
            throw fail(inst, "RUN --mount=\(spec): type \(type) is not supported (bind, cache, tmpfs, secret)")
        }
    }

    // MARK: committing the image

    func commit(_ state: ImageState, tags: [Reference]) throws -> (Descriptor, Digest) {
        var config = state.config
        // a build that ran nothing gives the image the last build of these steps made (as
        // podman and BuildKit do): the created time is kept with the final step's cache key
        var stamp = created
        let stampFile = "\(cacheDir)/image-\(state.cacheKey).created"
        if epoch == nil {
            if ranSteps == 0, let old = try? String(contentsOfFile: stampFile, encoding: .utf8), !old.isEmpty {
                stamp = old
            } else {
                try? Store.atomicWrite(path: stampFile, data: Data(created.utf8))
            }
        }
        if stamp != created {
            config.history = config.history?.map { h in
                var h = h
                if h.created == created { h.created = stamp }
                return h
            }
        }
        config.created = stamp
        config.architecture = o.platform.architecture
        config.os = o.platform.os
        if !o.labels.isEmpty {
            var l = config.config?.labels ?? [:]
            for (k, v) in o.labels { l[k] = v }
            config.config?.labels = l
        }
        config.rootfs = RootFS(diffIDs: state.diffIDs)
        return try b.store.writing {
            let (desc, configDesc) = try b.store.putImage(config: config, layers: state.layers)
            if tags.isEmpty {
                try b.store.updateIndex { records in
                    if !records.contains(where: { $0.descriptor.digest == desc.digest }) {
                        records.append(ImageRecord(name: nil, descriptor: desc))
                    }
                }
            }
            for t in tags { try b.store.setName(t, to: desc) }
            return (desc, configDesc.digest)
        }
    }

    // MARK: helpers

}

func sha(_ s: String) -> String { Digest.sha256(Data(s.utf8)).encoded }

extension Command {
    var isShell: Bool { if case .shell = self { return true }; return false }
}
