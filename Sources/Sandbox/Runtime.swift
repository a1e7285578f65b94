import CSysShims
import Foundation
import HostOS
import Layers

/// Everything `ctr run` was asked for.
public struct RunOptions: Sendable {
    public var image: String
    public var command: [String] = []
    public var entrypoint: String?
    public var name: String?
    public var detach = false
    public var autoRemove = false
    public var tty = false
    public var interactive = false
    public var env: [String] = []
    public var envFiles: [String] = []
    public var workdir: String?
    public var user: String?
    public var volumes: [String] = []
    public var tmpfs: [String] = []
    public var readOnly = false
    public var network: String?
    public var ports: [String] = []
    public var hostname: String?
    public var addHosts: [String] = []
    public var initProcess = false
    public var capAdd: [String] = []
    public var capDrop: [String] = []
    public var securityOpts: [String] = []
    public var limits = ResourceLimits()
    public var ulimits: [String] = []
    public var userns: String?
    public var platform: Platform = .current
    /// ctr build: the root is these unpacked layers (topmost first) with this upper dir (the
    /// step's new layer) instead of an image's; the config stands in for the image's.
    public var buildRoot: BuildRoot?
    /// Where the container's stdout goes (default: ours). ctr build sends RUN output to stderr.
    public var stdoutFD: Int32?
    /// Where a non-interactive process's stderr goes (default: ctr's).
    public var stderrFD: Int32?
    /// Views of layer dirs (topmost first) at targets: RUN --mount=type=bind,from=STAGE (and
    /// rw binds, whose writes go to a scratch upper dir).
    public var layerMounts: [LayerMount] = []

    public init(image: String) { self.image = image }
}

public struct LayerMount: Sendable {
    public var lowers: [String]
    public var target: String
    /// A dir for the upper and work dirs of a writable view (the writes stay there); nil: read-only.
    public var scratch: String?
    public init(lowers: [String], target: String, scratch: String? = nil) {
        self.lowers = lowers; self.target = target; self.scratch = scratch
    }
}

/// The root of a build step's container.
public struct BuildRoot: Sendable {
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
        if fd < 0 { throw ContainerError(SysError(err).message) }
        return fd
    }
}

/// Notes for the user (stderr), said once each.
public typealias Notice = @Sendable (String) -> Void

/// Runs containers.
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

    // MARK: planning

    struct Prepared {
        var record: ContainerRecord
        var plan: csys_container_plan
        var arena: CArena
        var network: NetworkMode
        var ports: [PortMapping]
        var cgroup: CgroupHandle?
        var useUserns: Bool
        var nsMapping: IDMapping
        var stateDir: String
        var extraHosts: [(String, String)] = []
        var hostResolv = ""
        /// fuse-overlayfs's command line, when the root may need it; the daemon once started
        var fuseArguments: [String]? = nil
        var fuseDaemon: pid_t? = nil
    }

    static func randomID() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(g.next() as UInt64, radix: 16).leftPad(16) }.joined()
    }

    /// Docker's rule: entrypoint + (args, or the image's cmd); --entrypoint drops the image's cmd.
    public static func argv(imageEntrypoint: [String]?, imageCmd: [String]?, entrypoint: String?, args: [String]) -> [String] {
        if let e = entrypoint {
            return (e.isEmpty ? [] : [e]) + args
        }
        return (imageEntrypoint ?? []) + (args.isEmpty ? (imageCmd ?? []) : args)
    }

    static func parseEnvFile(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ContainerError("--env-file \(path): cannot read it")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: true).compactMap { raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { return nil }
            if line.contains("=") { return line }
            return ProcessInfo.processInfo.environment[line].map { "\(line)=\($0)" }
        }
    }

    /// Merge NAME=VALUE lists, later ones winning, order kept.
    static func mergeEnv(_ lists: [[String]]) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        for list in lists {
            for e in list {
                let name = e.split(separator: "=", maxSplits: 1).first.map(String.init) ?? e
                if values[name] == nil { order.append(name) }
                values[name] = e
            }
        }
        return order.compactMap { values[$0] }
    }

    static func rlimit(_ s: String) throws -> csys_rlimit {
        let kv = s.split(separator: "=", maxSplits: 1).map(String.init)
        let names: [String: Int32] = ["core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8, "msgqueue": 12,
                                      "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14, "rttime": 15,
                                      "sigpending": 11, "stack": 3, "as": 9]
        guard kv.count == 2, let res = names[kv[0]] else { throw ContainerError("--ulimit \(s): expected NAME=SOFT[:HARD]") }
        let vals = kv[1].split(separator: ":").map(String.init)
        func num(_ v: String) throws -> UInt64 {
            if v == "-1" || v == "unlimited" { return UInt64.max }
            guard let n = UInt64(v) else { throw ContainerError("--ulimit \(s): \(v) is not a number") }
            return n
        }
        let soft = try num(vals[0])
        let hard = vals.count > 1 ? try num(vals[1]) : soft
        if soft > hard { throw ContainerError("--ulimit \(s): the soft limit is above the hard one") }
        return csys_rlimit(resource: res, soft: soft, hard: hard)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count) == 0 ? String(cString: buf) : "localhost"
    }

    /// Everything before the clone; a failure leaves no container dir behind.
    func prepare(_ o: RunOptions, image: ImageRecord?) throws -> Prepared {
        let id = Self.randomID()
        do {
            return try prepare(o, image: image, id: id)
        } catch {
            if access(containers.path(id), F_OK) == 0 { _ = try? store.ops.removeTree(containers.path(id)) }
            throw error
        }
    }

    private func prepare(_ o: RunOptions, image: ImageRecord?, id: String) throws -> Prepared {
        let cfg: ContainerConfig
        var lowers: [String] = []
        var imageID = "", manifestDigest = ""
        if let br = o.buildRoot {
            cfg = br.config
            lowers = br.lowers
        } else {
            guard let image else { throw ContainerError("no image") }
            let manifest = try store.manifest(image.descriptor)
            let config = try store.config(manifest)
            let imagePlatform = Platform(os: config.os, architecture: config.architecture, variant: config.variant)
            if !imagePlatform.matches(.current) {
                // as docker and podman warn; the kernel may still run it (binfmt_misc)
                notice("the image's platform (\(imagePlatform)) does not match this host's (\(Platform.current))")
            }
            cfg = config.config ?? ContainerConfig()
            lowers = try store.unpackedLayers(manifest, config)
            imageID = manifest.config.digest.string
            manifestDigest = image.descriptor.digest.string
        }

        // options checked before anything is made, as podman checks them
        if let u = o.userns, !["", "host", "auto"].contains(u), !u.hasPrefix("auto:") {
            throw ContainerError("--userns \(u): expected host or auto")
        }
        if let n = o.name, n.range(of: #"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"#, options: .regularExpression) == nil {
            throw ContainerError("--name \(n.debugDescription): a name must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        }
        if let bad = o.env.first(where: { $0.hasPrefix("=") || $0.isEmpty }) {
            throw ContainerError("-e \(bad.debugDescription): a variable needs a name")
        }
        if let w = o.workdir, !w.hasPrefix("/") {
            throw ContainerError("-w \(w): the working directory must be an absolute path")
        }
        let fuse = try FuseOverlay.current()
        let argv = Self.argv(imageEntrypoint: cfg.entrypoint, imageCmd: cfg.cmd, entrypoint: o.entrypoint, args: o.command)
        guard !argv.isEmpty else { throw ContainerError("no command: the image has none, give one after the image name") }

        // ids: a user namespace for rootless users (and for root on request)
        var useUserns: Bool
        var nsMapping = mapping
        switch mapping {
        case .root:
            useUserns = false
            if let u = o.userns, u != "host" {
                useUserns = true
                // root's range, or podman's "containers" user's: never one that may be a user's
                func range(_ file: String) -> (UInt32, UInt32)? {
                    IDMapping.subordinateRanges(file: file, name: "root", id: 0).first
                        ?? getpwnam("containers").flatMap { IDMapping.subordinateRanges(file: file, name: "containers", id: $0.pointee.pw_uid).first }
                }
                guard let (ustart, ucount) = range("/etc/subuid"), let (gstart, gcount) = range("/etc/subgid") else {
                    throw ContainerError("--userns \(u): root has no subordinate id range in /etc/subuid and /etc/subgid (add one, e.g. root:1000000:65536, as podman's --userns=auto wants for its containers user)")
                }
                nsMapping = .mapped(uid: [IDRange(containerID: 0, hostID: ustart, count: ucount)],
                                    gid: [IDRange(containerID: 0, hostID: gstart, count: gcount)])
            }
        case .mapped, .single:
            useUserns = true
        }
        if case .single = mapping {
            notice("no subordinate ids for this user in /etc/subuid and /etc/subgid: the container has a single id (your own, as root) and cannot switch users or groups")
        }

        let readLayer = { (p: String) in UserDB.readFromLayers(lowers, p) }
        let user = try UserDB.resolve(o.user ?? cfg.user ?? "", read: readLayer)
        if useUserns {
            if nsMapping.hostUID(user.uid) == nil || nsMapping.hostGID(user.gid) == nil {
                throw ContainerError("user \(o.user ?? cfg.user ?? "") (\(user.uid):\(user.gid)) is not mapped in this user namespace (\(nsMapping.isSingleMapping ? "no subordinate ids" : "the subordinate id range is too small"))")
            }
        }
        let groups = useUserns && nsMapping.isSingleMapping ? [] : user.groups.filter { !useUserns || nsMapping.hostGID($0) != nil }

        let name = o.name ?? String(id.prefix(12))
        if o.name != nil, containers.all().contains(where: { $0.name == name }) {  // a generated name is unique
            throw ContainerError("the container name \"\(name)\" is already in use; remove it (ctr rm \(name)) or choose another name")
        }
        // --network host: the host's name, as docker and podman give it
        let hostname = o.hostname ?? (o.network == "host" ? Self.hostName() : String(id.prefix(12)))

        // environment: the image's, then --env-file, then -e
        var env = cfg.env ?? []
        var fileEnv: [String] = []
        for f in o.envFiles { fileEnv += try Self.parseEnvFile(f) }
        let flagEnv = o.env.compactMap { e -> String? in
            if e.contains("=") { return e }
            return ProcessInfo.processInfo.environment[e].map { "\(e)=\($0)" }
        }
        env = Self.mergeEnv([["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], env,
                             ["HOSTNAME=\(hostname)"], fileEnv, flagEnv])
        let recordedEnv = env  // for exec: without the HOME and TERM of this user and terminal
        if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=\(user.home)") }
        if o.tty && !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let pathEnv = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? ""

        // security
        var noNewPrivs = true
        // the profile is read (or the built-in one made) only when its compiled form is not
        // cached: compiling podman's profile with libseccomp costs more than the rest of start-up
        enum ProfileSource { case builtin, file(String), unconfined }
        var profileSource = ProfileSource.builtin
        for opt in o.securityOpts {
            let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0], value = kv.count > 1 ? kv[1] : ""
            switch key {
            case "no-new-privileges":
                guard ["", "true", "false"].contains(value) else {
                    throw ContainerError("--security-opt \(opt): expected no-new-privileges, no-new-privileges=true or =false")
                }
                noNewPrivs = value != "false"
            case "seccomp":
                profileSource = value == "unconfined" ? .unconfined : .file(value)
            case "label", "apparmor":
                continue // not on this kind of host; accepted as podman does when they do not apply
            default:
                throw ContainerError("--security-opt \(opt): unknown option (no-new-privileges, seccomp=unconfined|PROFILE.json)")
            }
        }
        let caps = try Capabilities.effective(add: o.capAdd, drop: o.capDrop)
        let bpf: [UInt8]
        switch profileSource {
        case .unconfined:
            bpf = []
        case .builtin:
            bpf = try SeccompCache(root: store.root).program(key: "builtin-podman-v1", capabilities: caps) {
                try SeccompProfile.podmanDefault.compile(capabilities: caps)
            }
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ContainerError("--security-opt seccomp=\(path): cannot read the profile")
            }
            bpf = try SeccompCache(root: store.root).program(key: "file-\(Digest.sha256(data).encoded)", capabilities: caps) {
                try SeccompProfile.load(path: path).compile(capabilities: caps)
            }
        }

        // network
        let mode: NetworkMode
        let ports = try o.ports.map { try PortMapping(parsing: $0) }
        if let n = o.network {
            mode = try NetworkMode(parsing: n)
        } else {
            let (m, note) = NetworkMode.resolveDefault(rootless: useUserns)
            if let note {
                if !ports.isEmpty && m == .none {
                    throw ContainerError("-p needs pasta or slirp4netns, and neither can run here: \(note.replacingOccurrences(of: "warning: ", with: ""))")
                }
                notice(note)
            }
            mode = m
        }
        if !ports.isEmpty && (mode == .none || mode == .host) {
            throw ContainerError("-p needs a network of the container's own (pasta or slirp4netns); with --network \(mode == .host ? "host" : "none") there is nothing to forward")
        }
        let extraHosts = try o.addHosts.map { try NetworkFiles.parseAddHost($0) }

        // state directory
        let stateDir = containers.path(id)
        for d in [stateDir, "\(stateDir)/upper", "\(stateDir)/work", "\(stateDir)/rootfs"] {
            try valueOrErrno("mkdir", "cannot create \(d)") { mkdir(d, 0o700) }
        }
        chmod("\(stateDir)/upper", 0o755)
        if lowers.isEmpty {
            try valueOrErrno("mkdir", "cannot create the empty layer") { mkdir("\(stateDir)/empty", 0o755) }
            lowers = ["\(stateDir)/empty"]
        }
        if !manifestDigest.isEmpty {
            try Store.writeFile(path: "\(stateDir)/manifest", data: Data(manifestDigest.utf8), sync: false)
        }
        let hostResolv = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        // --network host: the host's /etc/hosts (and --add-host), as docker copies it
        let hostsFile = mode == .host
            ? ((try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? NetworkFiles.hosts(hostname: hostname, extraHosts: [], containerAddress: nil))
                + extraHosts.map { "\($0.1)\t\($0.0)\n" }.joined()
            : NetworkFiles.hosts(hostname: hostname, extraHosts: extraHosts, containerAddress: nil)
        try Store.writeFile(path: "\(stateDir)/hosts", data: Data(hostsFile.utf8), sync: false)
        try Store.writeFile(path: "\(stateDir)/hostname", data: Data((hostname + "\n").utf8), sync: false)
        try Store.writeFile(path: "\(stateDir)/resolv.conf", data: Data(NetworkFiles.resolvConf(mode: mode, attachment: nil, hostResolvConf: hostResolv).utf8), sync: false)
        // root with a user namespace: the layers are root's; the container sees them through
        // idmapped mounts, and its root (a subordinate id) gets a way through root's store
        // (search permission for that id's group only) and owns its upper dir
        let idmapped = mapping == .root && useUserns
        if idmapped {
            guard lowers.count <= Int(CSYS_MAX_PASSED_FDS) else {
                throw ContainerError("--userns: images of more than \(CSYS_MAX_PASSED_FDS) layers need a user namespace of their own (run as a user)")
            }
            guard let hu = nsMapping.hostUID(0), let hg = nsMapping.hostGID(0) else { throw ContainerError("--userns: no mapping for root") }
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

        // volumes and tmpfs
        var mounts: [csys_mount] = []
        let arena = CArena()
        for v in o.volumes {
            let parts = v.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 2, parts.count <= 3 else { throw ContainerError("-v \(v): expected SOURCE:TARGET[:ro|rw]") }
            var source = parts[0]
            let target = parts[1]
            guard target.hasPrefix("/") else { throw ContainerError("-v \(v): the target must be an absolute path") }
            let opts = parts.count == 3 ? parts[2].split(separator: ",").map(String.init) : []
            for opt in opts where !["ro", "rw", "z", "Z", "rbind", "bind", "shared", "slave", "private", "rshared", "rslave", "rprivate"].contains(opt) {
                throw ContainerError("-v \(v): unknown option \(opt)")
            }
            if !source.hasPrefix("/") && !source.hasPrefix(".") {
                // a named volume in the store
                let dir = "\(store.root)/volumes/\(source)/_data"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                source = dir
            } else {
                source = URL(fileURLWithPath: source).standardizedFileURL.path
                if access(source, F_OK) != 0 {
                    // docker creates a missing source directory
                    var made = ""
                    for c in source.split(separator: "/") {
                        made += "/" + c
                        if mkdir(made, 0o755) != 0 && errno != EEXIST {
                            throw ContainerError("-v \(v): cannot create \(made): \(String(cString: strerror(errno)))")
                        }
                    }
                }
            }
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: source, isDirectory: &isDir)
            var m = csys_mount()
            m.kind = Int32(CSYS_MNT_BIND)
            m.source = arena.string(source)
            m.target = arena.string(target)
            m.readonly = opts.contains("ro") ? 1 : 0
            m.recursive = 1
            m.is_file = isDir.boolValue ? 0 : 1
            mounts.append(m)
        }
        for lm in o.layerMounts {
            guard lm.target.hasPrefix("/"), !lm.lowers.isEmpty else { throw ContainerError("a layer mount needs an absolute target and a layer") }
            var m = csys_mount()
            m.target = arena.string(lm.target)
            let userxattr = useUserns ? ",userxattr" : ""
            if let scratch = lm.scratch {
                for d in ["upper", "work"] {
                    try FileManager.default.createDirectory(atPath: "\(scratch)/\(d)", withIntermediateDirectories: true)
                }
                m.kind = Int32(CSYS_MNT_OVERLAY)
                m.data = arena.string("lowerdir=\(lm.lowers.joined(separator: ":")),upperdir=\(scratch)/upper,workdir=\(scratch)/work\(userxattr)")
            } else if lm.lowers.count == 1 {
                // overlay wants two lower dirs when there is no upper one
                m.kind = Int32(CSYS_MNT_BIND)
                m.source = arena.string(lm.lowers[0])
                m.readonly = 1
                m.recursive = 1
            } else {
                m.kind = Int32(CSYS_MNT_OVERLAY)
                m.data = arena.string("lowerdir=\(lm.lowers.joined(separator: ":"))\(userxattr)")
                m.readonly = 1
            }
            mounts.append(m)
        }
        for t in o.tmpfs {
            let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts[0].hasPrefix("/") else { throw ContainerError("--tmpfs \(t): the target must be an absolute path") }
            var m = csys_mount()
            m.kind = Int32(CSYS_MNT_TMPFS)
            m.target = arena.string(parts[0])
            m.data = arena.string(parts.count > 1 ? parts[1] : "mode=1777")
            m.flags = UInt(MS_NOSUID | MS_NODEV)
            mounts.append(m)
        }

        var plan = csys_container_plan()
        plan.userns = useUserns ? 1 : 0
        plan.netns = mode == .host ? 0 : 1
        plan.cgroupns = 1
        plan.setgroups = (useUserns && nsMapping.isSingleMapping) ? 0 : 1
        plan.rootfs = arena.string("\(stateDir)/rootfs")
        plan.lowers = UnsafePointer(arena.strings(lowers))
        plan.nlowers = Int32(lowers.count)
        let upperDir = o.buildRoot?.upper ?? "\(stateDir)/upper", workDir = o.buildRoot?.work ?? "\(stateDir)/work"
        plan.upper = arena.string(upperDir)
        plan.work = arena.string(workDir)
        plan.userxattr = useUserns ? 1 : 0
        plan.idmapped_lowers = idmapped ? 1 : 0
        plan.fuse = fuse.mode.rawValue
        if let missing = fuse.missing { plan.fuse_missing = arena.string(missing) }
        let fuseArguments = fuse.program.map { FuseOverlay.arguments(program: $0, lowers: lowers, upper: upperDir, work: workDir) }
        plan.overlay_data = arena.string("lowerdir=\(lowers.joined(separator: ":")),upperdir=\(upperDir),workdir=\(workDir)\(useUserns ? ",userxattr" : "")")
        plan.readonly_rootfs = o.readOnly ? 1 : 0
        plan.mknod = useUserns ? 0 : 1
        plan.own_sysfs = mode == .host ? 0 : 1
        plan.devpts_gid5 = (!useUserns || nsMapping.hostGID(5) != nil) ? 1 : 0
        plan.etc_hosts = arena.string("\(stateDir)/hosts")
        plan.etc_hostname = arena.string("\(stateDir)/hostname")
        plan.etc_resolv = arena.string("\(stateDir)/resolv.conf")
        plan.mounts = arena.array(mounts)
        plan.nmounts = Int32(mounts.count)
        let masked = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                      "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
                      "/sys/fs/selinux", "/sys/dev/block"]
        let readonly = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        plan.masked = UnsafePointer(arena.strings(masked))
        plan.nmasked = Int32(masked.count)
        plan.readonly_paths = UnsafePointer(arena.strings(readonly))
        plan.nreadonly = Int32(readonly.count)
        plan.hostname = arena.string(hostname)
        plan.cwd = arena.string(o.workdir ?? cfg.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/")
        plan.argv = UnsafePointer(arena.strings(argv))
        plan.envp = UnsafePointer(arena.strings(env))
        plan.path_env = arena.string(pathEnv)
        plan.uid = user.uid
        plan.gid = user.gid
        plan.groups = arena.array(groups.map { gid_t($0) })
        plan.ngroups = Int32(groups.count)
        plan.caps = Capabilities.mask(caps)
        plan.cap_last = Int32(Capabilities.lastCap)
        plan.no_new_privs = noNewPrivs ? 1 : 0
        plan.seccomp = arena.bytes(bpf)
        plan.seccomp_len = bpf.count
        let rl = try o.ulimits.map(Self.rlimit)
        plan.rlimits = arena.array(rl)
        plan.nrlimits = Int32(rl.count)
        plan.tty = o.tty ? 1 : 0
        plan.stdio = (-1, -1, -1)
        plan.`init` = o.initProcess ? 1 : 0
        plan.sync_fd = -1
        plan.stub_fd = -1
        plan.fuse_dev_fd = -1

        // as root without a user namespace, a devices cgroup too (where cgroup v1 has one)
        let cgroupHandle = try CgroupHandle.create(name: String(id.prefix(12)), limits: o.limits, devices: !useUserns)
        let cgroup: CgroupHandle? = cgroupHandle.isActive ? cgroupHandle : nil
        if let cgroup {
            try Store.writeFile(path: "\(stateDir)/cgroup.json", data: try JSONEncoder().encode(cgroup.paths), sync: false)
        }

        var record = ContainerRecord(
            id: id, name: name, image: o.image, imageID: imageID, manifest: manifestDigest,
            command: argv, created: ImageImport.rfc3339(Date(), fractional: true), detached: o.detach, tty: o.tty,
            autoRemove: o.autoRemove, ports: o.ports, network: "\(mode)", stopSignal: cfg.stopSignal,
            pid: nil, pidStart: nil, monitorPid: nil, exitCode: nil, finished: nil, rootless: useUserns)
        record.env = recordedEnv
        record.workdir = o.workdir ?? cfg.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        record.user = o.user ?? cfg.user ?? ""
        try containers.save(record)
        return Prepared(record: record, plan: plan, arena: arena, network: mode, ports: ports, cgroup: cgroup,
                        useUserns: useUserns, nsMapping: nsMapping, stateDir: stateDir,
                        extraHosts: extraHosts, hostResolv: hostResolv, fuseArguments: fuseArguments)
    }

    // MARK: starting

    /// After clone: maps, cgroup, network; then let the child run to exec.
    func start(_ p: inout Prepared, pid: pid_t, parentFD: Int32) throws -> NetworkAttachment? {
        // the container's user namespace, for fuse-overlayfs to join and for idmapped layers:
        // opened while the child is still dumpable (it stops being so once released)
        var userNS: Int32 = -1
        if p.useUserns && (p.fuseArguments != nil || p.plan.idmapped_lowers != 0) {
            userNS = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
            if userNS < 0 { throw SysError.errno("open", "cannot open the container's user namespace") }
        }
        defer { if userNS >= 0 { close(userNS) } }
        if p.useUserns { try UserNamespace.writeMaps(pid: pid, mapping: p.nsMapping) }
        var passFDs: [Int32] = []
        defer { passFDs.forEach { close($0) } }
        if p.plan.idmapped_lowers != 0 {
            for i in 0..<Int(p.plan.nlowers) {
                var e = csys_error()
                let t = csys_idmapped_tree(p.plan.lowers[i], userNS, &e)
                if t < 0 { throw SysError(e) }
                passFDs.append(t)
            }
        }
        try p.cgroup?.add(pid: pid)
        let net = try NetworkAttachment.attach(mode: p.network, pid: pid, ports: p.ports, rootless: p.useUserns)
        if let net {
            // the resolver the helper provides
            try? Store.writeFile(path: "\(p.stateDir)/resolv.conf", data: Data(NetworkFiles.resolvConf(mode: p.network, attachment: net, hostResolvConf: p.hostResolv).utf8), sync: false)
            try? Store.writeFile(path: "\(p.stateDir)/hosts", data: Data(NetworkFiles.hosts(hostname: String(cString: p.plan.hostname), extraHosts: p.extraHosts, containerAddress: net.containerAddress).utf8), sync: false)
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
            let e = SysError(err)
            if let d = p.fuseDaemon {
                Glibc.kill(pid, SIGKILL)
                Glibc.kill(d, SIGKILL)
                var status: Int32 = 0
                _ = waitpid(d, &status, 0)
                let said = FuseOverlay.lastWords(log: "\(p.stateDir)/fuse-overlayfs.log")
                let what = e.stage == "timeout" ? "fuse-overlayfs did not answer within \(FuseOverlay.answerTimeout) s" : e.message
                throw ContainerError(what + (said.map { " (fuse-overlayfs said: \($0))" } ?? ""))
            }
            let code: Int32 = e.stage == "exec" ? (e.errno == EACCES ? 126 : 127) : 125
            throw ContainerError(e.message, exitCode: code)
        }
        return net
    }

    /// Remove a container's state (its upper dir may hold files of subordinate ids).
    public func remove(_ r: ContainerRecord) throws {
        let dir = containers.path(r.id)
        _ = try? store.ops.removeTree(dir)
        if access(dir, F_OK) == 0 {
            // the mount point may still be busy in a dying namespace; try once more
            usleep(50_000)
            _ = try store.ops.removeTree(dir)
        }
    }

    /// `ctr run`: foreground (returns the exit code) or detached (returns 0 after printing the id).
    /// The image's layers are unpacked and the container's record (which keeps them from
    /// prune) written under the store's gc lock; `hold`, the caller's hold from before it
    /// resolved the image, is released then, not held for the container's life.
    public func run(_ o: RunOptions, image: ImageRecord?, hold: Store.WriteHold? = nil) throws -> (code: Int32, record: ContainerRecord) {
        Trace.point("image resolved")
        defer { hold?.release() }
        if o.tty && o.interactive && !o.detach && isatty(0) == 0 {
            // docker's answer: a terminal relay would wait on it for ever
            throw ContainerError("the input device is not a TTY: use -i without -t to pipe input")
        }
        var p = try store.writing { try prepare(o, image: image) }
        hold?.release()
        Trace.point("prepared")
        var sv: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw SysError.errno("socketpair", "cannot make the sync socket")
        }
        p.plan.sync_fd = sv[1]
        if o.detach { return try runDetached(&p, sv: sv, o) }

        var master: Int32 = -1, slave: Int32 = -1
        var null: Int32 = -1
        var relay: StdioRelay?
        if o.tty {
            var err = csys_error()
            if csys_openpty(&master, &slave, isatty(0) != 0 ? 0 : -1, &err) != 0 { throw SysError(err) }
            p.plan.stdio = (slave, slave, slave)
        } else {
            if !o.interactive {
                null = open("/dev/null", O_RDONLY | O_CLOEXEC)
                p.plan.stdio = (null, o.stdoutFD ?? -1, o.stderrFD ?? -1)
            }
            // a file of the host given as stdio goes through a pipe ctr copies
            relay = try StdioRelay(p.plan.stdio)
            p.plan.stdio = relay!.child
        }
        p.plan.pdeathsig = SIGKILL
        var err = csys_error()
        let stub = try ExecStub.open()
        p.plan.stub_fd = stub
        p.plan.fuse_dev_fd = Self.fuseDevice(for: p)
        let pid = csys_container_clone(&p.plan, &err)
        close(stub)
        if p.plan.fuse_dev_fd >= 0 { close(p.plan.fuse_dev_fd) }
        close(sv[1])
        if slave >= 0 { close(slave) }
        if null >= 0 { close(null) }
        if pid < 0 {
            relay?.finish()
            close(sv[0])
            try? remove(p.record)
            throw ContainerError(SysError(err).message)
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
            Trace.point("cloned")
            net = try start(&p, pid: pid, parentFD: sv[0])
            Trace.point("released (maps written)")
            if p.fuseDaemon != nil { record.rootFS = "fuse-overlayfs" }
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
        try? containers.save(record)
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
            try? remove(record)
            Trace.point("removed")
        } else {
            record.exitCode = code
            record.finished = ImageImport.rfc3339(Date(), fractional: true)
            try? containers.save(record)
        }
        return (code, record)
    }

    /// Root without a user namespace whose root may be served by fuse-overlayfs: /dev/fuse
    /// opened here, since the devices cgroup the child is in by then refuses it (in a user
    /// namespace the child must open it itself, and there is no devices cgroup).
    static func fuseDevice(for p: Prepared) -> Int32 {
        guard !p.useUserns, p.plan.fuse != 0, p.cgroup != nil else { return -1 }
        return open("/dev/fuse", O_RDWR | O_CLOEXEC)
    }

    func runDetached(_ p: inout Prepared, sv: [Int32], _ o: RunOptions) throws -> (code: Int32, record: ContainerRecord) {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        var master: Int32 = -1, slave: Int32 = -1
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        if o.tty {
            var err = csys_error()
            if csys_openpty(&master, &slave, -1, &err) != 0 { throw SysError(err) }
            p.plan.stdio = (slave, slave, slave)
        } else {
            guard csys_pipe_cloexec(&outPipe) == 0, csys_pipe_cloexec(&errPipe) == 0 else {
                throw SysError.errno("pipe", "cannot make the output pipes")
            }
            p.plan.stdio = (null, outPipe[1], errPipe[1])
        }
        p.plan.pdeathsig = 0
        var report: [Int32] = [-1, -1]
        guard csys_pipe_cloexec(&report) == 0 else { throw SysError.errno("pipe", "cannot make a pipe") }
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
        p.plan.stub_fd = stub
        p.plan.fuse_dev_fd = Self.fuseDevice(for: p)
        let monitor = csys_monitor_start(&p.plan, &m, &err)
        close(stub)
        if p.plan.fuse_dev_fd >= 0 { close(p.plan.fuse_dev_fd) }
        close(report[1])
        close(sv[1])
        for fd in [outPipe[0], outPipe[1], errPipe[0], errPipe[1], master, slave] where fd >= 0 { close(fd) }
        if monitor < 0 {
            close(report[0]); close(sv[0])
            try? remove(p.record)
            throw SysError(err)
        }
        var pid: Int32 = -1
        let n = read(report[0], &pid, 4)
        if n != 4 || pid < 0 {
            var cerr = csys_error()
            _ = read(report[0], &cerr, MemoryLayout<csys_error>.size)
            close(report[0]); close(sv[0])
            _ = csys_wait_status(monitor)
            try? remove(p.record)
            throw ContainerError(SysError(cerr, fallback: "the monitor could not start the container").message)
        }
        close(report[0])
        var record = p.record
        record.pid = pid
        record.pidStart = csys_proc_starttime(pid)
        record.monitorPid = monitor
        do {
            let net = try start(&p, pid: pid, parentFD: sv[0])
            if let net { try? net.detachRecord(into: "\(p.stateDir)/network.json") }
            if p.fuseDaemon != nil { record.rootFS = "fuse-overlayfs" }
        } catch {
            Glibc.kill(pid, SIGKILL)
            close(sv[0])
            _ = csys_wait_status(monitor)
            try? p.cgroup?.remove()
            try? remove(record)
            throw error
        }
        close(sv[0])
        try containers.save(record)
        return (0, record)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

extension IDMapping {
    var isSingleMapping: Bool { if case .single = self { return true } else { return false } }
}
