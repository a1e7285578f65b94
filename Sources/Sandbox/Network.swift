import CSysShims
import Errors
import Foundation
import HostOS
#if canImport(Glibc)
import Glibc
#endif

// Container networking: which network a container gets (`--network`), published ports (`-p`),
// the user-mode helpers that give a private network namespace a way out (pasta, slirp4netns),
// and the /etc/hosts and /etc/resolv.conf the runtime bind-mounts.
//
// Both helpers give the container the same private IPv4 layout:
//
//     container 10.0.2.100/24, gateway 10.0.2.2, DNS forwarder 10.0.2.3
//
// The host's loopback is NOT reachable from the container (slirp4netns
// --disable-host-loopback, pasta --no-map-gw and -T/-U none); the host's other addresses are.
// Both helpers open /dev/net/tun inside the container's namespaces, so they need a
// /dev/net/tun the calling user can open read/write.

extension CtrError {
    /// A network helper or its set-up failed (`.system`, stage "network"); one line that says
    /// what went wrong and what to do about it.
    static func network(_ message: String) -> CtrError {
        .system("network", message)
    }
}

// MARK: - Modes

public enum NetworkMode: Equatable, Sendable, CustomStringConvertible {
    /// A private network namespace with only `lo`.
    case none
    /// The host's network namespace (no isolation).
    case host
    /// A private namespace connected through pasta (package passt).
    case pasta
    /// A private namespace connected through slirp4netns.
    case slirp4netns

    public var description: String {
        switch self {
        case .none: return "none"
        case .host: return "host"
        case .pasta: return "pasta"
        case .slirp4netns: return "slirp4netns"
        }
    }

    /// The names `--network` accepts for "the best private network this host can give".
    public static let privateAliases: Set<String> = ["private", "default", "bridge"]

    /// Syntax only: the mode a `--network` value names, nil for "the best available private
    /// network" (private, default, bridge). Does not look at the host.
    public static func parseName(_ value: String) throws -> NetworkMode? {
        switch value {
        case "none": return NetworkMode.none
        case "host": return .host
        case "pasta": return .pasta
        case "slirp4netns": return .slirp4netns
        case _ where privateAliases.contains(value): return nil
        default:
            if value.hasPrefix("pasta:") || value.hasPrefix("slirp4netns:") {
                throw CtrError.usage("--network \(value): helper options are not supported; use --network \(value.prefix { $0 != ":" })")
            }
            if value.hasPrefix("container:") || value.hasPrefix("ns:") {
                throw CtrError.usage("--network \(value): joining another container's or a named network namespace is not supported")
            }
            throw CtrError.usage("--network \(value): unknown network; use none, host, pasta, slirp4netns or private")
        }
    }

    /// A `--network` value, checked against this host: an explicit pasta or slirp4netns that
    /// cannot work here is an error, and so is private/default/bridge when neither can.
    public init(parsing value: String) throws {
        self = try NetworkMode.resolve(value, availability: NetworkMode.availability())
    }

    /// `init(parsing:)` against a given availability table (testable without the host).
    static func resolve(_ value: String, availability: [NetworkAvailability]) throws -> NetworkMode {
        let named = try parseName(value)
        switch named {
        case .none?, .host?: return named!
        case let helper?:
            let a = availability.first { $0.name == helper.description }
            if let a, a.available { return helper }
            throw CtrError.usage("--network \(value): \(a?.detail ?? "\(helper) is not usable"); use --network host for the host's network, or --network none")
        case nil:
            let (mode, note) = resolveDefault(availability: availability)
            if mode == .none {
                throw CtrError.usage("--network \(value): \(note ?? "no private network is available")")
            }
            return mode
        }
    }

    /// What `ctr run` uses without --network: slirp4netns if usable (podman's default on
    /// Debian 12; the pasta there, 2023-03, does not answer DNS for the container), else pasta,
    /// else `.none` with a one-line note for stderr saying why.
    public static func resolveDefault(rootless: Bool) -> (NetworkMode, note: String?) {
        resolveDefault(availability: availability())
    }

    static func resolveDefault(availability: [NetworkAvailability]) -> (NetworkMode, note: String?) {
        for helper in [NetworkMode.slirp4netns, .pasta] {
            if availability.first(where: { $0.name == helper.description })?.available == true {
                return (helper, nil)
            }
        }
        let helpers = availability.filter { $0.name == "pasta" || $0.name == "slirp4netns" }
        let hint = "use --network host for the host's network"
        let reasons = Set(helpers.map(\.reason))
        if reasons == [.tunPermission] {
            return (.none, "no network: pasta and slirp4netns need /dev/net/tun, which this user cannot open; \(hint)")
        }
        if reasons == [.notInstalled] {
            return (.none, "no network: neither pasta (package passt) nor slirp4netns is installed; \(hint)")
        }
        let why = helpers.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
        return (.none, "no network: \(why.isEmpty ? "no user-mode network helper" : why); \(hint)")
    }

    /// Every mode and whether it can be used here (for `ctr info`). none and host always can;
    /// pasta and slirp4netns need their binary and a /dev/net/tun this process can open read/write.
    public static func availability() -> [NetworkAvailability] {
        availability(tunPath: "/dev/net/tun", find: { Command.find($0) })
    }

    static func availability(tunPath: String, find: (String) -> String?) -> [NetworkAvailability] {
        availability(tun: NetworkMode.tunCheck(path: tunPath), find: find)
    }

    /// `tun`: the result of `tunCheck` (nil: usable).
    static func availability(tun: (reason: NetworkAvailability.Reason, text: String)?, find: (String) -> String?) -> [NetworkAvailability] {
        var out = [
            NetworkAvailability(name: "none", available: true, detail: "a private network namespace with only loopback"),
            NetworkAvailability(name: "host", available: true, detail: "the host's network namespace (not isolated)"),
        ]
        for (name, package) in [("pasta", "passt"), ("slirp4netns", "slirp4netns")] {
            guard let path = find(name) else {
                out.append(NetworkAvailability(name: name, available: false,
                                               detail: "\(name) is not installed (package \(package))",
                                               reason: .notInstalled))
                continue
            }
            if let tun {
                out.append(NetworkAvailability(name: name, available: false, detail: "\(name) needs \(tun.text)", reason: tun.reason))
            } else {
                out.append(NetworkAvailability(name: name, available: true, detail: path))
            }
        }
        return out
    }

    /// nil when `path` is a character device this process can open read/write, else why not
    /// ("/dev/net/tun, which this user cannot open").
    static func tunCheck(path: String) -> (reason: NetworkAvailability.Reason, text: String)? {
        let err = path.withCString { openReadWriteErrno($0) }
        switch err {
        case 0: return nil
        case EACCES, EPERM: return (.tunPermission, "\(path), which this user cannot open")
        case ENOENT, ENXIO, ENODEV: return (.tunMissing, "\(path), which does not exist here (no tun driver)")
        case -1: return (.tunMissing, "\(path), which is not a character device")
        default: return (.tunMissing, "\(path), which cannot be opened: \(String(cString: strerror(err)))")
        }
    }

    /// 0 when `path` is a character device that opens O_RDWR, -1 when it opens but is not a
    /// character device, else errno. Only system calls: safe in a forked child.
    static func openReadWriteErrno(_ path: UnsafePointer<CChar>) -> Int32 {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd < 0 { return errno }
        var st = stat()
        let isChar = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR
        close(fd)
        return isChar ? 0 : -1
    }
}

/// One line of `ctr info`'s network section.
public struct NetworkAvailability: Equatable, Sendable {
    public enum Reason: Equatable, Sendable { case ok, notInstalled, tunPermission, tunMissing }
    public var name: String
    public var available: Bool
    /// The helper's path when available, else why not.
    public var detail: String
    public var reason: Reason

    public init(name: String, available: Bool, detail: String, reason: Reason? = nil) {
        self.name = name
        self.available = available
        self.detail = detail
        self.reason = reason ?? (available ? .ok : .tunMissing)
    }
}

// MARK: - Published ports

/// A Docker-style `-p` value: `[IP:]HOSTPORT[-END]:CONTAINERPORT[-END][/tcp|/udp]`.
/// The host port is required (no random host ports).
public struct PortMapping: Equatable, Hashable, Sendable, CustomStringConvertible {
    public enum Proto: String, Sendable, Hashable { case tcp, udp }

    /// nil: every host address.
    public var hostIP: String?
    public var hostPort: UInt16
    public var containerPort: UInt16
    /// How many consecutive ports (1 for a single port).
    public var count: UInt16
    public var proto: Proto

    public init(hostIP: String? = nil, hostPort: UInt16, containerPort: UInt16, count: UInt16 = 1, proto: Proto = .tcp) {
        self.hostIP = hostIP
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.count = count
        self.proto = proto
    }

    public init(parsing value: String) throws {
        func fail(_ why: String) -> CtrError { .usage("-p \(value): \(why)") }
        var rest = Substring(value)
        var proto = Proto.tcp
        if let slash = rest.lastIndex(of: "/") {
            let p = rest[rest.index(after: slash)...]
            guard let pr = Proto(rawValue: p.lowercased()) else {
                throw fail("unknown protocol '\(p)'; use tcp or udp")
            }
            proto = pr
            rest = rest[..<slash]
        }
        var hostIP: String?
        if rest.hasPrefix("[") {  // [IPv6]:host:container
            guard let close = rest.firstIndex(of: "]") else { throw fail("unclosed '[' in the host address") }
            hostIP = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            guard rest.hasPrefix(":") else { throw fail("expected ':' after the host address") }
            rest = rest.dropFirst()
        }
        var parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if hostIP == nil && parts.count == 3 {
            hostIP = parts.removeFirst()
        }
        switch parts.count {
        case 1:
            throw fail("a host port is required (ctr does not pick random host ports); use -p HOSTPORT:\(parts[0].isEmpty ? "PORT" : parts[0])")
        case 2:
            break
        default:
            throw fail("expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]")
        }
        if let ip = hostIP {
            if ip.isEmpty { hostIP = nil } else {
                guard PortMapping.isIPAddress(ip) else { throw fail("'\(ip)' is not an IP address") }
            }
        }
        if parts[0].isEmpty {
            throw fail("a host port is required (ctr does not pick random host ports); use -p HOSTPORT:\(parts[1])")
        }
        guard let host = PortMapping.range(parts[0]) else { throw fail("bad host port '\(parts[0])' (1-65535, or a range like 8000-8010)") }
        guard let cont = PortMapping.range(parts[1]) else { throw fail("bad container port '\(parts[1])' (1-65535, or a range like 8000-8010)") }
        guard host.count == cont.count else {
            throw fail("the host range has \(host.count) ports and the container range \(cont.count)")
        }
        self.init(hostIP: hostIP, hostPort: host.first, containerPort: cont.first, count: host.count, proto: proto)
    }

    private static func range(_ s: String) -> (first: UInt16, count: UInt16)? {
        let ends = s.split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count == 1 || ends.count == 2,
              ends.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let a = UInt16(ends[0]), a > 0 else { return nil }
        let b = ends.count == 2 ? UInt16(ends[1]) : a
        guard let b, b >= a else { return nil }
        return (a, b - a + 1)
    }

    static func isIPAddress(_ s: String) -> Bool { isIPv4(s) || isIPv6(s) }
    static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }
    static func isIPv6(_ s: String) -> Bool {
        var a = in6_addr()
        return inet_pton(AF_INET6, s, &a) == 1
    }

    public var lastHostPort: UInt16 { hostPort + count - 1 }
    public var lastContainerPort: UInt16 { containerPort + count - 1 }

    public var description: String {
        let ip = hostIP.map { $0.contains(":") ? "[\($0)]:" : "\($0):" } ?? ""
        let h = count == 1 ? "\(hostPort)" : "\(hostPort)-\(lastHostPort)"
        let c = count == 1 ? "\(containerPort)" : "\(containerPort)-\(lastContainerPort)"
        return "\(ip)\(h):\(c)/\(proto.rawValue)"
    }

    /// pasta's `-t`/`-u` spec: `[ADDR/]HOST[-END]:CONTAINER[-END]`.
    var pastaSpec: String {
        let ip = hostIP.map { "\($0)/" } ?? ""
        let h = count == 1 ? "\(hostPort)" : "\(hostPort)-\(lastHostPort)"
        let c = count == 1 ? "\(containerPort)" : "\(containerPort)-\(lastContainerPort)"
        return "\(ip)\(h):\(c)"
    }
}

// MARK: - Attaching a helper

/// A running network helper serving one container's network namespace.
///
/// Lifetime: `stop()` (or deinit) ends the helper. For a detached container, whose ctr
/// process exits while the container runs, `detachRecord(into:)` writes what is needed to stop
/// the helper later and releases it; `NetworkAttachment.stopRecorded(at:)` then ends it. The
/// helpers do not notice the container's exit on their own (neither watches the namespace),
/// so a ctr that is killed outright leaves its helper running until stopped from the record.
public final class NetworkAttachment: @unchecked Sendable {
    /// The private layout both helpers give the container.
    public static let subnet = "10.0.2.0/24"
    public static let defaultContainerAddress = "10.0.2.100"
    public static let defaultGateway = "10.0.2.2"
    public static let defaultDNSForwarder = "10.0.2.3"

    public let mode: NetworkMode
    /// The nameserver the container should use; nil: the host's nameservers (see `NetworkFiles.resolvConf`).
    public let dnsServer: String?
    /// An address that forwards DNS to the host's first resolver (pasta --dns-forward); used
    /// in place of host nameservers the container cannot reach (127.x, ::1).
    public let dnsForwarder: String?
    /// The container's IPv4 address (for /etc/hosts).
    public let containerAddress: String?
    public let gateway: String?
    /// The helper's pid (slirp4netns: our child; pasta: its daemon).
    public let helperPID: pid_t
    public let ports: [PortMapping]

    private let lock = NSLock()
    private var released = false      // stopped, or handed over to a record
    private let helper: HelperIdentity
    private let runDir: String

    private init(mode: NetworkMode, dnsServer: String?, dnsForwarder: String?, helper: HelperIdentity,
                 ports: [PortMapping], runDir: String) {
        self.mode = mode
        self.dnsServer = dnsServer
        self.dnsForwarder = dnsForwarder
        self.containerAddress = NetworkAttachment.defaultContainerAddress
        self.gateway = NetworkAttachment.defaultGateway
        self.helperPID = helper.pid
        self.helper = helper
        self.ports = ports
        self.runDir = runDir
    }

    deinit { stop() }

    /// Start the helper for the network namespace of `pid` (its /proc/PID/ns/net, joined via
    /// /proc/PID/ns/user when `rootless`). nil for `.none` and `.host`, which need no helper.
    /// Returns once the namespace has its interface, address, route and port forwards.
    public static func attach(mode: NetworkMode, pid: pid_t, ports: [PortMapping], rootless: Bool) throws -> NetworkAttachment? {
        switch mode {
        case .none, .host:
            if !ports.isEmpty {
                throw CtrError.usage("-p \(ports[0]): publishing ports needs a private network (pasta or slirp4netns), not --network \(mode)")
            }
            return nil
        case .pasta, .slirp4netns:
            break
        }
        let name = mode.description
        guard let exe = Command.find(name) else {
            throw CtrError.unsupported("\(name): not installed (package \(mode == .pasta ? "passt" : "slirp4netns"))")
        }
        if let problem = NetworkMode.tunCheck(path: "/dev/net/tun") {
            throw CtrError.unsupported("\(name): needs \(problem.text); use --network host for the host's network, or --network none")
        }
        guard access("/proc/\(pid)/ns/net", F_OK) == 0 else {
            throw CtrError.network("\(name): no process \(pid) whose network namespace to join")
        }
        try checkHostPorts(ports, helper: name)
        let runDir = try makeRunDir()
        do {
            switch mode {
            case .pasta:
                return try startPasta(exe: exe, pid: pid, ports: ports, rootless: rootless, runDir: runDir)
            default:
                return try startSlirp(exe: exe, pid: pid, ports: ports, rootless: rootless, runDir: runDir)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: runDir)
            throw error
        }
    }

    /// Stop the helper (idempotent; does nothing after `detachRecord(into:)`).
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        if released { return }
        released = true
        helper.terminate()
        try? FileManager.default.removeItem(atPath: runDir)
    }

    /// Whether the helper process is still running.
    public var isRunning: Bool { helper.isAlive }

    /// For a detached container: write a record from which `NetworkAttachment.stopRecorded(at:)`
    /// can end the helper later (from another ctr process), and release the helper so that
    /// this object's `stop()`/deinit leave it running.
    public func detachRecord(into path: String) throws {
        lock.lock()
        defer { lock.unlock() }
        if released { throw CtrError.network("\(mode): the helper was already stopped") }
        let record = DetachedRecord(mode: mode.description, helperPID: helper.pid, helperStart: helper.startTime,
                                    helperExe: helper.exe, runDir: runDir,
                                    containerAddress: containerAddress, dnsServer: dnsServer)
        let data = try JSONEncoder().encode(record)
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CtrError.network("\(mode): cannot write \(path): \(error.localizedDescription)")
        }
        released = true
    }

    /// Stop a helper recorded by `detachRecord(into:)` and remove the record. Idempotent: a
    /// missing record or a helper that is gone (or whose pid now belongs to another process)
    /// is not an error.
    public static func stopRecorded(at path: String) {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        if let r = try? JSONDecoder().decode(DetachedRecord.self, from: data) {
            HelperIdentity(pid: r.helperPID, startTime: r.helperStart, exe: r.helperExe, isChild: false).terminate()
            if r.runDir.contains("/ctr-net-") { try? FileManager.default.removeItem(atPath: r.runDir) }
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    struct DetachedRecord: Codable {
        var mode: String
        var helperPID: Int32
        var helperStart: UInt64
        var helperExe: String
        var runDir: String
        var containerAddress: String?
        var dnsServer: String?
    }

    /// A helper process, recognised by pid + start time (+ executable name) so that a reused
    /// pid is never signalled.
    struct HelperIdentity {
        var pid: pid_t
        var startTime: UInt64
        var exe: String      // basename, "pasta" or "slirp4netns"
        var isChild: Bool    // ours to reap

        static func of(_ pid: pid_t, exe: String, isChild: Bool) -> HelperIdentity? {
            guard let st = procStartTime(pid) else { return nil }
            return HelperIdentity(pid: pid, startTime: st, exe: exe, isChild: isChild)
        }

        var isAlive: Bool {
            guard let (state, start) = NetworkAttachment.procState(pid), start == startTime else { return false }
            guard state != "Z" && state != "X" else { return false }
            // argv[0], not comm: pasta re-executes itself as passt.avx2 and keeps its argv
            guard let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
                  let arg0 = cmd.split(separator: 0).first else { return false }
            return String(decoding: arg0, as: UTF8.self).split(separator: "/").last.map(String.init) == exe
        }

        /// Still running (not yet a zombie) as the same process, whatever its cmdline says.
        var exists: Bool {
            guard let (state, start) = NetworkAttachment.procState(pid), start == startTime else { return false }
            return state != "Z" && state != "X"
        }

        func terminate() {
            func gone(_ timeout: Double) -> Bool {
                let deadline = Date().addingTimeInterval(timeout)
                while true {
                    if isChild, ChildProcess(pid: pid).wait(timeout: 0) != nil { return true }
                    // by state, not isAlive: while a process exits, its cmdline is empty
                    // (mm released) before its sockets are closed
                    if !exists { if isChild { _ = ChildProcess(pid: pid).wait(timeout: 0.2) }; return true }
                    if Date() >= deadline { return false }
                    usleep(10_000)
                }
            }
            guard isAlive else { if isChild { _ = ChildProcess(pid: pid).wait(timeout: 0) }; return }
            kill(pid, SIGTERM)
            if gone(3) { return }
            if isAlive { kill(pid, SIGKILL) }
            _ = gone(2)
        }
    }

    static func procStartTime(_ pid: pid_t) -> UInt64? { procState(pid)?.start }

    /// State letter and start time (field 22, clock ticks since boot) from /proc/PID/stat.
    static func procState(_ pid: pid_t) -> (state: Character, start: UInt64)? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return nil }
        let fields = s[s.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field 22 is fields[19]
        guard fields.count > 19, let state = fields[0].first, let start = UInt64(fields[19]) else { return nil }
        return (state, start)
    }

    // MARK: pasta

    /// pasta (Debian 12: 2023-03 vintage) joins the namespace, configures the tap interface
    /// with our fixed layout, forwards the published ports, writes its pid and daemonises.
    static func pastaArguments(ports: [PortMapping], rootless: Bool, pidFile: String, asRoot: Bool) -> [String] {
        var args = ["--config-net", "--quiet"]
        // As root pasta switches to "nobody" before opening the namespace, which then fails.
        if asRoot { args += ["--runas", "0"] }
        args += [
            "--address", defaultContainerAddress, "--netmask", "24", "--gateway", defaultGateway,
            "--dns-forward", defaultDNSForwarder,
            "--no-map-gw",              // the gateway address must not reach the host's loopback
            "-T", "none", "-U", "none", // nor may the container's loopback ports reach the host's
        ]
        let tcp = ports.filter { $0.proto == .tcp }, udp = ports.filter { $0.proto == .udp }
        if tcp.isEmpty { args += ["-t", "none"] } else { for p in tcp { args += ["-t", p.pastaSpec] } }
        if udp.isEmpty { args += ["-u", "none"] } else { for p in udp { args += ["-u", p.pastaSpec] } }
        // The namespaces come as inherited fds 3 and 4 (opened by us from /proc/PID/ns/*):
        // pasta drops its capabilities before opening them, and as root it then may not open
        // another root process's /proc/PID/ns/net (ptrace access check); its own fds it may.
        args += ["--pid", pidFile, "--netns", "/proc/self/fd/3"]
        if rootless { args += ["--userns", "/proc/self/fd/4"] }
        return args
    }

    private static func startPasta(exe: String, pid: pid_t, ports: [PortMapping], rootless: Bool, runDir: String) throws -> NetworkAttachment {
        let pidFile = "\(runDir)/pasta.pid"
        let log = "\(runDir)/pasta.log"
        let args = pastaArguments(ports: ports, rootless: rootless, pidFile: pidFile, asRoot: geteuid() == 0)
        let logFD = try HelperLog.open(log)
        defer { close(logFD) }
        let nullFD = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if nullFD >= 0 { close(nullFD) } }
        let netFD = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        guard netFD >= 0 else { throw CtrError.network("pasta: cannot open /proc/\(pid)/ns/net: \(String(cString: strerror(errno)))") }
        defer { close(netFD) }
        let userFD = rootless ? open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC) : nullFD
        guard userFD >= 0 else { throw CtrError.network("pasta: cannot open /proc/\(pid)/ns/user: \(String(cString: strerror(errno)))") }
        defer { if rootless { close(userFD) } }
        let child = try spawnHelper(exe, args, fds: [nullFD, logFD, logFD, netFD, userFD])
        guard let status = child.wait(timeout: 20) else {
            child.signal(SIGKILL)
            _ = child.wait(timeout: 2)
            throw CtrError.network("pasta: did not finish setting up within 20 s\(HelperLog.tail(log, prefix: ": "))")
        }
        guard status == .exited(0) else {
            throw CtrError.network("pasta failed (\(status))\(HelperLog.tail(log, prefix: ": "))")
        }
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let daemon = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), daemon > 0,
              let helper = HelperIdentity.of(daemon, exe: "pasta", isChild: false) else {
            throw CtrError.network("pasta: exited without leaving a running daemon (pid file \(pidFile))\(HelperLog.tail(log, prefix: ": "))")
        }
        return NetworkAttachment(mode: .pasta, dnsServer: nil, dnsForwarder: defaultDNSForwarder, helper: helper,
                                 ports: ports, runDir: runDir)
    }

    // MARK: slirp4netns

    /// slirp4netns runs in the foreground as our child. No --exit-fd: a detached container's
    /// helper must outlive this ctr process.
    static func slirpArguments(pid: pid_t, rootless: Bool, apiSocket: String, readyFD: Int32) -> [String] {
        var args = [
            "--configure", "--mtu=65520", "--disable-host-loopback",
            "--enable-sandbox", "--enable-seccomp",
            "--api-socket", apiSocket, "--ready-fd=\(readyFD)",
        ]
        if rootless { args.append("--userns-path=/proc/\(pid)/ns/user") }
        args += ["--netns-type=path", "/proc/\(pid)/ns/net", "tap0"]
        return args
    }

    private static func startSlirp(exe: String, pid: pid_t, ports: [PortMapping], rootless: Bool, runDir: String) throws -> NetworkAttachment {
        let api = "\(runDir)/slirp4netns.sock"
        let log = "\(runDir)/slirp4netns.log"
        var ready: [Int32] = [-1, -1]
        guard csys_pipe_cloexec(&ready) == 0 else { throw CtrError.network("slirp4netns: pipe: \(String(cString: strerror(errno)))") }
        defer { close(ready[0]); if ready[1] >= 0 { close(ready[1]) } }
        let logFD = try HelperLog.open(log)
        defer { close(logFD) }
        let nullFD = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { if nullFD >= 0 { close(nullFD) } }
        // in the child: fd 3 = the ready pipe's write end
        let args = slirpArguments(pid: pid, rootless: rootless, apiSocket: api, readyFD: 3)
        let child = try spawnHelper(exe, args, fds: [nullFD, logFD, logFD, ready[1]])
        close(ready[1]); ready[1] = -1
        let helper = HelperIdentity.of(child.pid, exe: "slirp4netns", isChild: true)
            ?? HelperIdentity(pid: child.pid, startTime: 0, exe: "slirp4netns", isChild: true)

        func failure(_ why: String) -> CtrError {
            if let st = child.wait(timeout: 0.3) {
                return CtrError.network("slirp4netns failed (\(st))\(HelperLog.tail(log, prefix: ": "))")
            }
            child.signal(SIGKILL)
            _ = child.wait(timeout: 2)
            return CtrError.network("slirp4netns: \(why)\(HelperLog.tail(log, prefix: ": "))")
        }

        // wait for "1" on the ready fd (EOF: it died)
        let deadline = Date().addingTimeInterval(20)
        var isReady = false
        while Date() < deadline {
            var pfd = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, 100)
            if n > 0 {
                var b: UInt8 = 0
                let r = read(ready[0], &b, 1)
                if r == 1 { isReady = true }
                break
            }
            if n < 0 && errno != EINTR { break }
            if let st = child.wait(timeout: 0) {
                throw CtrError.network("slirp4netns failed (\(st))\(HelperLog.tail(log, prefix: ": "))")
            }
        }
        if !isReady { throw failure("not ready within 20 s") }

        for p in ports {
            if p.hostIP.map(PortMapping.isIPv6) == true {
                throw failure("cannot publish -p \(p): slirp4netns forwards only from IPv4 host addresses")
            }
            for i in 0..<p.count {
                let req: [String: Any] = ["execute": "add_hostfwd", "arguments": [
                    "proto": p.proto.rawValue, "host_addr": p.hostIP ?? "0.0.0.0",
                    "host_port": Int(p.hostPort + i), "guest_port": Int(p.containerPort + i),
                ] as [String: Any]]
                do {
                    try slirpAPI(socket: api, req)
                } catch {
                    child.signal(SIGKILL)
                    _ = child.wait(timeout: 2)
                    throw CtrError.network("slirp4netns: cannot publish -p \(p): \(error)")
                }
            }
        }
        return NetworkAttachment(mode: .slirp4netns, dnsServer: defaultDNSForwarder, dnsForwarder: defaultDNSForwarder,
                                 helper: helper, ports: ports, runDir: runDir)
    }

    /// One request on slirp4netns's API socket (one connection per request).
    @discardableResult
    static func slirpAPI(socket path: String, _ request: [String: Any]) throws -> [String: Any] {
        let body = try JSONSerialization.data(withJSONObject: request)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CtrError.network("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw CtrError.network("API socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw CtrError.network("cannot connect to \(path): \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let sent = body.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard sent == body.count else { throw CtrError.network("cannot write to \(path): \(String(cString: strerror(errno)))") }
        shutdown(fd, Int32(SHUT_WR))
        var reply = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n > 0 { reply.append(contentsOf: buf[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: reply)) as? [String: Any] else {
            throw CtrError.network("unreadable reply: \(String(decoding: reply.prefix(200), as: UTF8.self))")
        }
        if let err = obj["error"] as? [String: Any] {
            throw CtrError.network(String(describing: err["desc"] ?? err))
        }
        return obj
    }

    // MARK: helpers

    /// Bind each published host port ourselves first: the helpers' own messages for a port in
    /// use or a privileged port are vague (or, for pasta, only logged).
    static func checkHostPorts(_ ports: [PortMapping], helper: String) throws {
        for p in ports {
            for i in 0..<p.count {
                let port = p.hostPort + i
                let err = probeBind(proto: p.proto, address: p.hostIP, port: port)
                switch err {
                case 0: continue
                case EADDRINUSE:
                    throw CtrError.conflict("-p \(p): host port \(port)/\(p.proto.rawValue) is already in use")
                case EACCES, EPERM:
                    throw CtrError.network("-p \(p): this user may not bind host port \(port) (ports below \(unprivilegedPortStart()) need privileges; see net.ipv4.ip_unprivileged_port_start)")
                case EADDRNOTAVAIL:
                    throw CtrError.network("-p \(p): \(p.hostIP ?? "the address") is not an address of this host")
                default:
                    throw CtrError.network("-p \(p): cannot bind host port \(port): \(String(cString: strerror(err)))")
                }
            }
        }
    }

    static func unprivilegedPortStart() -> Int {
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
    }

    /// 0 if `address:port` can be bound now, else errno.
    static func probeBind(proto: PortMapping.Proto, address: String?, port: UInt16) -> Int32 {
        let type = proto == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let v6 = address.map(PortMapping.isIPv6) ?? false
        let fd = socket(v6 ? AF_INET6 : AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, address!, &sa.sin6_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, address ?? "0.0.0.0", &sa.sin_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        return rc == 0 ? 0 : errno
    }

    private static func makeRunDir() throws -> String {
        var base = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? ""
        if base.isEmpty || access(base, W_OK) != 0 { base = NSTemporaryDirectory() }
        if base.hasSuffix("/") { base.removeLast() }
        var template = Array("\(base)/ctr-net-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else {
            throw CtrError.network("cannot create a directory in \(base) for the network helper: \(String(cString: strerror(errno)))")
        }
        return String(cString: p)
    }
}

// MARK: - Starting helpers

/// A helper with exactly these fds (`fds[i]` is its fd i: it must not keep the container's
/// sync socket or another thread's pipe open), default signal handling, a process group of
/// its own.
func spawnHelper(_ path: String, _ args: [String], fds: [Int32]) throws -> ChildProcess {
    do {
        return try Command(path, args, fds: fds, group: .newGroup).spawn()
    } catch {
        throw CtrError.wrapping(error, error.description)
    }
}

/// The helpers' logs (their stdout and stderr).
enum HelperLog {
    static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CtrError.network("cannot create \(path): \(String(cString: strerror(errno)))") }
        return fd
    }

    /// The helper's meaningful output as one line (syslog noise and chatter dropped).
    static func tail(_ path: String, prefix: String) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { line in
            !line.isEmpty
                && !(line.hasPrefix("Failed to send ") && line.hasSuffix("to syslog"))
                && !line.hasPrefix("sent tapfd=") && !line.hasPrefix("received tapfd=")
                && !line.hasPrefix("Starting slirp") && !line.hasPrefix("* ")
                && !line.hasPrefix("WARNING: Support for sandboxing is experimental")
                && !line.hasPrefix("WARNING: Support for seccomp is experimental")
        }
        if lines.isEmpty { return "" }
        return prefix + lines.suffix(3).joined(separator: "; ")
    }
}

// MARK: - /etc/hosts and /etc/resolv.conf

public enum NetworkFiles {
    /// /etc/hosts: loopback names, the container's address (127.0.1.1 without one) with its
    /// hostname, then the --add-host entries in order.
    public static func hosts(hostname: String, extraHosts: [(String, String)], containerAddress: String?) -> String {
        var out = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        if !hostname.isEmpty {
            var names = hostname
            if let dot = hostname.firstIndex(of: "."), dot != hostname.startIndex {
                names += " \(hostname[..<dot])"
            }
            out += "\(containerAddress ?? "127.0.1.1")\t\(names)\n"
        }
        for (name, ip) in extraHosts { out += "\(ip)\t\(name)\n" }
        return out
    }

    /// /etc/resolv.conf for the container.
    /// - host: the host's file as it is.
    /// - none: the host's file (as Docker does; nothing is reachable anyway).
    /// - slirp4netns: its DNS forwarder (10.0.2.3), plus the host's search/domain/options.
    /// - pasta: the host's nameservers, with loopback ones (127.x, ::1: the container's loopback
    ///   is its own) replaced by pasta's --dns-forward address, which reaches the host's first
    ///   resolver; plus the host's search/domain/options.
    public static func resolvConf(mode: NetworkMode, attachment: NetworkAttachment?, hostResolvConf: String) -> String {
        switch mode {
        case .host, .none:
            return hostResolvConf
        case .slirp4netns:
            let ns = attachment?.dnsServer ?? NetworkAttachment.defaultDNSForwarder
            return render(nameservers: [ns], other: otherLines(hostResolvConf))
        case .pasta:
            if let fixed = attachment?.dnsServer {
                return render(nameservers: [fixed], other: otherLines(hostResolvConf))
            }
            let forwarder = attachment?.dnsForwarder ?? NetworkAttachment.defaultDNSForwarder
            var servers: [String] = []
            for ns in nameservers(hostResolvConf) {
                let use = isLoopback(ns) ? forwarder : ns
                if !servers.contains(use) { servers.append(use) }
            }
            return render(nameservers: servers, other: otherLines(hostResolvConf))
        }
    }

    /// `--add-host NAME:IP` (or NAME=IP); IPv6 addresses keep their colons (split at the first).
    public static func parseAddHost(_ value: String) throws -> (String, String) {
        let sep = value.firstIndex(of: "=") ?? value.firstIndex(of: ":")
        guard let sep else { throw CtrError.usage("--add-host \(value): expected NAME:IP") }
        let name = String(value[..<sep])
        var ip = String(value[value.index(after: sep)...])
        if ip.hasPrefix("[") && ip.hasSuffix("]") { ip = String(ip.dropFirst().dropLast()) }
        guard !name.isEmpty else { throw CtrError.usage("--add-host \(value): the host name is empty") }
        guard !name.contains(where: { $0.isWhitespace || $0 == "#" }) else {
            throw CtrError.usage("--add-host \(value): '\(name)' is not a valid host name")
        }
        if ip == "host-gateway" {
            throw CtrError.usage("--add-host \(value): host-gateway is not supported; give the host's address")
        }
        guard PortMapping.isIPAddress(ip) else { throw CtrError.usage("--add-host \(value): '\(ip)' is not an IP address") }
        return (name, ip)
    }

    static func nameservers(_ conf: String) -> [String] {
        conf.split(whereSeparator: \.isNewline).compactMap { line in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 2, f[0] == "nameserver" else { return nil }
            return String(f[1])
        }
    }

    /// search, domain, options and sortlist lines of a resolv.conf.
    static func otherLines(_ conf: String) -> [String] {
        conf.split(whereSeparator: \.isNewline).compactMap { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            let key = t.prefix { !$0.isWhitespace }
            return ["search", "domain", "options", "sortlist"].contains(String(key)) ? t : nil
        }
    }

    static func isLoopback(_ ip: String) -> Bool {
        let addr = ip.split(separator: "%").first.map(String.init) ?? ip
        if PortMapping.isIPv4(addr) { return addr.hasPrefix("127.") }
        var a = in6_addr()
        guard inet_pton(AF_INET6, addr, &a) == 1 else { return false }
        let b = withUnsafeBytes(of: &a) { Array($0) }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return true }          // ::1
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {     // ::ffff:127.x
            return b[12] == 127
        }
        return false
    }

    private static func render(nameservers: [String], other: [String]) -> String {
        (nameservers.map { "nameserver \($0)" } + other).map { $0 + "\n" }.joined()
    }
}
