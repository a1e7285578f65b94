import CSysShims
import Foundation

/// A contiguous id range: container ids `containerID..<containerID+count` are host ids
/// `hostID..<hostID+count`.
public struct IDRange: Sendable, Hashable, CustomStringConvertible {
    public var containerID: UInt32
    public var hostID: UInt32
    public var count: UInt32
    public init(containerID: UInt32, hostID: UInt32, count: UInt32) {
        self.containerID = containerID
        self.hostID = hostID
        self.count = count
    }
    public var description: String { "\(containerID):\(hostID):\(count)" }
}

/// How this process maps ids when it touches image files.
public enum IDMapping: Sendable, Equatable {
    /// Real root: no user namespace, files are chowned directly.
    case root
    /// An unprivileged user with subordinate ranges: container 0 is the user, 1… are the
    /// user's ranges from /etc/subuid and /etc/subgid (as podman maps them).
    case mapped(uid: [IDRange], gid: [IDRange])
    /// An unprivileged user without subordinate ranges: only the user's own id is available.
    case single(uid: UInt32, gid: UInt32)

    /// What this process has: root, or the user's /etc/subuid and /etc/subgid ranges.
    public static func current() -> IDMapping {
        let uid = getuid(), gid = getgid()
        if uid == 0 { return .root }
        let name = userName(uid) ?? String(uid)
        let subuids = subordinateRanges(file: "/etc/subuid", name: name, id: uid)
        let subgids = subordinateRanges(file: "/etc/subgid", name: name, id: uid)
        guard !subuids.isEmpty, !subgids.isEmpty else { return .single(uid: uid, gid: gid) }
        return .mapped(uid: build(own: uid, subs: subuids), gid: build(own: gid, subs: subgids))
    }

    private static func build(own: UInt32, subs: [(UInt32, UInt32)]) -> [IDRange] {
        var ranges = [IDRange(containerID: 0, hostID: own, count: 1)]
        var next: UInt32 = 1
        for (start, count) in subs {
            ranges.append(IDRange(containerID: next, hostID: start, count: count))
            next &+= count
        }
        return ranges
    }

    /// The host id of container id `id`, if mapped.
    public func hostUID(_ id: UInt32) -> UInt32? { Self.lookup(id, in: uidRanges) }
    public func hostGID(_ id: UInt32) -> UInt32? { Self.lookup(id, in: gidRanges) }
    /// The other way: the container id of a host id (nil: not mapped).
    public func containerUID(_ host: UInt32) -> UInt32? { Self.reverse(host, in: uidRanges) }
    public func containerGID(_ host: UInt32) -> UInt32? { Self.reverse(host, in: gidRanges) }

    static func reverse(_ host: UInt32, in ranges: [IDRange]) -> UInt32? {
        for r in ranges where host >= r.hostID && host - r.hostID < r.count { return r.containerID + (host - r.hostID) }
        return nil
    }

    public var uidRanges: [IDRange] {
        switch self {
        case .root: return [IDRange(containerID: 0, hostID: 0, count: UInt32.max)]
        case .mapped(let u, _): return u
        case .single(let u, _): return [IDRange(containerID: 0, hostID: u, count: 1)]
        }
    }
    public var gidRanges: [IDRange] {
        switch self {
        case .root: return [IDRange(containerID: 0, hostID: 0, count: UInt32.max)]
        case .mapped(_, let g): return g
        case .single(_, let g): return [IDRange(containerID: 0, hostID: g, count: 1)]
        }
    }

    static func lookup(_ id: UInt32, in ranges: [IDRange]) -> UInt32? {
        for r in ranges where id >= r.containerID && UInt64(id) < UInt64(r.containerID) + UInt64(r.count) {
            return r.hostID + (id - r.containerID)
        }
        return nil
    }

    /// Parse `name:start:count` lines for the user (by name or numeric id), in file order.
    public static func subordinateRanges(file: String, name: String, id: UInt32) -> [(UInt32, UInt32)] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return parseSubordinate(text, name: name, id: id)
    }

    public static func parseSubordinate(_ text: String, name: String, id: UInt32) -> [(UInt32, UInt32)] {
        var out: [(UInt32, UInt32)] = []
        for line in text.split(separator: "\n") {
            // (not Foundation's trimmingCharacters: NSString bridging costs a quarter of a
            // millisecond of every start-up)
            var t = line.drop(while: { $0 == " " || $0 == "\t" })
            while let last = t.last, last == " " || last == "\t" || last == "\r" { t = t.dropLast() }
            if t.isEmpty || t.first == "#" { continue }
            let f = t.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count == 3, f[0] == name || f[0] == String(id),
                  let s = UInt32(f[1]), let c = UInt32(f[2]), c > 0 else { continue }
            // a range given twice, or overlapping one before it (useradd adds a range where the
            // file exists; an image's setup may add it again), would make the kernel refuse the
            // whole map: it counts once, as newuidmap and podman take it
            let end = UInt64(s) + UInt64(c)
            if out.contains(where: { UInt64($0.0) < end && UInt64(s) < UInt64($0.0) + UInt64($0.1) }) { continue }
            out.append((s, c))
        }
        return out
    }

    public static func userName(_ uid: uid_t) -> String? {
        // /etc/passwd first: NSS (getpwuid) loads its modules, a millisecond of every start-up
        if let text = try? String(contentsOfFile: "/etc/passwd", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
                if f.count >= 3, UInt32(f[2]) == uid, !f[0].isEmpty { return String(f[0]) }
            }
        }
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil, let n = pw.pw_name else { return nil }
        return String(cString: n)
    }
}
