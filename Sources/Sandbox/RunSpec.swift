import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// What a caller wants run, typed: the request of the run path
/// (RunSpec → Planner.plan → ContainerPlan → Runtime executes it).
///
/// The CLI makes one from its flags (`RunFlags.spec()`, shared by `ctr run`'s two parsers); the
/// Builder makes one directly for each RUN step. Nothing here touches the host: the values are
/// checked for syntax only, and the planner decides the rest against `HostFacts`.
public struct RunSpec: Sendable, Equatable {
    /// Where the root comes from.
    public enum Source: Sendable, Equatable {
        /// An image of the store, by the name the user gave.
        case image(String)
        /// A build step: unpacked layers with an upper dir, and the config standing in for the image's.
        case buildRoot(BuildRoot)
        /// A build step at the chroot or container isolation level: a real directory tree
        /// (the step's changes are found by comparing snapshots of it), and the config.
        case tree(dir: String, config: ContainerConfig)
    }

    public var source: Source
    /// The command (with the entrypoint: Docker's rule, see `Planner.argv`).
    public var command: [String] = []
    /// nil: the image's entrypoint; "": none.
    public var entrypoint: String?
    public var name: String?
    public var detach = false
    public var autoRemove = false
    public var tty = false
    public var interactive = false
    /// In order, after the image's environment and the env files.
    public var env: [EnvSetting] = []
    /// Files of NAME=VALUE lines, read when the plan's inputs are gathered.
    public var envFiles: [String] = []
    public var workdir: String?
    /// "user", "uid", "user:group", "uid:gid"; nil: the image's.
    public var user: String?
    public var mounts: [Mount] = []
    public var readOnly = false
    public var network: NetworkRequest = .default
    public var ports: [PortMapping] = []
    public var hostname: String?
    public var extraHosts: [HostEntry] = []
    public var initProcess = false
    public var security = SecurityOptions()
    public var limits = ResourceLimits()
    public var rlimits: [RLimit] = []
    public var userns: UsernsRequest = .default
    /// The isolation decided for this environment (the Builder decides once per build); nil:
    /// `ctr run`'s own (the host default, or what the probes say where that is refused).
    public var isolation: IsolationDecision?
    /// Where the container's stdout goes (nil: ctr's). ctr build sends RUN output to stderr.
    public var stdoutFD: Int32?
    /// Where a non-interactive process's stderr goes (nil: ctr's).
    public var stderrFD: Int32?

    public init(source: Source) { self.source = source }

    /// A build step (its root a build root or a tree), not `ctr run`.
    public var isBuildStep: Bool { if case .image = source { return false } else { return true } }

    /// The image name as the user gave it ("ctr-build" for a build step).
    public var imageName: String {
        if case .image(let n) = source { return n }
        return "ctr-build"
    }
}

/// One `-e` value.
public enum EnvSetting: Sendable, Equatable {
    /// NAME=VALUE
    case set(String)
    /// NAME alone: the caller's own value, if it has one.
    case inherit(String)

    public init(parsing s: String) throws {
        if s.isEmpty || s.hasPrefix("=") { throw CtrError.usage("-e \(s.debugDescription): a variable needs a name") }
        self = s.contains("=") ? .set(s) : .inherit(s)
    }
}

/// What is mounted where, inside the container.
public enum Mount: Sendable, Equatable {
    /// A host path (absolute; made when missing, as docker does).
    case bind(source: String, target: String, readOnly: Bool)
    /// A named volume of the store (`-v NAME:/path`): `$root/volumes/NAME/_data`.
    case volume(name: String, target: String, readOnly: Bool)
    case tmpfs(target: String, options: String)
    /// Unpacked layer dirs (topmost first) seen as one tree; with `scratch`, writable into
    /// `scratch/upper` (RUN --mount=type=bind,from=…,rw), else read-only.
    case layers(lowers: [String], target: String, scratch: String?)

    public var target: String {
        switch self {
        case .bind(_, let t, _), .volume(_, let t, _), .tmpfs(let t, _), .layers(_, let t, _): return t
        }
    }

    static let volumeOptions: Set<String> = ["ro", "rw", "z", "Z", "rbind", "bind", "shared", "slave", "private", "rshared", "rslave", "rprivate"]

    /// `-v SOURCE:TARGET[:OPTIONS]`: a host path (absolute, or relative to `cwd` when it starts
    /// with '.') or a volume name.
    public static func parseVolume(_ v: String, cwd: String = FileManager.default.currentDirectoryPath) throws -> Mount {
        let parts = v.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, parts.count <= 3 else { throw CtrError.usage("-v \(v): expected SOURCE:TARGET[:ro|rw]") }
        let target = parts[1]
        guard target.hasPrefix("/") else { throw CtrError.usage("-v \(v): the target must be an absolute path") }
        let opts = parts.count == 3 ? parts[2].split(separator: ",").map(String.init) : []
        for opt in opts where !volumeOptions.contains(opt) { throw CtrError.usage("-v \(v): unknown option \(opt)") }
        let ro = opts.contains("ro")
        let source = parts[0]
        guard !source.isEmpty else { throw CtrError.usage("-v \(v): the source is empty") }
        if !source.hasPrefix("/") && !source.hasPrefix(".") {
            guard source.range(of: #"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"#, options: .regularExpression) != nil else {
                throw CtrError.usage("-v \(v): \(source.debugDescription) is neither an absolute path nor a volume name")
            }
            return .volume(name: source, target: target, readOnly: ro)
        }
        let abs = source.hasPrefix("/") ? source : cwd + "/" + source
        return .bind(source: URL(fileURLWithPath: abs).standardizedFileURL.path, target: target, readOnly: ro)
    }

    /// `--tmpfs PATH[:OPTIONS]`
    public static func parseTmpfs(_ t: String) throws -> Mount {
        let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
        guard let target = parts.first, target.hasPrefix("/") else { throw CtrError.usage("--tmpfs \(t): the target must be an absolute path") }
        return .tmpfs(target: target, options: parts.count > 1 ? parts[1] : "mode=1777")
    }
}

/// `--network`
public enum NetworkRequest: Sendable, Equatable {
    /// No flag: the best private network this host offers, else none (with a note).
    case `default`
    /// private, default or bridge: the best private network, or an error when there is none.
    case privateNetwork(asked: String)
    case mode(NetworkMode)

    public init(parsing value: String) throws {
        if let m = try NetworkMode.parseName(value) { self = .mode(m) } else { self = .privateNetwork(asked: value) }
    }
}

/// `--add-host NAME:IP`
public struct HostEntry: Sendable, Equatable {
    public var name: String
    public var address: String
    public init(name: String, address: String) { self.name = name; self.address = address }
    public init(parsing s: String) throws {
        let (n, a) = try NetworkFiles.parseAddHost(s)
        self.init(name: n, address: a)
    }
}

/// `--security-opt`, `--cap-add`, `--cap-drop`
public struct SecurityOptions: Sendable, Equatable {
    public enum Seccomp: Sendable, Equatable {
        /// podman's default profile
        case builtin
        case unconfined
        /// a JSON profile file
        case profile(String)
    }
    public var noNewPrivileges = true
    public var seccomp = Seccomp.builtin
    /// Capability names as given (checked by `Capabilities.effective`).
    public var capAdd: [String] = []
    public var capDrop: [String] = []

    public init() {}

    public mutating func apply(_ opt: String) throws {
        let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
        let key = kv.first ?? "", value = kv.count > 1 ? kv[1] : ""
        switch key {
        case "no-new-privileges":
            guard ["", "true", "false"].contains(value) else {
                throw CtrError.usage("--security-opt \(opt): expected no-new-privileges, no-new-privileges=true or =false")
            }
            noNewPrivileges = value != "false"
        case "seccomp":
            guard !value.isEmpty else { throw CtrError.usage("--security-opt \(opt): expected seccomp=unconfined or seccomp=PROFILE.json") }
            seccomp = value == "unconfined" ? .unconfined : .profile(value)
        case "label", "apparmor":
            return  // not on this kind of host; accepted as podman does when they do not apply
        default:
            throw CtrError.usage("--security-opt \(opt): unknown option (no-new-privileges, seccomp=unconfined|PROFILE.json)")
        }
    }

    /// The capability set the process keeps.
    public func capabilities() throws -> Set<String> { try Capabilities.effective(add: capAdd, drop: capDrop) }
}

/// `--ulimit NAME=SOFT[:HARD]`
public struct RLimit: Sendable, Equatable {
    public var resource: Int32
    public var soft: UInt64
    public var hard: UInt64

    static let names: [String: Int32] = ["core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8, "msgqueue": 12,
                                         "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14, "rttime": 15,
                                         "sigpending": 11, "stack": 3, "as": 9]

    public init(resource: Int32, soft: UInt64, hard: UInt64) { self.resource = resource; self.soft = soft; self.hard = hard }

    public init(parsing s: String) throws {
        let kv = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2, let res = Self.names[kv[0]] else { throw CtrError.usage("--ulimit \(s): expected NAME=SOFT[:HARD]") }
        let vals = kv[1].split(separator: ":").map(String.init)
        func num(_ v: String) throws -> UInt64 {
            if v == "-1" || v == "unlimited" { return UInt64.max }
            guard let n = UInt64(v) else { throw CtrError.usage("--ulimit \(s): \(v) is not a number") }
            return n
        }
        guard vals.count == 1 || vals.count == 2 else { throw CtrError.usage("--ulimit \(s): expected NAME=SOFT[:HARD]") }
        let soft = try num(vals[0])
        let hard = vals.count == 2 ? try num(vals[1]) : soft
        guard soft <= hard else { throw CtrError.usage("--ulimit \(s): the soft limit is above the hard one") }
        self.init(resource: res, soft: soft, hard: hard)
    }
}

/// `--userns`
public enum UsernsRequest: Sendable, Equatable {
    /// rootless: a user namespace; root: none
    case `default`
    case host
    /// root: a user namespace mapped through root's subordinate range (podman's auto)
    case auto

    public init(parsing u: String) throws {
        switch u {
        case "": self = .default
        case "host": self = .host
        case "auto": self = .auto
        case _ where u.hasPrefix("auto:"): self = .auto
        default: throw CtrError.usage("--userns \(u): expected host or auto")
        }
    }
}

/// `ctr run`'s flags as typed: filled by either parser (ArgumentParser's `Run`, or FastRun for
/// the common flags), turned into a `RunSpec` by one function, so the two cannot disagree.
public struct RunFlags: Sendable, Equatable {
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
    public var memory: String?, memorySwap: String?, pidsLimit: String?, cpus: String?
    public var ulimits: [String] = []
    public var userns: String?

    public init(image: String) { self.image = image }

    /// Checked for syntax, as podman checks its flags before it does anything.
    public func spec(cwd: String = FileManager.default.currentDirectoryPath) throws -> RunSpec {
        var s = RunSpec(source: .image(image))
        s.command = command.first == "--" ? Array(command.dropFirst()) : command
        s.entrypoint = entrypoint
        if let n = name, n.range(of: #"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"#, options: .regularExpression) == nil {
            throw CtrError.usage("--name \(n.debugDescription): a name must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        }
        s.name = name
        s.detach = detach
        s.autoRemove = autoRemove
        s.tty = tty
        s.interactive = interactive
        s.env = try env.map(EnvSetting.init(parsing:))
        s.envFiles = envFiles
        if let w = workdir, !w.hasPrefix("/") { throw CtrError.usage("-w \(w): the working directory must be an absolute path") }
        s.workdir = workdir
        s.user = user
        s.mounts = try volumes.map { try Mount.parseVolume($0, cwd: cwd) } + tmpfs.map(Mount.parseTmpfs)
        s.readOnly = readOnly
        if let n = network { s.network = try NetworkRequest(parsing: n) }
        s.ports = try ports.map { try PortMapping(parsing: $0) }
        s.hostname = hostname
        s.extraHosts = try addHosts.map(HostEntry.init(parsing:))
        s.initProcess = initProcess
        s.security.capAdd = capAdd
        s.security.capDrop = capDrop
        _ = try s.security.capabilities()
        for o in securityOpts { try s.security.apply(o) }
        s.limits = try ResourceLimits.parse(memory: memory, memorySwap: memorySwap, pidsLimit: pidsLimit, cpus: cpus)
        s.rlimits = try ulimits.map(RLimit.init(parsing:))
        if let u = userns { s.userns = try UsernsRequest(parsing: u) }
        return s
    }
}
