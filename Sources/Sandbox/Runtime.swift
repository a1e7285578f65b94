import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// The root of a build step's container.
public struct BuildRoot: Sendable, Equatable {
    public var lowers: [String]
    public var upper: String
    public var work: String
    public var config: ContainerConfig
    public init(lowers: [String], upper: String, work: String, config: ContainerConfig) {
        self.lowers = lowers; self.upper = upper; self.work = work; self.config = config
    }
}

/// The exec stub (CSysShims/stub/exec_stub.c) in a sealed memfd: every container process execs
/// its command through it, so the ctr binary is never /proc/self/exe inside a container
/// (runc CVE-2019-5736). One per container, opened just before the clone, closed after it.
enum ExecStub {
    static func open() throws -> Int32 {
        var err = csys_error()
        let fd = csys_exec_stub_open(&err)
        if fd < 0 { throw CtrError(err) }
        return fd
    }
}

/// Notes for the user (stderr), said once each.
public typealias Notice = @Sendable (String) -> Void

/// Runs containers: the executor of the run path. `run(spec, image:)` gathers the facts
/// (`HostFacts.probe`, the image's config and layers), lets `Planner.plan` decide, then makes
/// what the plan says (state dir, files, the C plan, cgroups), clones and waits.
public struct Runtime: Sendable {
    public let store: Store
    public let containers: ContainerStore
    public let mapping: IDMapping
    public let notice: Notice
    /// The ctr binary, for the monitor's `ctr rm` after a detached --rm container exits.
    public var selfPath: String = CommandLine.arguments[0]

    public init(store: Store, notice: @escaping Notice) {
        self.store = store
        self.containers = ContainerStore(store)
        self.mapping = store.ops.mapping
        self.notice = notice
    }

    /// A plan made real, up to the clone.
    struct Prepared {
        var plan: ContainerPlan
        var record: ContainerRecord
        /// The flat plan the C child runs (its strings live in `arena`).
        var c: csys_container_plan
        var arena: CArena
        var cgroup: CgroupHandle?
        /// fuse-overlayfs's command line, when the root may need it; the daemon once started
        var fuseArguments: [String]? = nil
        var fuseDaemon: pid_t? = nil
        /// The container joined the user's shared user namespace: its maps are written already.
        var joinedUserns = false
        /// Its /etc files and the mount point of its root (see `ContainerStore.runPath`).
        var runDir = ""
        var stateDir: String { plan.stateDir }
        var useUserns: Bool { plan.useUserns }
    }

    static func randomID() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(g.next() as UInt64, radix: 16).leftPad(16) }.joined()
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count) == 0 ? String(cString: buf) : "localhost"
    }

    /// The image side of the plan: the store image's config and unpacked layers, or a build
    /// step's root.
    func imageFacts(_ spec: RunSpec, image: ImageRecord?) throws -> ImageFacts {
        if case .tree(let dir, let config) = spec.source {
            return ImageFacts(config: config, lowers: [], read: { UserDB.readFromLayers([dir], $0) })
        }
        if case .buildRoot(let br) = spec.source {
            let lowers = br.lowers
            return ImageFacts(config: br.config, lowers: lowers, read: { UserDB.readFromLayers(lowers, $0) })
        }
        guard let image else { throw CtrError.internal("no image") }
        let manifest = try store.manifest(image.descriptor)
        let config = try store.config(manifest)
        let lowers = try store.unpackedLayers(manifest, config)
        var f = ImageFacts(config: config.config ?? ContainerConfig(), lowers: lowers, read: { UserDB.readFromLayers(lowers, $0) })
        f.platform = Platform(os: config.os, architecture: config.architecture, variant: config.variant)
        f.layerBlobs = manifest.layers.map { store.blobPath($0.digest) }
        f.imageID = manifest.config.digest.string
        f.manifestDigest = image.descriptor.digest.string
        return f
    }

    /// Facts, plan, then everything before the clone; a failure leaves no container dir behind.
    func prepare(_ spec: RunSpec, image: ImageRecord?) throws -> Prepared {
        let id = Self.randomID()
        let stateDir = containers.path(id)
        let facts = try HostFacts.probe(for: spec, mapping: mapping, containers: spec.name == nil ? nil : containers, storeRoot: store.root)
        let plan = try Planner.plan(spec, image: try imageFacts(spec, image: image), facts: facts, id: id,
                                    stateDir: stateDir, storeRoot: store.root)
        for n in plan.notices { notice(n) }
        if plan.isolation != .userns && !spec.isBuildStep {
            // never silently less: what this container lacks here (a build says it once itself)
            notice("\(plan.isolation) isolation: this environment refuses \(plan.lacks.isEmpty ? "part of the sandbox" : plan.lacks.joined(separator: ", ")); the container has the /proc and /sys ctr sees instead")
        }
        do {
            return try materialize(plan)
        } catch {
            if access(stateDir, F_OK) == 0 { _ = try? store.ops.removeTree(stateDir) }
            if let run = containers.runPath(id), access(run, F_OK) == 0 { _ = try? store.ops.removeTree(run) }
            throw error
        }
    }

    /// What the plan says, made: the state dir and its files, volume dirs, the compiled seccomp
    /// program, the C plan, the cgroups, and the container's record.
    private func materialize(_ plan: ContainerPlan) throws -> Prepared {
        let stateDir = plan.stateDir
        var lowers = plan.lowers
        for d in [stateDir, "\(stateDir)/upper", "\(stateDir)/work"] {
            try valueOrErrno("mkdir", "cannot create \(d)") { mkdir(d, 0o700) }
        }
        chmod("\(stateDir)/upper", 0o755)
        // the files that die with the container, in the runtime dir (as root with --userns
        // auto, in the store: the container's root must be able to reach them)
        let runDir = plan.idmappedLowers ? stateDir : (containers.runPath(plan.id) ?? stateDir)
        if runDir != stateDir { try valueOrErrno("mkdir", "cannot create \(runDir)") { mkdir(runDir, 0o700) } }
        try valueOrErrno("mkdir", "cannot create \(runDir)/rootfs") { mkdir("\(runDir)/rootfs", 0o700) }
        if plan.emptyLower {
            try valueOrErrno("mkdir", "cannot create the empty layer") { mkdir("\(stateDir)/empty", 0o755) }
            lowers = ["\(stateDir)/empty"]
        }
        try Store.writeFile(path: "\(runDir)/hosts", data: Data(plan.hostsFile.utf8), sync: false)
        try Store.writeFile(path: "\(runDir)/hostname", data: Data((plan.hostname + "\n").utf8), sync: false)
        try Store.writeFile(path: "\(runDir)/resolv.conf", data: Data(plan.resolvConf.utf8), sync: false)
        // root with a user namespace: the layers are root's; the container sees them through
        // idmapped mounts, and its root (a subordinate id) gets a way through root's store
        // (search permission for that id's group only) and owns its upper dir
        if plan.idmappedLowers {
            guard let hu = plan.nsMapping.hostUID(0), let hg = plan.nsMapping.hostGID(0) else { throw CtrError.unsupported("--userns: no mapping for root") }
            for d in ["\(stateDir)/upper", "\(stateDir)/work", "\(stateDir)/hosts", "\(stateDir)/hostname", "\(stateDir)/resolv.conf"] {
                try valueOrErrno("chown", "cannot give \(d) to the container's root") { chown(d, hu, hg) }
            }
            let traverse = [store.root, "\(store.root)/containers", stateDir, "\(store.root)/layers", "\(store.root)/layers/sha256"]
                + lowers.map { ($0 as NSString).deletingLastPathComponent }
            for d in Set(traverse) {
                var st = stat()
                guard fstatat(AT_FDCWD, d, &st, 0) == 0, st.st_uid == 0 else { continue }
                if st.st_mode & 0o001 != 0 { continue }  // searchable by everyone already
                if st.st_gid != hg { chown(d, UInt32.max, hg) }
                chmod(d, (st.st_mode & 0o7777) | 0o010)
            }
        }

        // mounts: sources made where the plan says (docker makes a missing -v source)
        var mounts: [csys_mount] = []
        let arena = CArena()
        for pm in plan.mounts {
            var m = csys_mount()
            m.target = arena.string(pm.target)
            m.readonly = pm.readOnly ? 1 : 0
            switch pm.kind {
            case .bind(let source, let isFile, let makeSource):
                if makeSource && access(source, F_OK) != 0 {
                    var made = ""
                    for c in source.split(separator: "/") {
                        made += "/" + c
                        if mkdir(made, 0o755) != 0 && errno != EEXIST {
                            throw CtrError.errno("mkdir", "-v \(source):\(pm.target): cannot create \(made)")
                        }
                    }
                }
                var file = isFile ?? false
                if isFile == nil {
                    var isDir: ObjCBool = false
                    _ = FileManager.default.fileExists(atPath: source, isDirectory: &isDir)
                    file = !isDir.boolValue
                }
                m.kind = Int32(CSYS_MNT_BIND)
                m.source = arena.string(source)
                m.recursive = 1
                m.is_file = file ? 1 : 0
            case .tmpfs(let options):
                m.kind = Int32(CSYS_MNT_TMPFS)
                m.data = arena.string(options)
                m.flags = UInt(MS_NOSUID | MS_NODEV)
            case .overlay(let data, let scratch):
                if let scratch {
                    for d in ["upper", "work"] {
                        try FileManager.default.createDirectory(atPath: "\(scratch)/\(d)", withIntermediateDirectories: true)
                    }
                }
                m.kind = Int32(CSYS_MNT_OVERLAY)
                m.data = arena.string(data)
            }
            mounts.append(m)
        }

        // the seccomp program: compiled once per profile and capability set, cached in the store
        let caps = plan.capabilities
        let bpf: [UInt8]
        switch plan.seccomp {
        case .unconfined:
            bpf = []
        case .builtin:
            bpf = try SeccompCache(root: store.root).program(key: "builtin-podman-v1", capabilities: caps) {
                try SeccompProfile.podmanDefault.compile(capabilities: caps)
            }
        case .profile(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CtrError.notFound("--security-opt seccomp=\(path): cannot read the profile")
            }
            bpf = try SeccompCache(root: store.root).program(key: "file-\(Digest.sha256(data).encoded)", capabilities: caps) {
                try SeccompProfile.load(path: path).compile(capabilities: caps)
            }
        }

        // no overlay where the store is: the container's root is a copy of the image's files
        if plan.materializeTree, let tree = plan.rootTree {
            try valueOrErrno("mkdir", "cannot create \(tree)") { mkdir(tree, 0o755) }
            for blob in plan.layerBlobs { _ = try store.ops.apply(blob: blob, to: tree, tree: .plain) }
        }
        let upperDir = plan.upper ?? "\(stateDir)/upper", workDir = plan.work ?? "\(stateDir)/work"
        let fuseArguments = plan.fuse.program.map { FuseOverlay.arguments(program: $0, lowers: lowers, upper: upperDir, work: workDir) }
        var c = csys_container_plan()
        c.userns = plan.useUserns ? 1 : 0
        c.netns = plan.network == .host ? 0 : 1
        c.cgroupns = plan.chrootDir == nil ? 1 : 0
        if let dir = plan.chrootDir { c.chroot_dir = arena.string(dir) } else if let t = plan.rootTree { c.root_tree = arena.string(t) }
        c.bind_proc = plan.bindProc ? 1 : 0
        c.keep_hostname = plan.keepHostname ? 1 : 0
        c.setgroups = plan.setgroups ? 1 : 0
        c.rootfs = arena.string("\(runDir)/rootfs")
        c.lowers = UnsafePointer(arena.strings(lowers))
        c.nlowers = Int32(lowers.count)
        c.upper = arena.string(upperDir)
        c.work = arena.string(workDir)
        c.userxattr = plan.useUserns ? 1 : 0
        c.idmapped_lowers = plan.idmappedLowers ? 1 : 0
        c.fuse = plan.fuse.mode.rawValue
        if let missing = plan.fuse.missing { c.fuse_missing = arena.string(missing) }
        c.overlay_data = arena.string("lowerdir=\(lowers.joined(separator: ":")),upperdir=\(upperDir),workdir=\(workDir)\(plan.useUserns ? ",userxattr" : "")")
        c.readonly_rootfs = plan.readOnly ? 1 : 0
        c.mknod = plan.mknod ? 1 : 0
        c.own_sysfs = plan.ownSysfs ? 1 : 0
        c.devpts_gid5 = plan.devptsGid5 ? 1 : 0
        c.etc_hosts = arena.string("\(runDir)/hosts")
        c.etc_hostname = arena.string("\(runDir)/hostname")
        c.etc_resolv = arena.string("\(runDir)/resolv.conf")
        c.mounts = arena.array(mounts)
        c.nmounts = Int32(mounts.count)
        c.masked = UnsafePointer(arena.strings(plan.maskedPaths))
        c.nmasked = Int32(plan.maskedPaths.count)
        c.readonly_paths = UnsafePointer(arena.strings(plan.readonlyPaths))
        c.nreadonly = Int32(plan.readonlyPaths.count)
        c.hostname = arena.string(plan.hostname)
        c.cwd = arena.string(plan.cwd)
        c.argv = UnsafePointer(arena.strings(plan.argv))
        c.envp = UnsafePointer(arena.strings(plan.env))
        c.path_env = arena.string(plan.pathEnv)
        c.uid = plan.user.uid
        c.gid = plan.user.gid
        c.groups = arena.array(plan.groups.map { gid_t($0) })
        c.ngroups = Int32(plan.groups.count)
        c.caps = Capabilities.mask(caps)
        c.cap_last = Int32(Capabilities.lastCap)
        c.no_new_privs = plan.noNewPrivileges ? 1 : 0
        c.seccomp = arena.bytes(bpf)
        c.seccomp_len = bpf.count
        let rl = plan.rlimits.map { csys_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        c.rlimits = arena.array(rl)
        c.nrlimits = Int32(rl.count)
        c.tty = plan.tty ? 1 : 0
        c.stdio = (-1, -1, -1)
        c.`init` = plan.initProcess ? 1 : 0
        c.sync_fd = -1
        c.stub_fd = -1
        c.fuse_dev_fd = -1
        c.join_userns_fd = -1

        // as root without a user namespace, a devices cgroup too (where cgroup v1 has one)
        let handle = try CgroupHandle.create(name: String(plan.id.prefix(12)), limits: plan.limits, devices: plan.restrictDevices)
        let cgroup: CgroupHandle? = handle.isActive ? handle : nil
        if let cgroup {
            try Store.writeFile(path: "\(stateDir)/cgroup.json", data: try JSONEncoder().encode(cgroup.paths), sync: false)
        }
        // the record is written once, with the pid, just after the clone (see run)
        var record = plan.record
        record.created = ImageImport.rfc3339(Date(), fractional: true)
        return Prepared(plan: plan, record: record, c: c, arena: arena, cgroup: cgroup, fuseArguments: fuseArguments, runDir: runDir)
    }

    // MARK: starting

    /// After clone: maps, cgroup, network; then let the child run to exec.
    func start(_ p: inout Prepared, pid: pid_t, parentFD: Int32) throws -> NetworkAttachment? {
        // the container's user namespace, for fuse-overlayfs to join and for idmapped layers:
        // opened while the child is still dumpable (it stops being so once released)
        var userNS: Int32 = -1
        if p.useUserns && (p.fuseArguments != nil || p.plan.idmappedLowers) {
            userNS = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
            if userNS < 0 { throw CtrError.errno("open", "cannot open the container's user namespace") }
        }
        defer { if userNS >= 0 { close(userNS) } }
        if p.useUserns && !p.joinedUserns { try UserNamespace.writeMaps(pid: pid, mapping: p.plan.nsMapping) }
        var passFDs: [Int32] = []
        defer { passFDs.forEach { close($0) } }
        if p.c.idmapped_lowers != 0 {
            for i in 0..<Int(p.c.nlowers) {
                var e = csys_error()
                let t = csys_idmapped_tree(p.c.lowers[i], userNS, &e)
                if t < 0 { throw CtrError(e) }
                passFDs.append(t)
            }
        }
        try p.cgroup?.add(pid: pid)
        let net = try NetworkAttachment.attach(mode: p.plan.network, pid: pid, ports: p.plan.ports, rootless: p.useUserns)
        if let net {
            // the resolver the helper provides
            try? Store.writeFile(path: "\(p.runDir)/resolv.conf", data: Data(NetworkFiles.resolvConf(mode: p.plan.network, attachment: net, hostResolvConf: p.plan.hostResolvConf).utf8), sync: false)
            try? Store.writeFile(path: "\(p.runDir)/hosts", data: Data(NetworkFiles.hosts(hostname: p.plan.hostname, extraHosts: p.plan.extraHosts.map { ($0.name, $0.address) }, containerAddress: net.containerAddress).utf8), sync: false)
        }
        var err = csys_error()
        var fuseFD: Int32 = -1
        var rc = csys_container_release_with(parentFD, passFDs, Int32(passFDs.count), &err, &fuseFD, 0)
        passFDs.forEach { close($0) }
        passFDs.removeAll()
        if rc == 1, let args = p.fuseArguments {
            Trace.point("fuse requested")
            if p.useUserns, let w = FuseOverlay.oldVersionWarning(program: args[0]) { notice(w) }
            let arena = CArena()
            let daemon = csys_fuse_daemon_start(userNS, fuseFD, arena.strings(args), "\(p.stateDir)/fuse-overlayfs.log", &err)
            close(fuseFD)
            if daemon > 0 {
                p.fuseDaemon = daemon
                // a daemon that lives but never answers would leave the child waiting for ever
                rc = csys_container_release(parentFD, &err, &fuseFD, Int32(FuseOverlay.answerTimeout * 1000))
            } else {
                rc = -1
            }
        } else if rc == 1 {
            close(fuseFD)
            rc = -1
        }
        if rc != 0 {
            net?.stop()
            let e = CtrError(err)
            if let d = p.fuseDaemon {
                Glibc.kill(pid, SIGKILL)
                Glibc.kill(d, SIGKILL)
                var status: Int32 = 0
                _ = waitpid(d, &status, 0)
                let said = FuseOverlay.lastWords(log: "\(p.stateDir)/fuse-overlayfs.log")
                let what = e.errno == ETIMEDOUT ? "fuse-overlayfs did not answer within \(FuseOverlay.answerTimeout) s" : e.message
                throw CtrError(.system, what + (said.map { " (fuse-overlayfs said: \($0))" } ?? ""), stage: e.stage, errno: e.errno, cause: e)
            }
            // the command could not be executed: its code says 126 or 127
            throw e
        }
        return net
    }

    /// Remove a container's state (its upper dir may hold files of subordinate ids).
    public func remove(_ r: ContainerRecord) throws {
        let dir = containers.path(r.id)
        if let run = containers.runPath(r.id), access(run, F_OK) == 0 { _ = try? store.ops.removeTree(run) }
        _ = try? store.ops.removeTree(dir)
        if access(dir, F_OK) == 0 {
            // the mount point may still be busy in a dying namespace; try once more
            usleep(50_000)
            _ = try store.ops.removeTree(dir)
        }
    }

    /// A `--rm` container that exited: renamed out of the store's list at once (so it is gone
    /// for `ps`, `rm` and the next run), its files removed by a detached child while ctr
    /// returns. What the child leaves (killed) `ctr prune` removes. Falls back to `remove`.
    func removeSoon(_ r: ContainerRecord, joinedUserns: Bool) {
        if let run = containers.runPath(r.id), access(run, F_OK) == 0 { _ = try? store.ops.removeTree(run) }
        let trash = ".removing-\(r.id)"
        let dirfd = open(containers.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0, renameat(dirfd, r.id, dirfd, trash) == 0 else {
            if dirfd >= 0 { close(dirfd) }
            try? remove(r)
            return
        }
        defer { close(dirfd) }
        // files of subordinate ids need the user namespace: the shared one when there is one
        var userns: Int32 = -1
        if case .mapped = mapping {
            userns = joinedUserns ? ((try? UsernsKeeper.namespace(for: mapping)) ?? nil) ?? -1 : -1
            if userns < 0 {
                _ = try? store.ops.removeTree("\(containers.dir)/\(trash)")
                return
            }
        }
        defer { if userns >= 0 { close(userns) } }
        guard let stub = try? ExecStub.open() else { _ = try? store.ops.removeTree("\(containers.dir)/\(trash)"); return }
        defer { close(stub) }
        let name = strdup(trash)
        defer { free(name) }
        var names: [UnsafePointer<CChar>?] = [UnsafePointer(name)]
        if csys_remove_detached(stub, dirfd, &names, 1, userns) < 0 { _ = try? store.ops.removeTree("\(containers.dir)/\(trash)") }
    }

    /// `ctr run`: foreground (returns the exit code) or detached (returns 0 after printing the id).
    /// The image's layers are unpacked and the container's record (which keeps them from
    /// prune) written under the store's gc lock; `hold`, the caller's hold from before it
    /// resolved the image, is released then, not held for the container's life.
    public func run(_ o: RunSpec, image: ImageRecord?, hold: Store.WriteHold? = nil) throws -> (code: Int32, record: ContainerRecord) {
        do {
            return try runOnce(o, image: image, hold: hold)
        } catch let e as CtrError where o.isolation == nil && e.code == .unsupported && e.stage != nil {
            // the environment refused a piece of the full sandbox (the C child says so): the
            // probes tell what it allows, and a weaker level is taken, said once
            var d: IsolationDecision
            do {
                d = try IsolationDecision.decide(SandboxFacts.shared(storeDir: store.root), purpose: o.isBuildStep ? .build : .run)
            } catch let refusal as CtrError {
                throw CtrError.wrapping(e, "\(e.message); \(refusal.message)", code: .unsupported)
            }
            guard d.level != .userns else { throw e }
            var again = o
            again.isolation = d
            return try runOnce(again, image: image, hold: nil)
        }
    }

    func runOnce(_ o: RunSpec, image: ImageRecord?, hold: Store.WriteHold? = nil) throws -> (code: Int32, record: ContainerRecord) {
        Trace.point("image resolved")
        defer { hold?.release() }
        if o.tty && o.interactive && !o.detach && isatty(0) == 0 {
            // docker's answer: a terminal relay would wait on it for ever
            throw CtrError.usage("the input device is not a TTY: use -i without -t to pipe input")
        }
        // the gc lock, from before the image was resolved until the container's record (which
        // keeps its image from prune) is written, just after the clone
        let gcHold = try store.holdForWriting()
        var gcReleased = false
        func releaseGC() { if !gcReleased { gcReleased = true; gcHold.release(); hold?.release() } }
        defer { releaseGC() }
        var p = try prepare(o, image: image)
        Trace.point("prepared")
        var sv: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw CtrError.errno("socketpair", "cannot make the sync socket")
        }
        p.c.sync_fd = sv[1]
        if o.detach { return try runDetached(&p, sv: sv, o, releaseGC: releaseGC) }

        var master: Int32 = -1, slave: Int32 = -1
        var null: Int32 = -1
        var relay: StdioRelay?
        if o.tty {
            var err = csys_error()
            if csys_openpty(&master, &slave, isatty(0) != 0 ? 0 : -1, &err) != 0 { throw CtrError(err) }
            p.c.stdio = (slave, slave, slave)
        } else {
            if !o.interactive {
                null = open("/dev/null", O_RDONLY | O_CLOEXEC)
                p.c.stdio = (null, o.stdoutFD ?? -1, o.stderrFD ?? -1)
            }
            // a file of the host given as stdio goes through a pipe ctr copies
            relay = try StdioRelay(p.c.stdio)
            p.c.stdio = relay!.child
        }
        p.c.pdeathsig = SIGKILL
        var err = csys_error()
        let stub = try ExecStub.open()
        p.c.stub_fd = stub
        p.c.fuse_dev_fd = Self.fuseDevice(for: p)
        try joinSharedUserns(&p)
        let pid = csys_container_clone(&p.c, &err)
        close(stub)
        if p.c.fuse_dev_fd >= 0 { close(p.c.fuse_dev_fd) }
        if p.c.join_userns_fd >= 0 { close(p.c.join_userns_fd) }
        close(sv[1])
        if slave >= 0 { close(slave) }
        if null >= 0 { close(null) }
        if pid < 0 {
            relay?.finish()
            close(sv[0])
            try? remove(p.record)
            throw CtrError(err)
        }
        do { try relay?.start() } catch {
            Glibc.kill(pid, SIGKILL)
            _ = csys_wait_status(pid)
            relay?.finish()
            close(sv[0])
            try? remove(p.record)
            throw error
        }
        var record = p.record
        record.pid = pid
        record.pidStart = csys_proc_starttime(pid)
        let net: NetworkAttachment?
        do {
            csys_signals_forward_to(pid, master)
            // one write of the record, with its pid: from here prune keeps its image
            try containers.save(record)
            releaseGC()
            Trace.point("cloned")
            net = try start(&p, pid: pid, parentFD: sv[0])
            Trace.point("released (maps written)")
            if p.fuseDaemon != nil {
                record.rootFS = "fuse-overlayfs"
                try? containers.save(record)
            }
        } catch {
            Glibc.kill(pid, SIGKILL)
            _ = csys_wait_status(pid)
            relay?.finish()
            csys_signals_forward_to(0, -1)
            close(sv[0])
            try? p.cgroup?.remove()
            try? remove(record)
            throw error
        }
        close(sv[0])
        Trace.point("saved")
        if o.tty {
            let raw = isatty(0) != 0 && csys_tty_raw(0) == 0
            _ = csys_tty_relay(master, o.interactive ? 0 : -1, 1)
            if raw { csys_tty_restore(0) }
            close(master)
        }
        let code = csys_wait_status(pid)
        relay?.finish()
        Trace.point("exited")
        if let d = p.fuseDaemon { FuseOverlay.reap(d) }
        csys_signals_forward_to(0, -1)
        net?.stop()
        try? p.cgroup?.remove()
        if o.autoRemove {
            if getenv("CTR_RM_SYNC") != nil { try? remove(record) } else { removeSoon(record, joinedUserns: p.joinedUserns) }
            Trace.point("removed")
        } else {
            record.exitCode = code
            record.finished = ImageImport.rfc3339(Date(), fractional: true)
            try? containers.save(record)
        }
        return (code, record)
    }

    /// The user's shared user namespace, when the plan says so and there is one to have: the
    /// clone joins it instead of making a namespace of its own (see `UsernsKeeper`).
    func joinSharedUserns(_ p: inout Prepared) throws {
        guard p.plan.sharedUserNamespace, let fd = try UsernsKeeper.namespace(for: p.plan.nsMapping) else { return }
        p.c.join_userns_fd = fd
        p.c.userns = 0
        p.joinedUserns = true
    }

    /// Root without a user namespace whose root may be served by fuse-overlayfs: /dev/fuse
    /// opened here, since the devices cgroup the child is in by then refuses it (in a user
    /// namespace the child must open it itself, and there is no devices cgroup).
    static func fuseDevice(for p: Prepared) -> Int32 {
        guard !p.useUserns, p.c.fuse != 0, p.cgroup != nil else { return -1 }
        return open("/dev/fuse", O_RDWR | O_CLOEXEC)
    }

    func runDetached(_ p: inout Prepared, sv: [Int32], _ o: RunSpec, releaseGC: () -> Void) throws -> (code: Int32, record: ContainerRecord) {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        var master: Int32 = -1, slave: Int32 = -1
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        if o.tty {
            var err = csys_error()
            if csys_openpty(&master, &slave, -1, &err) != 0 { throw CtrError(err) }
            p.c.stdio = (slave, slave, slave)
        } else {
            guard csys_pipe_cloexec(&outPipe) == 0, csys_pipe_cloexec(&errPipe) == 0 else {
                throw CtrError.errno("pipe", "cannot make the output pipes")
            }
            p.c.stdio = (null, outPipe[1], errPipe[1])
        }
        p.c.pdeathsig = 0
        var report: [Int32] = [-1, -1]
        guard csys_pipe_cloexec(&report) == 0 else { throw CtrError.errno("pipe", "cannot make a pipe") }
        var m = csys_monitor_args()
        let arena = p.arena
        m.log_path = arena.string("\(p.stateDir)/ctr.log")
        m.exit_path = arena.string("\(p.stateDir)/exit")
        m.out_fd = outPipe[0]
        m.err_fd = errPipe[0]
        m.tty_master = master
        m.report_fd = report[1]
        // after the exit is recorded: stop the network helper, remove the cgroup (and the
        // container with --rm). The monitor is a host process, outside the container.
        m.on_exit_argv = UnsafePointer(arena.strings([selfPath, "--root", store.root, "cleanup", p.record.id]))
        var err = csys_error()
        let stub = try ExecStub.open()
        p.c.stub_fd = stub
        p.c.fuse_dev_fd = Self.fuseDevice(for: p)
        try joinSharedUserns(&p)
        let monitor = csys_monitor_start(&p.c, &m, &err)
        close(stub)
        if p.c.fuse_dev_fd >= 0 { close(p.c.fuse_dev_fd) }
        if p.c.join_userns_fd >= 0 { close(p.c.join_userns_fd) }
        close(report[1])
        close(sv[1])
        for fd in [outPipe[0], outPipe[1], errPipe[0], errPipe[1], master, slave] where fd >= 0 { close(fd) }
        if monitor < 0 {
            close(report[0]); close(sv[0])
            try? remove(p.record)
            throw CtrError(err)
        }
        var pid: Int32 = -1
        let n = read(report[0], &pid, 4)
        if n != 4 || pid < 0 {
            var cerr = csys_error()
            _ = read(report[0], &cerr, MemoryLayout<csys_error>.size)
            close(report[0]); close(sv[0])
            _ = csys_wait_status(monitor)
            try? remove(p.record)
            throw CtrError(cerr, fallback: "the monitor could not start the container")
        }
        close(report[0])
        var record = p.record
        record.pid = pid
        record.pidStart = csys_proc_starttime(pid)
        record.monitorPid = monitor
        do {
            // the record before the container may run (and exit: the monitor's cleanup reads it)
            try containers.save(record)
            releaseGC()
            let net = try start(&p, pid: pid, parentFD: sv[0])
            if let net { try? net.detachRecord(into: "\(p.stateDir)/network.json") }
            if p.fuseDaemon != nil {
                record.rootFS = "fuse-overlayfs"
                try containers.save(record)
            }
        } catch {
            Glibc.kill(pid, SIGKILL)
            close(sv[0])
            _ = csys_wait_status(monitor)
            try? p.cgroup?.remove()
            try? remove(record)
            throw error
        }
        close(sv[0])
        return (0, record)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

extension IDMapping {
    var isSingleMapping: Bool { if case .single = self { return true } else { return false } }
}
