import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// What the host offers, as far as a run needs to know: probed once by `HostFacts.probe(for:)`
/// (only what the request needs: start-up is measured), constructed by hand in tests.
public struct HostFacts: Sendable, Equatable {
    /// How this user's ids map (root, subordinate ranges, or only its own id).
    public var mapping: IDMapping
    /// root's subordinate ranges (`/etc/subuid` and `/etc/subgid`, or podman's `containers`
    /// user's), for `--userns auto` as root. Nil: none (or not asked).
    public var rootRange: RootRange?
    public struct RootRange: Sendable, Equatable {
        public var uid: IDRange
        public var gid: IDRange
        public init(uid: IDRange, gid: IDRange) { self.uid = uid; self.gid = gid }
    }
    /// pasta and slirp4netns: usable or why not (asked only for a private network).
    public var network: [NetworkAvailability] = []
    /// fuse-overlayfs as the root's fallback.
    public var fuse: FuseOverlay
    /// The host's name, /etc/hosts and /etc/resolv.conf (hosts only for `--network host`).
    public var hostname: String = ""
    public var hostsFile: String?
    public var resolvConf: String = ""
    /// The caller's environment (for `-e NAME`).
    public var environment: [String: String] = [:]
    /// NAME=VALUE lines of each `--env-file`, read.
    public var envFiles: [String: [String]] = [:]
    /// Containers of an unprivileged user with subordinate ids may join the user's shared user
    /// namespace (`UsernsKeeper`) instead of each mapping its own (`CTR_SHARED_USERNS=0`: never).
    public var sharedUserNamespace = false
    /// How a command can be sandboxed here; nil: the full sandbox (userns), a host's default.
    public var isolation: IsolationDecision?
    /// The ids this process's own user namespace has, as its ranges: what root maps to the same
    /// ids in a user namespace of its own (nested isolation as root without CAP_SYS_ADMIN). One
    /// range per range of ours: the kernel takes no range that spans two of the parent's.
    public var ownIDs = OwnIDs(uid: [IDRange(containerID: 0, hostID: 0, count: 65536)], gid: [IDRange(containerID: 0, hostID: 0, count: 65536)])
    public struct OwnIDs: Sendable, Equatable {
        public var uid: [IDRange], gid: [IDRange]
        public init(uid: [IDRange], gid: [IDRange]) { self.uid = uid; self.gid = gid }
    }
    /// Names of the containers there are (asked only when the request names one).
    public var containerNames: Set<String> = []
    public var platform: Platform = .current

    public init(mapping: IDMapping, fuse: FuseOverlay) {
        self.mapping = mapping
        self.fuse = fuse
    }
}

/// The image side of a run: its config and unpacked layers, and a way to read its files
/// (/etc/passwd, /etc/group) when the user must be looked up.
public struct ImageFacts: Sendable {
    public var config: ContainerConfig
    /// Unpacked layer dirs, topmost first.
    public var lowers: [String]
    public var imageID = ""
    public var manifestDigest = ""
    public var platform: Platform?
    /// The image's layer blobs, bottom first (to make a tree of them where no overlay can be).
    public var layerBlobs: [String] = []
    /// A file of the image by its absolute path, nil when it has none.
    public var read: @Sendable (String) -> String?

    public init(config: ContainerConfig, lowers: [String], read: @escaping @Sendable (String) -> String?) {
        self.config = config
        self.lowers = lowers
        self.read = read
    }
}

/// Everything decided about one container, before anything is made: the planner's output and
/// the executor's input.
public struct ContainerPlan: Sendable {
    public var id: String
    public var name: String
    public var hostname: String
    public var stateDir: String

    // ids
    public var useUserns: Bool
    public var nsMapping: IDMapping
    /// root with a user namespace: root's layers are seen through idmapped mounts
    public var idmappedLowers: Bool
    /// Join the user's shared user namespace (already mapped) instead of making one.
    public var sharedUserNamespace: Bool
    /// How it is sandboxed (see IsolationDecision) and what it lacks for it.
    public var isolation: IsolationLevel
    public var bindProc: Bool
    public var keepHostname: Bool
    /// The chroot and container levels: the tree the process is chrooted into.
    public var chrootDir: String?
    /// The root is this real tree, not an overlay (see IsolationDecision.treeRoot); with
    /// `materializeTree` the runtime makes it from the image's layers first.
    public var rootTree: String?
    public var materializeTree: Bool
    public var layerBlobs: [String]
    public var lacks: [String]
    public var user: ResolvedUser
    public var groups: [UInt32]
    public var setgroups: Bool

    // process
    public var argv: [String]
    public var env: [String]
    /// The environment `exec` starts its processes with (without this terminal's TERM and HOME).
    public var recordedEnv: [String]
    public var pathEnv: String
    public var cwd: String
    public var tty: Bool
    public var initProcess: Bool
    public var rlimits: [RLimit]

    // root and mounts
    public var lowers: [String]
    /// nil: the state dir's upper/work (a build step brings its own)
    public var upper: String?
    public var work: String?
    /// The image has no layer: an empty dir stands in.
    public var emptyLower: Bool
    public var readOnly: Bool
    public var mounts: [PlannedMount]
    public var mknod: Bool
    public var ownSysfs: Bool
    public var devptsGid5: Bool
    public var maskedPaths: [String]
    public var readonlyPaths: [String]
    public var fuse: FuseOverlay

    // network
    public var network: NetworkMode
    public var ports: [PortMapping]
    public var extraHosts: [HostEntry]
    /// /etc/hosts, /etc/hostname, /etc/resolv.conf as written before the start (the network
    /// helper may rewrite hosts and resolv.conf once it has an address)
    public var hostsFile: String
    public var resolvConf: String
    /// The host's /etc/resolv.conf (what a network helper's resolver is added to).
    public var hostResolvConf: String

    // confinement
    public var capabilities: Set<String>
    public var noNewPrivileges: Bool
    public var seccomp: SecurityOptions.Seccomp
    public var limits: ResourceLimits
    /// root without a user namespace: a devices cgroup where there is one
    public var restrictDevices: Bool

    /// Notes for stderr (said before the start).
    public var notices: [String]
    public var record: ContainerRecord
}

/// A mount as the C child takes it.
public struct PlannedMount: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// source: a host path; `makeSource`: create it (a directory) when missing, as docker does
        case bind(source: String, isFile: Bool?, makeSource: Bool)
        case tmpfs(options: String)
        /// overlay data ("lowerdir=…[,upperdir=…,workdir=…][,userxattr]")
        case overlay(data: String, scratch: String?)
    }
    public var kind: Kind
    public var target: String
    public var readOnly: Bool
}

/// The pure half of the run path: from a request, the image and the host's facts to a plan.
/// No I/O (the image's files come through `ImageFacts.read`), so tables of
/// (spec, facts) → plan test it without a kernel.
public enum Planner {
    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    static let maskedPaths = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                              "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
                              "/sys/fs/selinux", "/sys/dev/block"]
    static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    /// Docker's rule: entrypoint + (args, or the image's cmd); --entrypoint drops the image's cmd.
    public static func argv(imageEntrypoint: [String]?, imageCmd: [String]?, entrypoint: String?, args: [String]) -> [String] {
        if let e = entrypoint {
            return (e.isEmpty ? [] : [e]) + args
        }
        return (imageEntrypoint ?? []) + (args.isEmpty ? (imageCmd ?? []) : args)
    }

    /// Merge NAME=VALUE lists, later ones winning, each name where it first came.
    public static func mergeEnv(_ lists: [[String]]) -> [String] {
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

    /// NAME=VALUE lines of an env file (comments and blank lines skipped; NAME alone copies
    /// the caller's value).
    public static func parseEnvFile(_ text: String, environment: [String: String]) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: true).compactMap { raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { return nil }
            if line.contains("=") { return line }
            return environment[line].map { "\(line)=\($0)" }
        }
    }

    public static func plan(_ spec: RunSpec, image: ImageFacts, facts: HostFacts, id: String, stateDir: String, storeRoot: String) throws -> ContainerPlan {
        var notices: [String] = []
        let cfg = image.config
        if let p = image.platform, !p.matches(facts.platform) {
            // as docker and podman warn; the kernel may still run it (binfmt_misc)
            notices.append("the image's platform (\(p)) does not match this host's (\(facts.platform))")
        }
        let argv = Self.argv(imageEntrypoint: cfg.entrypoint, imageCmd: cfg.cmd, entrypoint: spec.entrypoint, args: spec.command)
        guard !argv.isEmpty else { throw CtrError.usage("no command: the image has none, give one after the image name") }

        // ids: a user namespace for rootless users (and for root on request)
        var useUserns: Bool
        var nsMapping = facts.mapping
        switch facts.mapping {
        case .root:
            useUserns = false
            if spec.userns == .auto {
                useUserns = true
                guard let r = facts.rootRange else {
                    throw CtrError.unsupported("--userns auto: root has no subordinate id range in /etc/subuid and /etc/subgid (add one, e.g. root:1000000:65536, as podman's --userns=auto wants for its containers user)")
                }
                nsMapping = .mapped(uid: [IDRange(containerID: 0, hostID: r.uid.hostID, count: r.uid.count)],
                                    gid: [IDRange(containerID: 0, hostID: r.gid.hostID, count: r.gid.count)])
            }
        case .mapped, .single:
            useUserns = true
        }
        // the isolation the environment allows (nil: the full sandbox, a host's default)
        let iso = spec.isolation ?? facts.isolation
        let level = iso?.level ?? .userns
        var chrootDir: String?
        if level == .chroot || level == .container {
            guard case .tree(let dir, _) = spec.source else {
                throw CtrError.unsupported("the \(level) isolation level runs build steps only; ctr run needs a user namespace (\(iso?.refused.joined(separator: "; ") ?? ""))")
            }
            if !spec.mounts.isEmpty {
                throw CtrError.unsupported("RUN --mount needs a mount namespace, which the \(level) isolation level has not (\(iso?.refused.joined(separator: "; ") ?? ""))")
            }
            chrootDir = dir
            useUserns = false
            nsMapping = .root
        } else if let iso, iso.identityUserns, facts.mapping == .root {
            // root without CAP_SYS_ADMIN (a CI container): a user namespace of its own, where
            // container ids are the same ids of ours
            useUserns = true
            nsMapping = .mapped(uid: facts.ownIDs.uid, gid: facts.ownIDs.gid)
        }
        let single = facts.mapping.isSingleMapping
        if single {
            notices.append("no subordinate ids for this user in /etc/subuid and /etc/subgid: the container has a single id (your own, as root) and cannot switch users or groups")
        }
        let userSpec = spec.user ?? cfg.user ?? ""
        let user: ResolvedUser
        user = try UserDB.resolve(userSpec, read: image.read)
        if useUserns && (nsMapping.hostUID(user.uid) == nil || nsMapping.hostGID(user.gid) == nil) {
            throw CtrError.unsupported("user \(userSpec) (\(user.uid):\(user.gid)) is not mapped in this user namespace (\(nsMapping.isSingleMapping ? "no subordinate ids" : "the subordinate id range is too small"))")
        }
        let groups = useUserns && nsMapping.isSingleMapping ? [] : user.groups.filter { !useUserns || nsMapping.hostGID($0) != nil }

        let name = spec.name ?? String(id.prefix(12))
        if spec.name != nil, facts.containerNames.contains(name) {  // a generated name is unique
            throw CtrError.conflict("the container name \"\(name)\" is already in use; remove it (ctr rm \(name)) or choose another name")
        }
        // --network host: the host's name, as docker and podman give it
        var network = try resolveNetwork(spec, facts: facts, notices: &notices)
        if let iso, !iso.networkNamespace, network != .host {
            // no network namespace can be made here: the host's (a build step's default)
            if spec.network != .default && spec.network != .mode(.host) {
                throw CtrError.unsupported("--network \(network): a network namespace cannot be made here (\(iso.level) isolation); use --network host")
            }
            network = .host
        }
        let keepHostname = iso?.keepHostname ?? false
        let hostname = keepHostname || network == .host ? (spec.hostname.map { keepHostname ? facts.hostname : $0 } ?? facts.hostname)
            : (spec.hostname ?? String(id.prefix(12)))

        // environment: the image's, then --env-file, then -e
        var fileEnv: [String] = []
        for f in spec.envFiles {
            guard let lines = facts.envFiles[f] else { throw CtrError.notFound("--env-file \(f): cannot read it") }
            fileEnv += lines
        }
        let flagEnv = spec.env.compactMap { e -> String? in
            switch e {
            case .set(let s): return s
            case .inherit(let n): return facts.environment[n].map { "\(n)=\($0)" }
            }
        }
        var env = mergeEnv([[defaultPath], cfg.env ?? [], ["HOSTNAME=\(hostname)"], fileEnv, flagEnv])
        let recordedEnv = env  // for exec: without the HOME and TERM of this user and terminal
        if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=\(user.home)") }
        if spec.tty && !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let pathEnv = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? ""

        // root
        // root's layers seen through idmapped mounts in a user namespace mapped elsewhere (not
        // when it maps ids to the same ids)
        let idmapped = facts.mapping == .root && useUserns && !(iso?.identityUserns ?? false)
        if idmapped && image.lowers.count > Int(CSYS_MAX_PASSED_FDS) {
            throw CtrError.unsupported("--userns: images of more than \(CSYS_MAX_PASSED_FDS) layers need a user namespace of their own (run as a user)")
        }
        var lowers = image.lowers
        var upper: String?, work: String?
        if case .buildRoot(let br) = spec.source {
            lowers = br.lowers
            upper = br.upper
            work = br.work
        }
        var rootTree: String?
        var materializeTree = false
        if case .tree(let dir, _) = spec.source {
            rootTree = dir
        } else if iso?.treeRoot == true {
            if case .buildRoot = spec.source {
                throw CtrError.unsupported("overlayfs cannot take its upper dir where the store is (\(storeRoot)): a build step needs a tree root here")
            }
            rootTree = "\(stateDir)/tree"
            materializeTree = true
        }
        if rootTree != nil { lowers = [] }
        let emptyLower = lowers.isEmpty
        if emptyLower { lowers = ["\(stateDir)/empty"] }

        // mounts, in order: volumes and tmpfs as given
        let userxattr = useUserns ? ",userxattr" : ""
        var mounts: [PlannedMount] = []
        for m in spec.mounts {
            switch m {
            case .bind(let source, let target, let ro):
                mounts.append(PlannedMount(kind: .bind(source: source, isFile: nil, makeSource: true), target: target, readOnly: ro))
            case .volume(let name, let target, let ro):
                mounts.append(PlannedMount(kind: .bind(source: "\(storeRoot)/volumes/\(name)/_data", isFile: false, makeSource: true),
                                           target: target, readOnly: ro))
            case .tmpfs(let target, let options):
                mounts.append(PlannedMount(kind: .tmpfs(options: options), target: target, readOnly: false))
            case .layers(let dirs, let target, let scratch):
                guard target.hasPrefix("/"), !dirs.isEmpty else { throw CtrError.internal("a layer mount needs an absolute target and a layer") }
                if let scratch {
                    mounts.append(PlannedMount(kind: .overlay(data: "lowerdir=\(dirs.joined(separator: ":")),upperdir=\(scratch)/upper,workdir=\(scratch)/work\(userxattr)", scratch: scratch),
                                               target: target, readOnly: false))
                } else if dirs.count == 1 {
                    // overlay wants two lower dirs when there is no upper one
                    mounts.append(PlannedMount(kind: .bind(source: dirs[0], isFile: false, makeSource: false), target: target, readOnly: true))
                } else {
                    mounts.append(PlannedMount(kind: .overlay(data: "lowerdir=\(dirs.joined(separator: ":"))\(userxattr)", scratch: nil),
                                               target: target, readOnly: true))
                }
            }
        }

        // confinement
        var caps = try spec.security.capabilities()
        // a chrooted root with CAP_SYS_CHROOT leaves its chroot at will (chroot a subdir, then
        // walk up): the chroot level's steps do not get it
        if level == .chroot { caps.remove("CAP_SYS_CHROOT") }
        if !spec.ports.isEmpty && (network == .none || network == .host) {
            throw CtrError.usage("-p needs a network of the container's own (pasta or slirp4netns); with --network \(network == .host ? "host" : "none") there is nothing to forward")
        }

        // /etc files
        let hostsFile = network == .host
            ? (facts.hostsFile ?? NetworkFiles.hosts(hostname: hostname, extraHosts: [], containerAddress: nil))
                + spec.extraHosts.map { "\($0.address)\t\($0.name)\n" }.joined()
            : NetworkFiles.hosts(hostname: hostname, extraHosts: spec.extraHosts.map { ($0.name, $0.address) }, containerAddress: nil)
        let resolv = NetworkFiles.resolvConf(mode: network, attachment: nil, hostResolvConf: facts.resolvConf)

        let cwd = spec.workdir ?? cfg.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        var record = ContainerRecord(
            id: id, name: name, image: spec.imageName, imageID: image.imageID, manifest: image.manifestDigest,
            command: argv, created: "", detached: spec.detach, tty: spec.tty,
            autoRemove: spec.autoRemove, ports: spec.ports.map(\.description), network: "\(network)", stopSignal: cfg.stopSignal,
            pid: nil, pidStart: nil, monitorPid: nil, exitCode: nil, finished: nil, rootless: useUserns)
        record.env = recordedEnv
        record.workdir = cwd
        record.user = spec.user ?? cfg.user ?? ""

        return ContainerPlan(
            id: id, name: name, hostname: hostname, stateDir: stateDir,
            useUserns: useUserns, nsMapping: nsMapping, idmappedLowers: idmapped,
            sharedUserNamespace: useUserns && !idmapped && facts.sharedUserNamespace && { if case .mapped = facts.mapping { return true } else { return false } }(),
            isolation: level, bindProc: iso?.bindProc ?? false, keepHostname: keepHostname, chrootDir: chrootDir,
            rootTree: rootTree, materializeTree: materializeTree, layerBlobs: image.layerBlobs,
            lacks: iso?.lacks ?? [],
            user: user, groups: groups,
            setgroups: !(useUserns && nsMapping.isSingleMapping),
            argv: argv, env: env, recordedEnv: recordedEnv, pathEnv: pathEnv, cwd: cwd, tty: spec.tty,
            initProcess: spec.initProcess, rlimits: spec.rlimits,
            lowers: lowers, upper: upper, work: work, emptyLower: emptyLower, readOnly: spec.readOnly, mounts: mounts,
            mknod: !useUserns && (iso?.mknod ?? true), ownSysfs: network != .host && !(iso?.bindSys ?? false), devptsGid5: !useUserns || nsMapping.hostGID(5) != nil,
            maskedPaths: maskedPaths, readonlyPaths: readonlyPaths, fuse: facts.fuse,
            network: network, ports: spec.ports, extraHosts: spec.extraHosts, hostsFile: hostsFile, resolvConf: resolv,
            hostResolvConf: facts.resolvConf,
            capabilities: caps, noNewPrivileges: spec.security.noNewPrivileges, seccomp: spec.security.seccomp,
            limits: spec.limits, restrictDevices: !useUserns,
            notices: notices, record: record)
    }

    static func resolveNetwork(_ spec: RunSpec, facts: HostFacts, notices: inout [String]) throws -> NetworkMode {
        switch spec.network {
        case .mode(.none): return .none
        case .mode(.host): return .host
        case .mode(let m): return try NetworkMode.resolve(m.description, availability: facts.network)
        case .privateNetwork(let asked): return try NetworkMode.resolve(asked, availability: facts.network)
        case .default:
            let (m, note) = NetworkMode.resolveDefault(availability: facts.network)
            if let note {
                if !spec.ports.isEmpty && m == .none {
                    throw CtrError.unsupported("-p needs pasta or slirp4netns, and neither can run here: \(note.replacingOccurrences(of: "warning: ", with: ""))")
                }
                notices.append(note)
            }
            return m
        }
    }
}

extension HostFacts {
    /// What `spec` needs to know of this host, looked at now.
    public static func probe(for spec: RunSpec, mapping: IDMapping, containers: ContainerStore?, storeRoot: String? = nil) throws -> HostFacts {
        var f = HostFacts(mapping: mapping, fuse: try FuseOverlay.current())
        // root without CAP_SYS_ADMIN (a CI container): the isolation ladder decides
        if spec.isolation == nil && SandboxFacts.rootWithoutSysAdmin {
            f.isolation = try IsolationDecision.decide(SandboxFacts.shared(storeDir: storeRoot), purpose: .run)
        }
        if (spec.isolation ?? f.isolation)?.identityUserns == true { f.ownIDs = SandboxFacts.ownIDs() }
        f.sharedUserNamespace = getuid() != 0 && getenv("CTR_SHARED_USERNS").map { String(cString: $0) } != "0"
        if mapping == .root && spec.userns == .auto {
            func range(_ file: String) -> (UInt32, UInt32)? {
                IDMapping.subordinateRanges(file: file, name: "root", id: 0).first
                    ?? getpwnam("containers").flatMap { IDMapping.subordinateRanges(file: file, name: "containers", id: $0.pointee.pw_uid).first }
            }
            if let (us, uc) = range("/etc/subuid"), let (gs, gc) = range("/etc/subgid") {
                f.rootRange = RootRange(uid: IDRange(containerID: 0, hostID: us, count: uc), gid: IDRange(containerID: 0, hostID: gs, count: gc))
            }
        }
        switch spec.network {
        case .mode(.none), .mode(.host): break
        default: f.network = NetworkMode.availability()
        }
        if spec.network == .mode(.host) {
            f.hostname = Runtime.hostName()
            f.hostsFile = try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)
        }
        f.resolvConf = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        let environment = ProcessInfo.processInfo.environment
        if spec.env.contains(where: { if case .inherit = $0 { return true } else { return false } }) || !spec.envFiles.isEmpty {
            f.environment = environment
        }
        for file in spec.envFiles {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }  // the planner names it
            f.envFiles[file] = Planner.parseEnvFile(text, environment: environment)
        }
        if spec.name != nil, let containers { f.containerNames = Set(containers.all().map(\.name)) }
        return f
    }
}
