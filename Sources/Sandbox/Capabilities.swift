import Errors
import Foundation

/// Linux capabilities by name, podman's default set, and --cap-add/--cap-drop.
public enum Capabilities {
    public static let names: [String] = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// podman's default (containers.conf default_capabilities).
    public static let podmanDefault: Set<String> = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
    ]

    public static var lastCap: Int {
        if let s = try? String(contentsOfFile: "/proc/sys/kernel/cap_last_cap", encoding: .utf8),
           let n = Int(s.filter { $0.isNumber }) { return n }
        return names.count - 1
    }

    public static func normalise(_ s: String) throws -> String {
        let up = s.uppercased()
        if up == "ALL" { return "ALL" }
        let n = up.hasPrefix("CAP_") ? up : "CAP_" + up
        guard names.contains(n) else { throw CtrError.usage("unknown capability \"\(s)\"") }
        return n
    }

    /// The default set with --cap-add and --cap-drop applied (ALL allowed in both).
    public static func effective(add: [String], drop: [String]) throws -> Set<String> {
        var set = podmanDefault
        let adds = try add.map(normalise), drops = try drop.map(normalise)
        if drops.contains("ALL") { set = [] }
        for d in drops where d != "ALL" { set.remove(d) }
        // ALL is what this process may still hand on (its bounding set), as podman takes it
        if adds.contains("ALL") { set = Set(names.prefix(lastCap + 1).enumerated().filter { boundingSet & (1 << UInt64($0.offset)) != 0 }.map(\.element)) }
        for a in adds where a != "ALL" { set.insert(a) }
        return set
    }

    /// CapBnd of this process (all ones if it cannot be read).
    static var boundingSet: UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapBnd:") }),
              let v = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else { return ~0 }
        return v
    }

    public static func mask(_ set: Set<String>) -> UInt64 {
        var m: UInt64 = 0
        for (i, n) in names.enumerated() where set.contains(n) && i <= 63 { m |= 1 << UInt64(i) }
        return m
    }
}
