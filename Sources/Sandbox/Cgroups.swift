import Errors
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Resource limits for `ctr run --memory/--memory-swap/--pids-limit/--cpus`, applied through
// cgroups.
//
// Where the container's cgroup goes, per controller (memory, pids, cpu):
//  * cgroup v2, when the controller is offered by a writable place in the unified hierarchy:
//      - root: <cgroup2 mount>/ctr/ctr-<name>  (controllers enabled in the mount root's and
//        ctr/'s cgroup.subtree_control);
//      - a user: <own cgroup>/ctr-<name>, where <own cgroup> (from "0::/path" in /proc/self/cgroup)
//        must be delegated to the user (directory, cgroup.procs and cgroup.subtree_control
//        writable, e.g. anything under user@UID.service or a `systemd-run --user --scope -p
//        Delegate=yes` scope). cgroup v2 forbids enabling controllers for children of a cgroup
//        that has processes of its own, so, as dockerd-rootless/dind do, the processes of that
//        cgroup (ctr itself, its shell…) are first moved into <own cgroup>/init; a later ctr
//        started from <own cgroup>/init uses <own cgroup> again.
//  * cgroup v1 (hybrid or legacy host), when the controller's hierarchy is writable (root):
//      <mount>/ctr/<name>, e.g. /sys/fs/cgroup/memory/ctr/<name>, /sys/fs/cgroup/pids/ctr/<name>,
//      /sys/fs/cgroup/cpu,cpuacct/ctr/<name>. On a hybrid host a tracking cgroup with no
//      controllers is also made in the unified hierarchy (<unified>/ctr/ctr-<name>) when it is
//      writable, so that remove() can kill every process of the container with cgroup.kill.
//  * otherwise the limit cannot be applied and `CgroupHandle.create` throws a one-line
//    `CtrError` naming the flag, why, and what would make it work. A limit is never ignored.

// MARK: - Errors

extension CtrError {
    /// A one-line error about cgroups: an operation that failed (`.system`, stage "cgroup").
    /// Flags ctr cannot use are `.usage`, limits this host cannot apply `.unsupported`.
    static func cgroup(_ message: String) -> CtrError {
        .system("cgroup", message)
    }
}

// MARK: - Limits

/// Resource limits with Docker's meaning. `nil` means "no limit".
public struct ResourceLimits: Equatable, Sendable {
    /// Memory limit in bytes (`--memory`).
    public var memory: Int64?
    /// Memory + swap limit in bytes (`--memory-swap`, Docker's meaning: the total), or -1 for
    /// unlimited swap. When nil and `memory` is set, swap is limited to the same amount as memory
    /// (total = 2 × memory) where the kernel accounts swap, as Docker does.
    public var memorySwap: Int64?
    /// Maximum number of processes/threads (`--pids-limit`).
    public var pids: Int64?
    /// CPU bandwidth in CPUs (`--cpus`), e.g. 0.5 = 50 ms per 100 ms period.
    public var cpus: Double?

    public init(memory: Int64? = nil, memorySwap: Int64? = nil, pids: Int64? = nil, cpus: Double? = nil) {
        self.memory = memory
        self.memorySwap = memorySwap
        self.pids = pids
        self.cpus = cpus
    }

    public var isEmpty: Bool { memory == nil && memorySwap == nil && pids == nil && cpus == nil }

    /// Docker's minimum for `--memory` (6 MiB).
    public static let minimumMemory: Int64 = 6 * 1024 * 1024
    /// The CFS period ctr uses (µs); `--cpus` becomes a quota of `cpus × period`.
    public static let cpuPeriod: Int64 = 100_000

    /// The cgroup controllers these limits need, in the order memory, pids, cpu.
    public var controllers: [String] {
        var c: [String] = []
        if memory != nil || memorySwap != nil { c.append("memory") }
        if pids != nil { c.append("pids") }
        if cpus != nil { c.append("cpu") }
        return c
    }

    /// The CFS quota (µs per `cpuPeriod`) for `cpus`, computed like Docker (NanoCPUs × period / 1e9).
    public var cpuQuota: Int64? {
        guard let cpus else { return nil }
        let nanos = Int64((cpus * 1e9).rounded())
        return nanos * Self.cpuPeriod / 1_000_000_000
    }

    /// Parse the flags of `ctr run` (nil = flag absent) with Docker's rules:
    /// `--memory 0` means unlimited, otherwise at least 6m; `--memory-swap` needs `--memory`,
    /// must be ≥ it, -1 = unlimited swap, 0 = unset; `--pids-limit` 0 or -1 = unlimited;
    /// `--cpus` from 0.01 to the number of CPUs.
    public static func parse(memory: String? = nil, memorySwap: String? = nil, pidsLimit: String? = nil,
                             cpus: String? = nil, cpuCount: Int = ResourceLimits.onlineCPUs()) throws -> ResourceLimits {
        var l = ResourceLimits()
        if let memory {
            let m = try parseMemory(memory, flag: "--memory")
            if m != 0 {
                guard m >= minimumMemory else {
                    throw CtrError.usage("invalid --memory \"\(memory)\": the minimum memory limit is 6m")
                }
                l.memory = m
            }
        }
        if let memorySwap {
            let s: Int64
            if memorySwap.trimmingCharacters(in: .whitespaces) == "-1" { s = -1 } else { s = try parseMemory(memorySwap, flag: "--memory-swap") }
            if s != 0 {
                guard let m = l.memory else {
                    throw CtrError.usage("invalid --memory-swap \"\(memorySwap)\": --memory-swap needs --memory as well")
                }
                if s != -1 && s < m {
                    throw CtrError.usage("invalid --memory-swap \"\(memorySwap)\": it is memory plus swap, so it must be at least --memory (\(formatBytes(m))), or -1 for unlimited swap")
                }
                l.memorySwap = s
            }
        }
        if let pidsLimit { l.pids = try parsePidsLimit(pidsLimit) }
        if let cpus { l.cpus = try parseCPUs(cpus, cpuCount: cpuCount) }
        return l
    }

    /// A size as Docker's `RAMInBytes` reads it: a decimal number, an optional space, an optional
    /// binary unit k/m/g/t/p (case-insensitive, optionally followed by "i" and/or "b");
    /// no unit = bytes. "256m" = 268435456, "1g", "512k", "1024b", "1000", "1.5g", "256MiB".
    public static func parseMemory(_ text: String, flag: String = "--memory") throws -> Int64 {
        let bad = CtrError.usage("invalid \(flag) \"\(text)\": expected a size such as 256m, 1g, 512k or 1024b")
        var s = Substring(text.lowercased())
        if s.hasSuffix("b") { s = s.dropLast() }
        if s.hasSuffix("i") { s = s.dropLast() }
        var multiplier: Double = 1
        if let last = s.last, let power = ["k": 1, "m": 2, "g": 3, "t": 4, "p": 5][last] {
            multiplier = pow(1024, Double(power))
            s = s.dropLast()
        }
        if s.hasSuffix(" ") { s = s.dropLast() }
        // \d+(\.\d+)?
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count),
              parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let value = Double(s) else { throw bad }
        let bytes = value * multiplier
        guard bytes < 9.2e18 else {
            throw CtrError.usage("invalid \(flag) \"\(text)\": too large")
        }
        return Int64(bytes)
    }

    /// `--pids-limit`: a positive number, or 0 / -1 for unlimited (returns nil).
    public static func parsePidsLimit(_ text: String) throws -> Int64? {
        guard let n = Int64(text.trimmingCharacters(in: .whitespaces)), n >= -1 else {
            throw CtrError.usage("invalid --pids-limit \"\(text)\": expected a positive number of processes, or 0 or -1 for unlimited")
        }
        return n > 0 ? n : nil
    }

    /// `--cpus`: a decimal number of CPUs, greater than 0 (at least 0.01, the kernel's minimum
    /// quota of 1 ms per 100 ms) and at most the number of CPUs.
    public static func parseCPUs(_ text: String, cpuCount: Int = ResourceLimits.onlineCPUs()) throws -> Double {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty, t.allSatisfy({ "0123456789.eE+-".contains($0) }), let v = Double(t), v.isFinite else {
            throw CtrError.usage("invalid --cpus \"\(text)\": expected a number of CPUs such as 0.5 or 2")
        }
        guard v > 0 else {
            throw CtrError.usage("invalid --cpus \"\(text)\": must be greater than 0")
        }
        guard v >= 0.01 && v <= Double(cpuCount) else {
            throw CtrError.usage("invalid --cpus \"\(text)\": the range of CPUs is from 0.01 to \(cpuCount).00, as there \(cpuCount == 1 ? "is only 1 CPU" : "are only \(cpuCount) CPUs") available")
        }
        return v
    }

    /// The number of online CPUs (the bound for `--cpus`).
    public static func onlineCPUs() -> Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? n : 1
    }

    /// "256m", "1g", "512k" or plain bytes, the inverse of `parseMemory` for whole units.
    public static func formatBytes(_ n: Int64) -> String {
        if n < 0 { return "\(n)" }
        for (unit, size) in [("p", Int64(1) << 50), ("t", Int64(1) << 40), ("g", Int64(1) << 30), ("m", Int64(1) << 20), ("k", Int64(1) << 10)]
        where n >= size && n % size == 0 {
            return "\(n / size)\(unit)"
        }
        return "\(n)"
    }

    /// The flags (with values) that need `controller`, e.g. ["--memory 256m", "--memory-swap 1g"].
    func flags(for controller: String) -> [String] {
        switch controller {
        case "memory":
            var f: [String] = []
            if let memory { f.append("--memory \(Self.formatBytes(memory))") }
            if let memorySwap { f.append("--memory-swap \(Self.formatBytes(memorySwap))") }
            return f
        case "pids": return pids.map { ["--pids-limit \($0)"] } ?? []
        case "cpu": return cpus.map { ["--cpus \(formatCPUs($0))"] } ?? []
        default: return []
        }
    }
}

private func formatCPUs(_ v: Double) -> String {
    v == v.rounded() ? String(Int64(v)) : String(v)
}

// MARK: - Who and what we probe

/// The user ctr acts for: whose write access decides where limits can go.
public struct CgroupUser: Equatable, Sendable, CustomStringConvertible {
    public var uid: uid_t
    public var gid: gid_t
    /// Primary and supplementary groups.
    public var groups: [gid_t]
    public var name: String

    public init(uid: uid_t, gid: gid_t, groups: [gid_t], name: String) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.name = name
    }

    public var isRoot: Bool { uid == 0 }
    public var description: String { name }

    /// The user running this process.
    public static var current: CgroupUser {
        let uid = geteuid(), gid = getegid()
        var groups = [gid]
        let n = getgroups(0, nil)
        if n > 0 {
            var buf = [gid_t](repeating: 0, count: Int(n))
            let got = getgroups(n, &buf)
            if got > 0 { groups += buf.prefix(Int(got)) }
        }
        return CgroupUser(uid: uid, gid: gid, groups: Array(Set(groups)).sorted(),
                          name: userName(uid) ?? "uid \(uid)")
    }

    /// A user from the password database, with its groups (nil if unknown).
    public static func lookup(_ name: String) -> CgroupUser? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &pw, &buf, buf.count, &result) == 0, result != nil else { return nil }
        let uid = pw.pw_uid, gid = pw.pw_gid
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, gid, &groups, &count)
        }
        let all = Set([gid] + groups.prefix(Int(max(count, 0))))
        return CgroupUser(uid: uid, gid: gid, groups: all.sorted(), name: name)
    }

    private static func userName(_ uid: uid_t) -> String? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil, let n = pw.pw_name else { return nil }
        return String(cString: n)
    }
}

/// What `CgroupSupport.detect` looks at. `live()` reads this machine; tests inject other hosts
/// (or this machine's files judged for another user).
public struct CgroupProbe: Sendable {
    /// Text of /proc/self/mounts.
    public var mounts: String
    /// Text of /proc/self/cgroup.
    public var selfCgroup: String
    public var user: CgroupUser
    /// Contents of a file, nil if it cannot be read.
    public var readFile: @Sendable (String) -> String?
    /// Whether `user` may write (create entries in) this file or directory.
    public var isWritable: @Sendable (String) -> Bool
    public var exists: @Sendable (String) -> Bool

    public init(mounts: String, selfCgroup: String, user: CgroupUser,
                readFile: @escaping @Sendable (String) -> String?,
                isWritable: @escaping @Sendable (String) -> Bool,
                exists: @escaping @Sendable (String) -> Bool) {
        self.mounts = mounts
        self.selfCgroup = selfCgroup
        self.user = user
        self.readFile = readFile
        self.isWritable = isWritable
        self.exists = exists
    }

    /// This machine as seen by this process; with `user`, this machine's files judged by their
    /// owner/group/mode bits for that user (this process's own cgroup is still the one used).
    public static func live(as user: CgroupUser? = nil) -> CgroupProbe {
        let me = CgroupUser.current
        let writable: @Sendable (String) -> Bool
        if let user, user.uid != me.uid {
            writable = { CgFS.modeAllowsWrite($0, for: user) }
        } else {
            writable = { access($0, W_OK) == 0 }
        }
        return CgroupProbe(mounts: CgFS.read("/proc/self/mounts") ?? "",
                           selfCgroup: CgFS.read("/proc/self/cgroup") ?? "",
                           user: user ?? me,
                           readFile: { CgFS.read($0) },
                           isWritable: writable,
                           exists: { access($0, F_OK) == 0 })
    }
}

// MARK: - Detection

/// What this host's cgroups allow ctr (as `user`) to do.
public struct CgroupSupport: Equatable, Sendable {
    public enum Mode: String, Sendable {
        /// Pure cgroup v2 (the unified hierarchy holds the controllers).
        case unified = "v2"
        /// cgroup v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
        case hybrid
        /// cgroup v1 only.
        case legacy = "v1"
        /// No cgroup filesystem mounted.
        case none
    }

    /// Where one controller's limits are written.
    public enum Backend: Equatable, Sendable, CustomStringConvertible {
        /// In cgroup v2: the container's cgroup is `<parent>/ctr-<name>`.
        case v2(parent: String)
        /// In the cgroup v1 hierarchy mounted here: the container's cgroup is `<mount>/ctr/<name>`.
        case v1(mount: String)
        public var description: String {
            switch self {
            case .v2(let p): return "cgroup v2 (\(p))"
            case .v1(let m): return "cgroup v1 (\(m))"
            }
        }
    }

    /// The controllers ctr's limits use.
    public static let limitControllers = ["memory", "pids", "cpu"]
    /// The leaf the processes of a delegated cgroup are moved into before enabling controllers.
    public static let evacuationLeaf = "init"

    public var mode: Mode
    public var user: CgroupUser
    /// Where cgroup2 is mounted (nil: not mounted).
    public var unifiedMount: String?
    /// Controllers the cgroup2 hierarchy has (cgroup.controllers at its mount root).
    public var unifiedControllers: [String]
    /// This process's cgroup v2 path ("0::/path" in /proc/self/cgroup).
    public var ownCgroup: String?
    /// The v2 cgroup under which ctr puts containers: the mount root for root (containers in
    /// `<base>/ctr/ctr-<name>`), the own cgroup for a user (containers in `<base>/ctr-<name>`).
    public var v2Base: String?
    /// Where containers' v2 cgroups are created (`<base>/ctr` for root, `<base>` for a user).
    public var v2Parent: String?
    /// Whether `user` can create cgroups in `v2Base`, enable controllers and move processes there.
    public var v2Writable: Bool
    /// Controllers `v2Base` can give its children (its cgroup.controllers).
    public var v2Available: [String]
    /// Controllers already enabled for `v2Base`'s children (its cgroup.subtree_control).
    public var v2Enabled: [String]
    /// `v2Base` is not the root cgroup and has processes of its own, so enabling controllers
    /// there first moves them into `<v2Base>/init`.
    public var v2HasOwnProcesses: Bool
    /// cgroup v1 controller → mount point of its hierarchy (e.g. "cpu" → "/sys/fs/cgroup/cpu,cpuacct").
    public var v1Mounts: [String: String]
    /// v1 controllers whose hierarchy `user` can write (create `ctr/<name>` in).
    public var v1Writable: [String]

    /// Probe this machine for the current user.
    public static func detect() -> CgroupSupport { detect(probe: .live()) }

    public static func detect(probe: CgroupProbe) -> CgroupSupport {
        let user = probe.user
        var v2Mounts: [String] = []
        var v1: [String: String] = [:]
        var anyV1 = false
        var readOnly: Set<String> = []
        for line in probe.mounts.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 4 else { continue }
            let point = CgFS.unescapeMount(String(f[1]))
            let opts = f[3].split(separator: ",").map(String.init)
            if opts.contains("ro") { readOnly.insert(point) }
            if f[2] == "cgroup2" {
                v2Mounts.append(point)
            } else if f[2] == "cgroup" {
                anyV1 = true
                for o in opts where knownV1Controllers.contains(o) && v1[o] == nil { v1[o] = point }
            }
        }
        let unified = v2Mounts.first(where: { $0 == "/sys/fs/cgroup" })
            ?? v2Mounts.first(where: { $0 == "/sys/fs/cgroup/unified" }) ?? v2Mounts.first
        let mode: Mode = unified != nil ? (anyV1 ? .hybrid : .unified) : (anyV1 ? .legacy : .none)
        let words: (String?) -> [String] = { $0?.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) ?? [] }

        var s = CgroupSupport(mode: mode, user: user, unifiedMount: unified, unifiedControllers: [],
                              ownCgroup: nil, v2Base: nil, v2Parent: nil, v2Writable: false, v2Available: [],
                              v2Enabled: [], v2HasOwnProcesses: false, v1Mounts: v1, v1Writable: [])
        for line in probe.selfCgroup.split(separator: "\n") where line.hasPrefix("0::") {
            let p = String(line.dropFirst(3))
            if p.hasPrefix("/") && !p.split(separator: "/").contains("..") { s.ownCgroup = p }
        }
        if let unified {
            s.unifiedControllers = words(probe.readFile(unified + "/cgroup.controllers"))
            let delegated: (String) -> Bool = { dir in
                !readOnly.contains(unified) && probe.isWritable(dir)
                    && probe.isWritable(dir + "/cgroup.procs") && probe.isWritable(dir + "/cgroup.subtree_control")
            }
            // Candidates: (root) the hierarchy root with containers under ctr/; the own cgroup,
            // or its parent when ctr already moved this process into the parent's init leaf.
            var candidates: [(base: String, parent: String)] = []
            if user.isRoot { candidates.append((unified, unified + "/ctr")) }
            if let own = s.ownCgroup {
                var base = CgFS.join(unified, own)
                if own != "/", (own as NSString).lastPathComponent == evacuationLeaf {
                    let up = (base as NSString).deletingLastPathComponent
                    if up.count >= unified.count, delegated(up) { base = up }
                }
                if !candidates.contains(where: { $0.base == base }) { candidates.append((base, base)) }
            }
            if let pick = candidates.first(where: { delegated($0.base) }) ?? candidates.last {
                s.v2Base = pick.base
                s.v2Parent = pick.parent
                s.v2Writable = delegated(pick.base)
                s.v2Available = words(probe.readFile(pick.base + "/cgroup.controllers"))
                s.v2Enabled = words(probe.readFile(pick.base + "/cgroup.subtree_control"))
                // the root cgroup has no cgroup.events and may have processes
                if probe.exists(pick.base + "/cgroup.events") {
                    s.v2HasOwnProcesses = !words(probe.readFile(pick.base + "/cgroup.procs")).isEmpty
                }
            }
        }
        for (c, m) in v1 {
            let ctr = m + "/ctr"
            let target = probe.exists(ctr) ? ctr : m
            if !readOnly.contains(m) && probe.isWritable(target) { s.v1Writable.append(c) }
        }
        s.v1Writable.sort()
        return s
    }

    static let knownV1Controllers: Set<String> = [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio",
        "perf_event", "hugetlb", "pids", "rdma", "misc",
    ]

    /// Where `controller`'s limits would be written, nil when they cannot be applied.
    public func backend(for controller: String) -> Backend? {
        if v2Writable, let v2Parent, v2Available.contains(controller) { return .v2(parent: v2Parent) }
        if let m = v1Mounts[controller], v1Writable.contains(controller) { return .v1(mount: m) }
        return nil
    }

    /// The one-line error for the limits that cannot be applied here, nil when all can.
    public func unavailableError(for limits: ResourceLimits) -> CtrError? {
        let missing = limits.controllers.filter { backend(for: $0) == nil }
        guard !missing.isEmpty else { return nil }
        var groups: [(controllers: [String], why: String, fix: String)] = []
        for c in missing {
            let (why, fix) = reason(for: c)
            if let i = groups.firstIndex(where: { $0.why == why && $0.fix == fix }) {
                groups[i].controllers.append(c)
            } else {
                groups.append(([c], why, fix))
            }
        }
        let parts = groups.map { g -> String in
            let flags = g.controllers.flatMap { limits.flags(for: $0) }
            return "\(Self.list(flags)) \(flags.count == 1 ? "needs" : "need") \(need(g.controllers)); \(g.why); \(g.fix)"
        }
        return CtrError.unsupported(parts.joined(separator: "; also "))
    }

    /// "a cgroup v2 subtree delegated to alice with the memory controller" / "the memory cgroup controller".
    private func need(_ cs: [String]) -> String {
        let noun = cs.count == 1 ? "controller" : "controllers"
        if user.isRoot { return "the \(Self.list(cs)) cgroup \(noun)" }
        return "a cgroup v2 subtree delegated to \(user.name) with the \(Self.list(cs)) \(noun)"
    }

    /// Why `controller` is unavailable and what would make it work.
    private func reason(for controller: String) -> (why: String, fix: String) {
        let unifiedHas = unifiedControllers.isEmpty ? "no controllers" : "only " + unifiedControllers.joined(separator: ", ")
        if user.isRoot {
            let fix = "mount /sys/fs/cgroup read-write with the controller (in cgroup v2, or as a cgroup v1 hierarchy)"
            if let m = v1Mounts[controller] { return ("the cgroup v1 hierarchy \(m) is not writable", fix) }
            if let unified = unifiedMount, unifiedControllers.contains(controller) {
                if !v2Writable { return ("the cgroup2 hierarchy at \(unified) is not writable (read-only mount?)", fix) }
                return ("cgroup2 at \(v2Base ?? unified) cannot give the \(controller) controller to its children", fix)
            }
            switch mode {
            case .none: return ("this host has no cgroup filesystem mounted", fix)
            case .legacy: return ("no cgroup v1 hierarchy has the \(controller) controller", fix)
            case .hybrid, .unified:
                return ("\(controller) is neither a mounted cgroup v1 hierarchy nor in cgroup2 at \(unifiedMount ?? "?"), which has \(unifiedHas)", fix)
            }
        }
        let bootV2 = "run as root, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate it (systemd Delegate=yes)"
        if unifiedMount != nil, unifiedControllers.contains(controller) {
            // the controller lives in cgroup v2: it is a matter of delegation
            guard let own = ownCgroup, let base = v2Base else {
                return ("this process's cgroup v2 path is unknown (no \"0::\" line in /proc/self/cgroup)", "run as root")
            }
            if !v2Writable {
                return ("this process's cgroup \(own) is not delegated to \(user.name) (not writable)",
                        "run as root, or start ctr in a delegated cgroup, e.g. systemd-run --user --scope -p Delegate=yes ctr run …")
            }
            let offers = v2Available.isEmpty ? "no controllers" : "only " + v2Available.joined(separator: ", ")
            return ("the delegated cgroup \(base) offers \(offers)",
                    "run as root, or delegate the controllers to \(user.name) (systemd: Delegate=memory pids cpu, e.g. for user@.service)")
        }
        switch mode {
        case .none:
            return ("this host has no cgroup filesystem mounted", bootV2)
        case .legacy:
            return ("this host has only cgroup v1" + (v1Mounts[controller] == nil ? ", without the \(controller) controller" : ", which is writable only by root"), bootV2)
        case .hybrid:
            let v1Part = v1Mounts[controller] != nil ? ", and cgroup v1 is writable only by root" : ""
            return ("this host has cgroup v1 controllers (hybrid) and cgroup2 at \(unifiedMount ?? "?") offers \(unifiedHas)" + v1Part, bootV2)
        case .unified:
            return ("cgroup2 at \(unifiedMount ?? "?") has no \(controller) controller (it has \(unifiedHas.replacingOccurrences(of: "only ", with: "")))",
                    "run on a kernel with the \(controller) controller")
        }
    }

    static func list(_ items: [String]) -> String {
        switch items.count {
        case 0: return ""
        case 1: return items[0]
        default: return items.dropLast().joined(separator: ", ") + " and " + items.last!
        }
    }

    /// Lines for `ctr info`.
    public var summary: [String] {
        var lines: [String] = []
        let v1List = v1Mounts.keys.sorted().joined(separator: ", ")
        let unifiedHas = unifiedControllers.isEmpty ? "no controllers" : unifiedControllers.joined(separator: ", ")
        switch mode {
        case .unified: lines.append("cgroup: v2 (cgroup2 at \(unifiedMount!) has: \(unifiedHas))")
        case .hybrid: lines.append("cgroup: hybrid (v1 controllers: \(v1List); cgroup2 at \(unifiedMount!) has: \(unifiedHas))")
        case .legacy: lines.append("cgroup: v1 (controllers: \(v1List))")
        case .none: lines.append("cgroup: none (no cgroup filesystem mounted)")
        }
        if unifiedMount != nil {
            var l = "cgroup v2: this process is in \(ownCgroup ?? "an unknown cgroup")"
            if let base = v2Base {
                if v2Writable {
                    l += "; ctr cgroups go under \(v2Parent ?? base) (offered: \(v2Available.isEmpty ? "none" : v2Available.joined(separator: ", "))"
                    l += "; enabled: \(v2Enabled.isEmpty ? "none" : v2Enabled.joined(separator: ", ")))"
                    if v2HasOwnProcesses { l += "; its processes move to \(base)/\(Self.evacuationLeaf) when controllers are enabled" }
                } else {
                    l += "; \(base) is not writable by \(user.name)"
                }
            }
            lines.append(l)
        }
        let who = user.isRoot ? "as root" : "to \(user.name)"
        var available: [String: [String]] = [:]
        var order: [String] = []
        var missing: [String] = []
        for c in Self.limitControllers {
            if let b = backend(for: c) {
                let key: String
                switch b {
                case .v2(let p): key = "cgroup v2 (\(p))"
                case .v1: key = "cgroup v1"
                }
                if available[key] == nil { order.append(key) }
                available[key, default: []].append(c)
            } else {
                missing.append(c)
            }
        }
        var parts = order.map { "\(available[$0]!.joined(separator: ", ")) available \(who) via \($0)" }
        if !missing.isEmpty {
            var why: [String] = []
            for c in missing {
                let w = reason(for: c).why
                if !why.contains(w) { why.append(w) }
            }
            let what = user.isRoot ? "no usable cgroup with \(missing.joined(separator: ", "))"
                                   : "no delegated cgroup v2 subtree with \(missing.joined(separator: ", "))"
            parts.append("unavailable \(who): \(what) (\(why.joined(separator: "; ")))")
        }
        lines.append("limits: " + parts.joined(separator: "; "))
        return lines
    }
}

// MARK: - Devices

/// The devices a container run as root without a user namespace may open, as runc's default
/// list: its own /dev (null, zero, full, random, urandom, tty, console, ptmx, pts), and mknod of
/// anything (which needs CAP_MKNOD, not in the default set) but no open of what it makes.
/// The root file system and volumes are mounted nodev as well: this is the second line.
enum DeviceRules {
    static let allow = ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]

    /// cgroup v1: deny everything, then allow the list.
    static func write(into dir: String) throws {
        for (file, rule) in [("devices.deny", "a")] + allow.map({ ("devices.allow", $0) }) {
            let e = CgFS.write(dir + "/" + file, rule)
            if e != 0 { throw CtrError.cgroup("cannot restrict the container's devices (\(rule) into \(dir)/\(file)): \(CgFS.strerr(e))") }
        }
    }
}

// MARK: - The container's cgroup

/// The cgroup(s) of one container. Made by `create`; processes join with `add(pid:)`;
/// `remove()` kills what is left and deletes the cgroups.
///
/// With empty limits `create` returns an inactive handle: no cgroup, `paths` empty, `add` and
/// `remove` do nothing, the read-back functions return nil.
public final class CgroupHandle: @unchecked Sendable {
    public let name: String
    public let limits: ResourceLimits
    /// The container's cgroup in the unified hierarchy (limits and/or tracking), if any.
    public let v2Path: String?
    /// controller → directory holding its limit files.
    let controllerDirs: [String: String]
    /// Every cgroup directory of the container (v2 first), each with a cgroup.procs.
    public let paths: [String]

    private let lock = NSLock()
    private var removed = false

    init(name: String, limits: ResourceLimits, v2Path: String?, controllerDirs: [String: String]) {
        self.name = name
        self.limits = limits
        self.v2Path = v2Path
        self.controllerDirs = controllerDirs
        var p: [String] = []
        if let v2Path { p.append(v2Path) }
        for c in ["memory", "pids", "cpu", "devices"] {
            if let d = controllerDirs[c], !p.contains(d) { p.append(d) }
        }
        self.paths = p
    }

    /// Whether this handle has cgroups (false for empty limits).
    public var isActive: Bool { !paths.isEmpty }

    /// The cgroup.procs files a process must be written to (for a child that joins itself).
    public var procsFiles: [String] { paths.map { $0 + "/cgroup.procs" } }

    /// Create the container's cgroups and write `limits`. Throws a one-line `CtrError` when a
    /// limit cannot be applied (nothing is left behind then). Empty limits: an inactive handle.
    ///
    /// `devices`: also a cgroup v1 devices cgroup with runc's default allow list, where the
    /// hierarchy is writable (root); nothing where it is not (see `DeviceRules`).
    public static func create(name: String, limits: ResourceLimits, devices: Bool = false,
                              support: @autoclosure () -> CgroupSupport = .detect()) throws -> CgroupHandle {
        if limits.isEmpty && !devices { return CgroupHandle(name: name, limits: limits, v2Path: nil, controllerDirs: [:]) }
        let support = support()
        if limits.isEmpty {
            guard case .v1 = support.backend(for: "devices") else {
                return CgroupHandle(name: name, limits: limits, v2Path: nil, controllerDirs: [:])
            }
        }
        guard let first = name.first, first.isASCII, first.isLetter || first.isNumber, name.count <= 128,
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }) else {
            throw CtrError.usage("invalid container name \"\(name)\" for a cgroup: use letters, digits, '_', '.', '-'")
        }
        if let e = support.unavailableError(for: limits) { throw e }

        var created: [String] = []
        do {
            var dirs: [String: String] = [:]
            var v2Path: String?
            let needed = limits.controllers
            let v2Controllers = needed.filter { if case .v2 = support.backend(for: $0) { return true } else { return false } }
            if !v2Controllers.isEmpty {
                v2Path = try makeV2Cgroup(name: name, controllers: v2Controllers, support: support, created: &created)
                for c in v2Controllers { dirs[c] = v2Path }
            } else if support.mode == .hybrid, support.v2Writable {
                // tracking only, for cgroup.kill; not needed for any limit
                v2Path = try? makeV2Cgroup(name: name, controllers: [], support: support, created: &created)
            }
            var byMount: [String: String] = [:]
            var v1Needed = needed
            if devices, case .v1 = support.backend(for: "devices") { v1Needed.append("devices") }
            for c in v1Needed {
                guard case .v1(let m) = support.backend(for: c) else { continue }
                if let d = byMount[m] { dirs[c] = d; continue }
                try CgFS.mkdirIfMissing(m + "/ctr")
                let d = m + "/ctr/" + name
                try makeLeaf(d, created: &created)
                byMount[m] = d
                dirs[c] = d
            }
            let handle = CgroupHandle(name: name, limits: limits, v2Path: v2Path, controllerDirs: dirs)
            try handle.writeLimits()
            if let d = dirs["devices"] { try DeviceRules.write(into: d) }
            return handle
        } catch {
            for d in created.reversed() { _ = rmdir(d) }
            throw error
        }
    }

    private static func makeV2Cgroup(name: String, controllers: [String], support: CgroupSupport,
                                     created: inout [String]) throws -> String {
        guard let base = support.v2Base, let parent = support.v2Parent else { throw CtrError.unsupported("no cgroup v2 place for ctr") }
        try enableControllers(controllers, in: base, evacuateTo: CgroupSupport.evacuationLeaf)
        if parent != base {
            try CgFS.mkdirIfMissing(parent)
            try enableControllers(controllers, in: parent, evacuateTo: nil)
        }
        let leaf = parent + "/ctr-" + name
        try makeLeaf(leaf, created: &created)
        return leaf
    }

    /// mkdir a container cgroup; a stale one (no processes) from an earlier run is reused.
    private static func makeLeaf(_ dir: String, created: inout [String]) throws {
        if mkdir(dir, 0o755) == 0 { created.append(dir); return }
        let e = errno
        if e == EEXIST {
            let procs = CgFS.read(dir + "/cgroup.procs") ?? ""
            if procs.split(separator: "\n").isEmpty { created.append(dir); return }
            throw CtrError.conflict("cgroup \(dir) already exists and has processes: is a container with this name running?")
        }
        throw CtrError.cgroup("cannot create cgroup \(dir): \(CgFS.strerr(e))")
    }

    /// Enable `controllers` for the children of the v2 cgroup `dir`. cgroup v2 refuses (EBUSY)
    /// while `dir` has processes of its own (and is not the root); with `evacuateTo`, those
    /// processes are first moved into `dir/<evacuateTo>`, as dockerd-rootless and dind do.
    static func enableControllers(_ controllers: [String], in dir: String, evacuateTo leaf: String?) throws {
        var evacuated = false
        for c in controllers {
            let enabled = (CgFS.read(dir + "/cgroup.subtree_control") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
            if enabled.contains(Substring(c)) { continue }
            var e = CgFS.write(dir + "/cgroup.subtree_control", "+" + c)
            if e == EBUSY, let leaf, !evacuated {
                try evacuate(dir, into: dir + "/" + leaf)
                evacuated = true
                e = CgFS.write(dir + "/cgroup.subtree_control", "+" + c)
            }
            if e != 0 {
                let hint = e == EBUSY ? " (the cgroup has processes of its own)" : ""
                throw CtrError.cgroup("cannot enable the \(c) controller in \(dir)/cgroup.subtree_control: \(CgFS.strerr(e))\(hint)")
            }
        }
    }

    /// Move every process of the v2 cgroup `dir` into `leaf` (created if needed).
    static func evacuate(_ dir: String, into leaf: String) throws {
        try CgFS.mkdirIfMissing(leaf)
        for _ in 0..<20 {
            let pids = CgFS.pids(dir + "/cgroup.procs")
            if pids.isEmpty { return }
            for p in pids {
                let e = CgFS.write(leaf + "/cgroup.procs", String(p))
                if e != 0 && e != ESRCH {
                    throw CtrError.cgroup("cannot move process \(p) from \(dir) into \(leaf): \(CgFS.strerr(e))")
                }
            }
        }
        throw CtrError.cgroup("cannot empty \(dir): processes keep appearing")
    }

    private func writeLimits() throws {
        func put(_ controller: String, _ file: String, _ value: String, flag: String) throws {
            guard let dir = controllerDirs[controller] else { throw CtrError.unsupported("\(flag): no \(controller) cgroup") }
            let e = CgFS.write(dir + "/" + file, value)
            if e != 0 {
                throw CtrError.cgroup("cannot set \(flag) (\(value) into \(dir)/\(file)): \(CgFS.strerr(e))")
            }
        }
        let v2 = { (c: String) in self.controllerDirs[c] != nil && self.controllerDirs[c] == self.v2Path }
        if let mem = limits.memory {
            let flag = "--memory \(ResourceLimits.formatBytes(mem))"
            let swapFlag = limits.memorySwap.map { "--memory-swap \(ResourceLimits.formatBytes($0))" }
            let dir = controllerDirs["memory"]!
            if v2("memory") {
                try put("memory", "memory.max", String(mem), flag: flag)
                let hasSwap = access(dir + "/memory.swap.max", F_OK) == 0
                if let swap = limits.memorySwap {
                    guard hasSwap else {
                        throw CtrError.unsupported("\(swapFlag!) needs swap accounting, but \(dir) has no memory.swap.max; boot with swapaccount=1 or leave --memory-swap out")
                    }
                    try put("memory", "memory.swap.max", swap < 0 ? "max" : String(swap - mem), flag: swapFlag!)
                } else if hasSwap {
                    try put("memory", "memory.swap.max", String(mem), flag: flag)
                }
            } else {
                let hasSwap = access(dir + "/memory.memsw.limit_in_bytes", F_OK) == 0
                // memsw must stay >= limit_in_bytes at every step: lift it first (a reused cgroup)
                if hasSwap { try put("memory", "memory.memsw.limit_in_bytes", "-1", flag: flag) }
                try put("memory", "memory.limit_in_bytes", String(mem), flag: flag)
                if let swap = limits.memorySwap {
                    guard hasSwap else {
                        throw CtrError.unsupported("\(swapFlag!) needs swap accounting, but \(dir) has no memory.memsw.limit_in_bytes; boot with swapaccount=1 or leave --memory-swap out")
                    }
                    try put("memory", "memory.memsw.limit_in_bytes", swap < 0 ? "-1" : String(swap), flag: swapFlag!)
                } else if hasSwap {
                    try put("memory", "memory.memsw.limit_in_bytes", String(mem * 2), flag: flag)
                }
            }
        }
        if let pids = limits.pids {
            try put("pids", "pids.max", String(pids), flag: "--pids-limit \(pids)")
        }
        if let quota = limits.cpuQuota, let cpus = limits.cpus {
            let flag = "--cpus \(formatCPUs(cpus))"
            if v2("cpu") {
                try put("cpu", "cpu.max", "\(quota) \(ResourceLimits.cpuPeriod)", flag: flag)
            } else {
                try put("cpu", "cpu.cfs_period_us", String(ResourceLimits.cpuPeriod), flag: flag)
                try put("cpu", "cpu.cfs_quota_us", String(quota), flag: flag)
            }
        }
    }

    /// Move process `pid` into the container's cgroup in every hierarchy.
    public func add(pid: pid_t) throws {
        for dir in paths {
            let e = CgFS.write(dir + "/cgroup.procs", String(pid))
            if e != 0 { throw CtrError.cgroup("cannot move process \(pid) into cgroup \(dir): \(CgFS.strerr(e))") }
        }
    }

    /// Kill whatever still runs in the container's cgroups (cgroup.kill on v2 where the kernel
    /// has it, SIGKILL to each listed process otherwise) and delete them. Idempotent. Throws
    /// when a cgroup cannot be removed (processes that do not die within 5 s).
    public func remove() throws {
        lock.lock()
        defer { lock.unlock() }
        if removed || paths.isEmpty { return }
        let me = getpid()
        var killedViaKill = false
        if let v2Path, access(v2Path + "/cgroup.kill", F_OK) == 0 {
            let e = CgFS.write(v2Path + "/cgroup.kill", "1")
            killedViaKill = e == 0 || e == ENOENT
        }
        let deadline = Date().addingTimeInterval(5)
        var problems: [String] = []
        for dir in paths {
            while true {
                let pids = CgFS.pids(dir + "/cgroup.procs").filter { $0 != me }
                if pids.isEmpty { break }
                if !(killedViaKill && dir == v2Path) { for p in pids { kill(p, SIGKILL) } }
                if Date() > deadline { break }
                usleep(10_000)
            }
            while true {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                let e = errno
                if e != EBUSY || Date() > deadline {
                    problems.append("\(dir): \(CgFS.strerr(e))")
                    break
                }
                usleep(10_000)
            }
        }
        if !problems.isEmpty {
            throw CtrError.cgroup("cannot remove cgroup " + problems.joined(separator: "; "))
        }
        removed = true
    }

    // MARK: Read-back

    /// The memory limit in bytes (nil: unlimited or no memory cgroup).
    public func memoryLimit() -> Int64? {
        guard let dir = controllerDirs["memory"] else { return nil }
        return dir == v2Path ? CgFS.number(dir + "/memory.max") : CgFS.number(dir + "/memory.limit_in_bytes")
    }

    /// Memory + swap in bytes, Docker's `--memory-swap` meaning (nil: unlimited or unknown).
    public func memorySwapLimit() -> Int64? {
        guard let dir = controllerDirs["memory"] else { return nil }
        if dir == v2Path {
            guard let m = CgFS.number(dir + "/memory.max"), let s = CgFS.number(dir + "/memory.swap.max") else { return nil }
            return m + s
        }
        return CgFS.number(dir + "/memory.memsw.limit_in_bytes")
    }

    /// The pids limit (nil: unlimited or no pids cgroup).
    public func pidsLimit() -> Int64? {
        guard let dir = controllerDirs["pids"] else { return nil }
        return CgFS.number(dir + "/pids.max")
    }

    /// The CPU limit in CPUs, quota / period (nil: unlimited or no cpu cgroup).
    public func cpuLimit() -> Double? {
        guard let dir = controllerDirs["cpu"] else { return nil }
        if dir == v2Path {
            let f = (CgFS.read(dir + "/cpu.max") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
            guard f.count == 2, let q = Double(f[0]), let p = Double(f[1]), p > 0 else { return nil }
            return q / p
        }
        guard let q = CgFS.number(dir + "/cpu.cfs_quota_us"), let p = CgFS.number(dir + "/cpu.cfs_period_us"), p > 0 else { return nil }
        return Double(q) / Double(p)
    }

    /// The processes now in the container's cgroup (from the first hierarchy).
    public func processes() -> [pid_t] {
        guard let dir = paths.first else { return [] }
        return CgFS.pids(dir + "/cgroup.procs")
    }
}

// MARK: - File helpers

enum CgFS {
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            data += buf[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Write `value` in one write(2); 0 or errno.
    static func write(_ path: String, _ value: String) -> Int32 {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { return errno }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        while true {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n == bytes.count { return 0 }
            if n < 0 && errno == EINTR { continue }
            return n < 0 ? errno : EIO
        }
    }

    static func mkdirIfMissing(_ path: String) throws {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        throw CtrError.cgroup("cannot create cgroup \(path): \(strerr(errno))")
    }

    static func pids(_ procsFile: String) -> [pid_t] {
        (read(procsFile) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    /// A limit file's number; nil for "max", -1 and v1's "unlimited" (≥ 2^62).
    static func number(_ path: String) -> Int64? {
        guard let t = read(path)?.trimmingCharacters(in: .whitespacesAndNewlines), let n = Int64(t), n >= 0,
              n < (Int64(1) << 62) else { return nil }
        return n
    }

    static func strerr(_ e: Int32) -> String { String(cString: strerror(e)) }

    static func join(_ mount: String, _ path: String) -> String {
        path == "/" ? mount : mount + path
    }

    /// /proc/mounts escapes space, tab, newline and backslash as \ooo.
    static func unescapeMount(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 4 <= b.count,
               let v = UInt8(String(decoding: b[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `user` may write `path`, judged by owner/group/mode bits and read-only mounts
    /// (root: anything on a writable mount). For checking on behalf of another user.
    static func modeAllowsWrite(_ path: String, for user: CgroupUser) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        var vfs = statvfs()
        if statvfs(path, &vfs) == 0, vfs.f_flag & 1 /* ST_RDONLY */ != 0 { return false }
        if user.uid == 0 { return true }
        if st.st_uid == user.uid { return st.st_mode & S_IWUSR != 0 }
        if user.groups.contains(st.st_gid) { return st.st_mode & S_IWGRP != 0 }
        return st.st_mode & S_IWOTH != 0
    }
}
