import CSysShims
import Errors
import Foundation
import HostOS

/// What this process may do to sandbox a command, probed (see csys_probe.c): each field is nil
/// when it worked, else the errno that refused it (-1: not tried, an earlier step failed).
public struct SandboxFacts: Sendable, Equatable {
    public struct Namespaces: Sendable, Equatable {
        public var tried = false
        public var userns: Int32?, idmap: Int32?, capsInUserns: Int32?
        public var mountns: Int32?, tmpfs: Int32?, mknod: Int32?, overlay: Int32?
        public var uts: Int32?, hostname: Int32?, ipcns: Int32?, cgroupns: Int32?
        public var netns: Int32?, sysfs: Int32?, pidns: Int32?, procfs: Int32?
        /// overlayfs with its upper dir where the store is (refused when that is an overlayfs,
        /// a CI container's own root); nil also when not probed
        public var overlayOnStore: Int32?
        public init() {}

        /// Everything a container needs at all: a mount namespace where overlayfs mounts (and
        /// in a user namespace, capabilities there and our own id map), pid, ipc and uts
        /// namespaces.
        public var canContain: Bool {
            tried && userns == nil && idmap == nil && capsInUserns == nil && mountns == nil && tmpfs == nil
                && overlay == nil && pidns == nil && ipcns == nil && uts == nil
        }
        /// What it lacks that the full sandbox has (what `nested` works around), those refused
        /// for the same reason together: "a fresh /proc, a fresh /sys and a hostname of its own
        /// (Operation not permitted)".
        public var lacks: [String] {
            var items: [(String, Int32?)] = []
            if procfs != nil { items.append(("a fresh /proc", procfs)) }
            if netns == nil && sysfs != nil { items.append(("a fresh /sys", sysfs)) }
            if hostname != nil { items.append(("a hostname of its own", hostname)) }
            if netns != nil { items.append(("a network namespace", netns)) }
            if mknod != nil { items.append(("mknod", mknod)) }
            var out: [String] = []
            var done = Set<Int>()
            for (i, item) in items.enumerated() where !done.contains(i) {
                let same = items.indices.filter { !done.contains($0) && items[$0].1 == item.1 }
                same.forEach { done.insert($0) }
                let names = same.map { items[$0].0 }
                let list = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " and " + names.last!
                out.append("\(list) (\(Self.why(item.1)))")
            }
            return out
        }
        static func why(_ e: Int32?) -> String {
            guard let e, e > 0 else { return "not tried" }
            return String(cString: strerror(e))
        }
    }

    /// In a new user namespace of our own.
    public var nested = Namespaces()
    /// As we are, without one (root only).
    public var direct = Namespaces()
    /// chroot(2) as we are (root only): nil worked.
    public var chroot: Int32?
    public var uid: UInt32 = 0
    public var capabilities: UInt64 = 0
    public var seccompFiltered = false
    public var maxUserNamespaces: Int = -1
    public var inUserNamespace = false
    /// Signs of running inside a container (/.dockerenv, /run/.containerenv, $container,
    /// a user namespace that is not the initial one).
    public var insideContainer = false

    public init() {}

    public var hasSysAdmin: Bool { capabilities & (1 << 21) != 0 }
    public var hasChrootCap: Bool { capabilities & (1 << 18) != 0 }
    public var hasMknodCap: Bool { capabilities & (1 << 27) != 0 }

    /// Probe this process (a few short-lived children, about two milliseconds); `storeDir`: a
    /// directory on the store's filesystem, for the overlay probe there.
    public static func probe(storeDir: String? = nil) -> SandboxFacts {
        var p = csys_sandbox_probe()
        _ = csys_probe_sandbox(&p, storeDir)
        func ns(_ n: csys_ns_probe) -> Namespaces {
            func v(_ x: Int32) -> Int32? { x == 0 ? nil : x }
            var o = Namespaces()
            o.tried = n.tried != 0
            o.userns = v(n.userns); o.idmap = v(n.idmap); o.capsInUserns = v(n.userns_caps)
            o.mountns = v(n.mountns); o.tmpfs = v(n.tmpfs); o.mknod = v(n.mknod); o.overlay = v(n.overlay)
            o.uts = v(n.uts); o.hostname = v(n.hostname); o.ipcns = v(n.ipcns); o.cgroupns = v(n.cgroupns)
            o.netns = v(n.netns); o.sysfs = v(n.sysfs); o.pidns = v(n.pidns); o.procfs = v(n.procfs)
            o.overlayOnStore = n.overlay_store > 0 ? n.overlay_store : nil
            return o
        }
        var f = SandboxFacts()
        f.nested = ns(p.nested)
        f.direct = ns(p.direct)
        // (a user namespace is not part of the direct way)
        f.direct.userns = nil
        f.direct.idmap = nil
        f.direct.capsInUserns = nil
        // -1: not tried, which the two namespace records keep as their `tried`; for chroot it
        // means "not root"
        f.chroot = p.chroot == 0 ? nil : p.chroot
        f.uid = UInt32(bitPattern: Int32(p.uid))
        f.capabilities = p.caps
        f.seccompFiltered = p.seccomp_mode == 2
        f.maxUserNamespaces = p.max_user_namespaces
        f.inUserNamespace = p.in_userns != 0
        f.insideContainer = access("/.dockerenv", F_OK) == 0 || access("/run/.containerenv", F_OK) == 0
            || getenv("container") != nil || f.inUserNamespace
        return f
    }
}

/// How a command is sandboxed, strongest first (see the README's "Building in CI containers").
public enum IsolationLevel: String, Sendable, CaseIterable, CustomStringConvertible {
    /// New user, mount, pid, ipc, uts (and net) namespaces, an overlay root, a fresh /proc and
    /// /sys, seccomp and capabilities: the default on hosts.
    case userns
    /// The same, with what the environment refuses worked around: the /proc and /sys we see
    /// bound instead of fresh ones, the device nodes bound, the hostname kept (a CI container's
    /// masked /proc and seccomp profile); root in a user namespace of its own.
    case nested
    /// No namespace can be made, but we are root with CAP_SYS_CHROOT (Docker's default
    /// container): the step runs chrooted in a real tree, its layer the tree's difference.
    case chroot
    /// Only when asked: the step runs in this container's own root (kaniko's way).
    case container

    public var description: String { rawValue }
}

/// `--isolation`
public enum IsolationRequest: Sendable, Equatable {
    case auto
    case level(IsolationLevel)

    public init(parsing s: String) throws {
        if s == "auto" || s.isEmpty { self = .auto; return }
        guard let l = IsolationLevel(rawValue: s) else {
            throw CtrError.usage("--isolation \(s): expected auto, userns, nested, chroot or container")
        }
        self = .level(l)
    }
}

/// The level a run or a build step gets here, and why not a stronger one.
public struct IsolationDecision: Sendable, Equatable {
    public var level: IsolationLevel
    /// root of a user namespace of its own (nested as root without CAP_SYS_ADMIN): maps
    /// container ids to the same ids of ours.
    public var identityUserns = false
    /// The namespaces to make: with `direct`, as we are (root); else in a new user namespace.
    public var direct = false
    public var bindProc = false
    public var bindSys = false
    public var keepHostname = false
    public var networkNamespace = true
    public var mknod = false
    /// overlayfs cannot take its upper dir where the store is (an overlayfs): a build step runs
    /// on a real tree of the stage, its layer the tree's difference, as at the chroot level
    public var treeRoot = false
    /// What a step will lack, said once in the build log.
    public var lacks: [String] = []
    /// Why each stronger level is refused here.
    public var refused: [String] = []

    public enum Purpose: Sendable { case run, build }

    /// Pure: from the facts, the strongest level allowed (or the one asked for, if possible).
    /// `--isolation container`: only asked for, only as root inside a container.
    static func containerLevel(_ f: SandboxFacts) throws -> IsolationDecision {
        guard f.insideContainer else {
            throw CtrError.unsupported("--isolation container: ctr is not inside a container (it would run RUN steps in this machine's own root)")
        }
        guard f.uid == 0 else {
            throw CtrError.unsupported("--isolation container: needs root in the container (ctr runs as uid \(f.uid)): it replaces the container's files with the image's")
        }
        var c = IsolationDecision(level: .container)
        c.networkNamespace = false
        c.lacks = ["separation from this container: they run in it, over its own root, and see its /proc, /dev and processes"]
        return c
    }

    public static func decide(_ f: SandboxFacts, request: IsolationRequest = .auto, purpose: Purpose) throws -> IsolationDecision {
        if case .level(.container) = request { return try containerLevel(f) }
        var refused: [String] = []
        // namespaces: as we are when root may (CAP_SYS_ADMIN), else in a user namespace
        let rootDirect = f.uid == 0 && f.direct.canContain
        let ns = rootDirect ? f.direct : f.nested
        var d = IsolationDecision(level: .userns)
        if rootDirect || f.nested.canContain {
            d.direct = rootDirect
            d.identityUserns = f.uid == 0 && !rootDirect
            d.mknod = rootDirect && ns.mknod == nil
            d.networkNamespace = ns.netns == nil
            d.bindProc = ns.procfs != nil
            d.bindSys = !d.networkNamespace || ns.sysfs != nil
            d.keepHostname = ns.hostname != nil
            d.treeRoot = ns.overlayOnStore != nil
            let degraded = d.bindProc || (d.networkNamespace && ns.sysfs != nil) || d.keepHostname || !d.networkNamespace
            if degraded {
                d.level = .nested
                var inner = ns
                inner.mknod = nil
                d.lacks = inner.lacks
                refused.append("userns: it needs what nested lacks")
            }
        } else {
            refused.append("userns, nested: \(Self.namespaceRefusal(f))")
            if purpose == .build && f.uid == 0 && f.chroot == nil {
                d.level = .chroot
                d.networkNamespace = false
                d.mknod = f.hasMknodCap
                d.lacks = ["a /proc, /sys or mounts of their own (RUN --mount)", "a network namespace (the host's network)"]
                    + (d.mknod ? [] : ["device nodes (/dev holds plain files; CAP_MKNOD is refused)"])
            } else if purpose == .build {
                refused.append("chroot: " + (f.uid != 0 ? "ctr is not root here (uid \(f.uid))" : "chroot(2) is refused (\(SandboxFacts.Namespaces.why(f.chroot)))"))
                throw CtrError.unsupported("RUN cannot be sandboxed here: \(refused.joined(separator: "; ")). Run the job as root in its container, allow user namespaces (e.g. --security-opt seccomp=unconfined, or podman's default profile), or use a host runner\(f.insideContainer && f.uid == 0 ? "; --isolation container runs RUN in this container itself" : "")")
            } else {
                throw CtrError.unsupported("a container cannot be made here: \(refused.joined(separator: "; ")). Allow user namespaces (e.g. --security-opt seccomp=unconfined, or podman's default profile) or run ctr on a host")
            }
        }
        d.refused = refused
        guard case .level(let want) = request, want != d.level else { return d }
        // asked for a level: a weaker one is fine when possible, a stronger one is an error
        switch want {
        case .userns, .nested:
            if d.level == .chroot || (want == .userns && d.level == .nested) {
                throw CtrError.unsupported("--isolation \(want): not possible here (\(refused.joined(separator: "; ")))")
            }
            return d
        case .chroot:
            guard f.uid == 0, f.chroot == nil else {
                throw CtrError.unsupported("--isolation chroot: needs root with CAP_SYS_CHROOT (\(f.uid != 0 ? "ctr runs as uid \(f.uid)" : SandboxFacts.Namespaces.why(f.chroot)))")
            }
            var c = IsolationDecision(level: .chroot)
            c.networkNamespace = false
            c.mknod = f.hasMknodCap
            c.lacks = ["a /proc, /sys or mounts of their own (RUN --mount)", "a network namespace (the host's network)"]
                + (c.mknod ? [] : ["device nodes (/dev holds plain files; CAP_MKNOD is refused)"])
            c.refused = refused
            return c
        case .container:
            return try containerLevel(f)
        }
    }

    /// Why no namespace can be made, naming the real cause (a seccomp filter is not "user
    /// namespaces disabled").
    static func namespaceRefusal(_ f: SandboxFacts) -> String {
        let e = f.nested.userns ?? f.nested.idmap ?? f.nested.capsInUserns ?? f.nested.mountns ?? f.nested.overlay ?? f.nested.tmpfs ?? 0
        if f.nested.userns != nil {
            if f.maxUserNamespaces == 0 { return "user namespaces are disabled (user.max_user_namespaces is 0)" }
            if f.seccompFiltered && (e == EPERM || e == ENOSYS) {
                return "a seccomp filter refuses new namespaces (\(SandboxFacts.Namespaces.why(e))), as Docker's and Kubernetes' default profiles do without CAP_SYS_ADMIN"
            }
            return "a new user namespace is refused (\(SandboxFacts.Namespaces.why(e)))"
        }
        if f.nested.capsInUserns != nil { return "a new user namespace has no capabilities (an AppArmor restriction, as Ubuntu 24.04's)" }
        if f.nested.idmap != nil { return "its id map cannot be written (\(SandboxFacts.Namespaces.why(f.nested.idmap)))" }
        if f.nested.overlay != nil { return "overlayfs is refused in a user namespace (\(SandboxFacts.Namespaces.why(f.nested.overlay)))" }
        return "mounts are refused in a user namespace (\(SandboxFacts.Namespaces.why(e)))"
    }
}

extension SandboxFacts {
    private final class Cache: @unchecked Sendable {
        let lock = NSLock()
        var facts: [String: SandboxFacts] = [:]
    }
    private static let cache = Cache()

    /// Probed once per process (and store).
    public static func shared(storeDir: String? = nil) -> SandboxFacts {
        cache.lock.lock()
        defer { cache.lock.unlock() }
        if let f = cache.facts[storeDir ?? ""] { return f }
        let f = probe(storeDir: storeDir)
        cache.facts[storeDir ?? ""] = f
        return f
    }

    /// Root without CAP_SYS_ADMIN (a CI container's root): namespaces of its own are refused,
    /// so a run must go the isolation ladder. One capget, no probe.
    public static var rootWithoutSysAdmin: Bool {
        getuid() == 0 && csys_probe_effective_caps() & (1 << 21) == 0
    }

    /// Our own user namespace's ids, range by range, each mapped to itself
    /// (/proc/self/uid_map, gid_map).
    public static func ownIDs() -> HostFacts.OwnIDs {
        func ranges(_ file: String) -> [IDRange] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [IDRange(containerID: 0, hostID: 0, count: 65536)] }
            return text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ", omittingEmptySubsequences: true).compactMap { UInt32($0) }
                return f.count == 3 ? IDRange(containerID: f[0], hostID: f[0], count: f[2]) : nil
            }
        }
        return HostFacts.OwnIDs(uid: ranges("/proc/self/uid_map"), gid: ranges("/proc/self/gid_map"))
    }

    /// `ctr info`'s lines: each probe, and the isolation build and run get here.
    public var summary: [String] {
        func yes(_ e: Int32?) -> String { e == nil ? "yes" : "no (\(Namespaces.why(e)))" }
        var lines = ["sandbox: uid \(uid)\(inUserNamespace ? " in a user namespace" : ""), \(seccompFiltered ? "a seccomp filter" : "no seccomp filter"), \(insideContainer ? "inside a container" : "not inside a container"), user.max_user_namespaces \(maxUserNamespaces < 0 ? "unknown" : String(maxUserNamespaces))"]
        let n = nested
        lines.append("  new user namespace: \(yes(n.userns)); capabilities in it: \(yes(n.capsInUserns)); its id map: \(yes(n.idmap))")
        lines.append("  in it: mount namespace \(yes(n.mountns)), overlayfs \(yes(n.overlay)) (with its upper dir in the store: \(yes(n.overlayOnStore))), fresh /proc \(yes(n.procfs)), fresh /sys \(yes(n.sysfs)), sethostname \(yes(n.hostname)), network namespace \(yes(n.netns)), mknod \(yes(n.mknod))")
        if uid == 0 {
            lines.append("  as root without one (CAP_SYS_ADMIN \(hasSysAdmin ? "yes" : "no")): mount namespace \(yes(direct.mountns)), mknod \(yes(direct.mknod)); chroot \(yes(chroot))")
        }
        for (what, purpose) in [("build RUN", IsolationDecision.Purpose.build), ("run", .run)] {
            do {
                let d = try IsolationDecision.decide(self, purpose: purpose)
                var l = "isolation for \(what): \(d.level)"
                if !d.lacks.isEmpty { l += "; lacks \(d.lacks.joined(separator: ", "))" }
                if !d.refused.isEmpty { l += "; not \(d.refused.joined(separator: "; "))" }
                lines.append(l)
            } catch {
                lines.append("isolation for \(what): none: \(error)")
            }
        }
        return lines
    }
}
