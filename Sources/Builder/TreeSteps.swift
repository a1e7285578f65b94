import CSysShims
import Dockerfile
import Errors
import Foundation
import HostOS
import Layers
import Sandbox

/// A stage's files as a real directory tree, for the RUN steps that cannot have an overlay:
/// the chroot isolation level (no namespace at all), the container level, and namespaces where
/// overlayfs cannot take its upper dir on the store's filesystem. A step runs in the tree and
/// its layer is the tree's difference (TreeSnapshot); the tree catches up with the layers the
/// stage got otherwise (COPY, ADD, a cached RUN) before a step runs.
final class TreeState {
    let dir: String
    /// The diff-ids applied, bottom first.
    var applied: [Digest] = []
    /// The stage it holds (the container level's one tree, `/`, holds one stage at a time).
    var stage: Int?
    init(dir: String) { self.dir = dir }
}

extension BuildRun {
    /// How RUN steps are sandboxed in this environment, probed and decided once per build and
    /// said once when it is less than the full sandbox.
    func isolation() throws -> IsolationDecision {
        let d = try decidedIsolation()
        if isolationSaid { return d }
        isolationSaid = true
        if d.level != .userns || d.treeRoot {
            var what = "RUN steps get \(d.level) isolation"
            if d.treeRoot && d.level != .chroot && d.level != .container { what += " on a copy of the stage's files (overlayfs cannot take its upper dir where the store is)" }
            if !d.lacks.isEmpty { what += "; they lack \(d.lacks.joined(separator: ", "))" }
            if !d.refused.isEmpty { what += " (\(d.refused.joined(separator: "; ")))" }
            b.progress("note: \(what)")
        }
        return d
    }

    /// The decision without a word: made before the first step of a build with RUN, so that
    /// a place where RUN cannot be sandboxed fails before anything runs.
    func decidedIsolation() throws -> IsolationDecision {
        if let d = isolationDecision { return d }
        let facts = SandboxFacts.shared(storeDir: b.store.root)
        let d = try IsolationDecision.decide(facts, request: o.isolation, purpose: .build)
        isolationDecision = d
        return d
    }

    /// Whether this build's RUN steps run on real trees rather than overlays.
    func runsInTrees(_ d: IsolationDecision) -> Bool { d.level == .chroot || d.level == .container || d.treeRoot }

    /// The stage's tree, with every layer of `state` applied.
    func tree(for state: ImageState) throws -> TreeState {
        if isolationDecision?.level == .container { return try containerTree(for: state) }
        let t: TreeState
        if let existing = trees[state.stage] {
            t = existing
        } else {
            t = TreeState(dir: "\(tmpRoot)/tree-\(state.stage)")
            trees[state.stage] = t
        }
        let prefix = t.applied.count <= state.diffIDs.count && Array(state.diffIDs.prefix(t.applied.count)) == t.applied
        if !prefix || access(t.dir, F_OK) != 0 {
            if access(t.dir, F_OK) == 0 { _ = try b.store.ops.removeTree(t.dir) }
            try valueOrErrno("mkdir", "cannot create \(t.dir)") { mkdir(t.dir, 0o755) }
            t.applied = []
        }
        for i in t.applied.count..<state.layers.count {
            _ = try b.store.ops.apply(blob: b.store.blobPath(state.layers[i].digest), to: t.dir, tree: .plain)
            t.applied.append(state.diffIDs[i])
        }
        return t
    }

    /// The container level (kaniko's way): `/` itself holds the stage's files. A stage other
    /// than the one it holds, or layers other than the ones applied, clear it first (all but
    /// the kept paths); layers are applied around the kept paths.
    func containerTree(for state: ImageState) throws -> TreeState {
        let keep = containerKeep()
        let t = trees[-1] ?? TreeState(dir: "/")
        trees[-1] = t
        let prefix = t.stage == state.stage && t.applied.count <= state.diffIDs.count
            && Array(state.diffIDs.prefix(t.applied.count)) == t.applied
        if !prefix {
            Self.loadWhileTheyExist()
            do { try LayerOps.clearTree("/", keep: keep) } catch { trees[-1] = nil; throw CtrError.build("--isolation container: cannot clear this container's files: \(error)", cause: error) }
            t.applied = []
            t.stage = state.stage
        }
        for i in t.applied.count..<state.layers.count {
            do {
                _ = try b.store.ops.apply(blob: b.store.blobPath(state.layers[i].digest), to: "/", tree: .plain, skip: keep)
            } catch {
                trees[-1] = nil
                throw CtrError.build("--isolation container: cannot lay layer \(state.diffIDs[i]) over this container: \(error)", cause: error)
            }
            t.applied.append(state.diffIDs[i])
        }
        return t
    }

    /// What ctr loads on first use (libcurl and its libraries, ISA-L, the resolver's NSS
    /// modules) is loaded before `/` is cleared: afterwards the files are the image's.
    static func loadWhileTheyExist() {
        var e = csys_error()
        _ = csys_load_archive(&e)
        _ = csys_load_curl(&e)
        _ = csys_load_codecs(&e)
        _ = csys_load_crypto(&e)
        _ = csys_load_seccomp(&e)
        var res: UnsafeMutablePointer<addrinfo>?
        if getaddrinfo("localhost", nil, nil, &res) == 0 { freeaddrinfo(res) }
        _ = getpwuid(0)
    }

    /// The paths of `/` the container level leaves as they are (relative, real paths): /proc,
    /// /sys, /dev, every mount point (volumes, /etc/hosts and resolv.conf, the CI system's
    /// inputs and outputs), the store, the context, the build cache, outputs, id and secret
    /// files, ctr's own binary and runtime dir, registry credentials.
    func containerKeep() -> [String] {
        if let k = containerKeepPaths { return k }
        let env = ProcessInfo.processInfo.environment
        let home = env["HOME"] ?? "/root"
        var paths = ["/proc", "/sys", "/dev"] + Self.mountPoints() + [b.store.root, context, cacheDir, tmpRoot] + o.keepPaths
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { paths.append(exe) }
        if let rt = UsernsKeeper.runtimeDir() { paths.append(rt) }
        paths += ["\(home)/.docker/config.json", "\(home)/.config/containers/auth.json", "\(home)/.config/containers/registries.conf"]
        for v in ["DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "CONTAINERS_REGISTRIES_CONF"] { if let p = env[v] { paths.append(p) } }
        if let x = env["XDG_RUNTIME_DIR"] { paths.append("\(x)/containers") }
        let keep = Set(paths.compactMap(Self.rootRelative)).filter { !$0.isEmpty }.sorted()
        containerKeepPaths = keep
        return keep
    }

    /// Every mount point of this mount namespace but `/` (from /proc/self/mountinfo).
    static func mountPoints() -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard f.count > 4 else { return nil }
            return unescapeMountinfo(String(f[4]))
        }.filter { $0 != "/" }
    }

    /// mountinfo's octal escapes (`\040` for a space).
    static func unescapeMountinfo(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `path` (absolute, or relative to the working directory) as a real path relative to `/`:
    /// its longest existing ancestor resolved, the rest appended.
    static func rootRelative(_ path: String) -> String? {
        var abs = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        abs = (abs as NSString).standardizingPath
        var head = abs, tail: [String] = []
        while head != "/" && !head.isEmpty {
            if let r = realpath(head, nil) {
                let real = String(cString: r)
                free(r)
                return String(([real] + tail.reversed()).joined(separator: "/").drop(while: { $0 == "/" }))
            }
            tail.append((head as NSString).lastPathComponent)
            head = (head as NSString).deletingLastPathComponent
        }
        return tail.reversed().joined(separator: "/")
    }

    /// What a chrooted step needs that nothing mounts for it: /dev nodes (or plain files where
    /// mknod is refused), /proc and /sys as empty dirs, the build's /etc/hosts and resolv.conf.
    /// Written in the tree with every path resolved inside it (InRoot).
    func prepareChrootTree(_ tree: borrowing InRoot, decision d: IsolationDecision) throws {
        for sub in ["dev", "proc", "sys", "etc"] { close(try tree.directory(sub, create: true)) }
        for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] as [(String, UInt32, UInt32)] {
            try tree.device("dev/\(name)", major: major, minor: minor, mknod: d.mknod)
        }
        let resolv = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        let hosts = (try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? "127.0.0.1\tlocalhost\n"
        // a symlink in the image (resolv.conf → ../run/…) is replaced for the step: these are
        // left out of the layer either way
        try tree.writeFile("etc/resolv.conf", Data(resolv.utf8))
        try tree.writeFile("etc/hosts", Data((hosts + o.addHosts.compactMap { try? HostEntry(parsing: $0) }.map { "\($0.address)\t\($0.name)\n" }.joined()).utf8))
    }

    static func isFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// A RUN step in the stage's tree: snapshot, run, snapshot again; the difference is the
    /// layer (the paths the runtime provides are left out, as the overlay path drops them).
    func runInTree(_ inst: Instruction, spec template: RunSpec, mounts: [RunMount], key: String, createdBy: String,
                   decision d: IsolationDecision, captured: Int32, outputPath: String, _ state: inout ImageState) throws {
        let t = try tree(for: state)
        let chrooted = d.level == .chroot || d.level == .container
        var spec = template
        guard case .buildRoot(let br) = template.source else { throw CtrError.internal("a tree step without its config") }
        spec.source = .tree(dir: t.dir, config: br.config)
        spec.isolation = d
        var skip = ["proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"]
        var copied: [String] = []
        var madeDirs: [String] = []
        for m in mounts {
            let rel = String(m.target.drop(while: { $0 == "/" }))
            if !rel.isEmpty { skip.append(rel) }
        }
        let root = try InRoot(t.dir)
        // nothing can be mounted at these levels: files a step reads (a heredoc script, a
        // secret) are copied in (after the first snapshot) and out; anything else needs a mount
        // namespace
        var files: [(rel: String, src: String)] = []
        if chrooted {
            spec.mounts = []
            for m in mounts {
                switch m.kind {
                case .nothing: continue
                case .bind(let src, readonly: true) where Self.isFile(src):
                    files.append((String(m.target.drop(while: { $0 == "/" })), src))
                default:
                    throw fail(inst, "\(createdBy): RUN --mount needs a mount namespace, which \(d.level) isolation has not (\(d.refused.joined(separator: "; ")))")
                }
            }
            if d.level == .chroot { try prepareChrootTree(root, decision: d) }
        }
        if d.level == .container { skip += containerKeep() }
        let before = try b.store.ops.snapshot(root: t.dir, skip: skip)
        // what was copied in goes, and the dirs made for it (when the step left them empty)
        func uncopy() {
            for p in copied { root.remove(p) }
            for d in madeDirs.reversed() { root.removeEmptyDirectory(d) }
            copied.removeAll()
            madeDirs.removeAll()
        }
        defer { uncopy() }
        for f in files {
            var st = stat()
            _ = stat(f.src, &st)
            copied.append(f.rel)
            try root.writeFile(f.rel, try Data(contentsOf: URL(fileURLWithPath: f.src)), mode: st.st_mode & 0o7777, created: &madeDirs)
        }
        let code: Int32
        do {
            code = try b.runtime.run(spec, image: nil).code
        } catch {
            trees[state.stage] = nil
            trees[-1] = nil
            throw fail(inst, "\(createdBy): \(error)", cause: error)
        }
        if code != 0 {
            if captured >= 0, let out = FileManager.default.contents(atPath: outputPath) { FileHandle.standardError.write(out) }
            let lines = createdBy.split(separator: "\n", omittingEmptySubsequences: true)
            // the tree holds the failed step's changes: made again for the next build
            trees[state.stage] = nil
            trees[-1] = nil
            throw fail(inst, "\(lines.first ?? "")\(lines.count > 1 ? " …" : ""): exit status \(code)")
        }
        ranSteps += 1
        uncopy()
        let blob = b.store.ingestPath()
        let digests: LayerDigests
        do {
            (digests, _) = try b.store.ops.createLayer(changedSince: before, output: blob, compression: .gzip, clampMtime: epoch)
        } catch {
            unlink(blob)
            throw CtrError.build("cannot make the layer of \(createdBy): \(error)", cause: error)
        }
        let layer = Descriptor(mediaType: .ociLayerGzip, digest: digests.digest, size: digests.size)
        try b.store.writing {
            if !b.store.hasBlob(digests.digest) { try b.store.commit(file: blob, as: digests.digest) } else { unlink(blob) }
        }
        try append(layer, diffID: digests.diffID, key: key, &state, createdBy: createdBy)
        t.applied.append(digests.diffID)
    }
}
