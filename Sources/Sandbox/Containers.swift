import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// What `ctr ps` and friends know about a container, kept in ROOT/containers/ID/container.json.
public struct ContainerRecord: Codable, Sendable {
    public var id: String
    public var name: String
    public var image: String          // as the user named it
    public var imageID: String        // config digest
    public var manifest: String       // manifest digest (keeps the image from prune)
    public var command: [String]
    public var created: String
    public var detached: Bool
    public var tty: Bool
    public var autoRemove: Bool
    public var ports: [String]
    public var network: String
    public var stopSignal: String?
    public var pid: Int32?
    public var pidStart: UInt64?
    public var monitorPid: Int32?
    public var exitCode: Int32?
    public var finished: String?
    public var rootless: Bool
    /// "fuse-overlayfs" when the root is served by it (the kernel refused overlayfs)
    public var rootFS: String? = nil
    /// What the process was started with (image config merged with -e, -w, -u): `exec` starts
    /// its processes the same way, as docker does. Nil in records of older versions.
    public var env: [String]? = nil
    public var workdir: String? = nil
    public var user: String? = nil

    public var shortID: String { String(id.prefix(12)) }
}

/// A container's state as `ps` reports it.
public enum ContainerStatus: Equatable, Sendable {
    case created
    case running
    case exited(code: Int32, at: Date?)
    /// The monitor died: the process may run on, but its exit cannot be recorded.
    case runningUnmonitored
    case unknown

    public var word: String {
        switch self {
        case .created: return "created"
        case .running, .runningUnmonitored: return "running"
        case .exited: return "exited"
        case .unknown: return "unknown"
        }
    }
}

/// The containers of a store.
public struct ContainerStore: Sendable {
    public let store: Store
    public var dir: String { "\(store.root)/containers" }

    public init(_ store: Store) {
        self.store = store
        mkdir(dir, 0o700)
    }

    public func path(_ id: String) -> String { "\(dir)/\(id)" }

    /// Where a container's files that die with it live (its /etc/hosts, /etc/hostname,
    /// /etc/resolv.conf and the mount point of its root): the user's runtime dir, a tmpfs in a
    /// login session, so that a start writes less to the disk the store is on. Nil: none
    /// (the store's container dir serves).
    public func runPath(_ id: String) -> String? {
        guard let base = UsernsKeeper.runtimeDir() else { return nil }
        let dir = "\(base)/containers-\(UsernsKeeper.fnv(store.root))"
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { return nil }
        return "\(dir)/\(id)"
    }

    public func all() -> [ContainerRecord] {
        let ids = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }
        return ids.compactMap { load(id: $0) }.sorted { $0.created > $1.created }
    }

    public func load(id: String) -> ContainerRecord? {
        guard let d = FileManager.default.contents(atPath: "\(path(id))/container.json") else { return nil }
        return try? JSONDecoder().decode(ContainerRecord.self, from: d)
    }

    public func save(_ r: ContainerRecord) throws {
        // a container does not outlive a crash of the machine: no fsync
        try Store.atomicWrite(path: "\(path(r.id))/container.json", data: CanonicalJSON.encode(r), durable: false)
    }

    /// By name, full id or unique id prefix.
    public func find(_ s: String) throws -> ContainerRecord {
        let list = all()
        if let r = list.first(where: { $0.name == s || $0.id == s }) { return r }
        let m = list.filter { $0.id.hasPrefix(s) }
        if m.count == 1 { return m[0] }
        if m.count > 1 { throw CtrError.conflict("\(s): more than one container matches") }
        throw CtrError.notFound("no such container: \(s)")
    }

    /// Running, exited (with the code the monitor recorded), or lost.
    public func status(_ r: ContainerRecord) -> ContainerStatus {
        if let code = r.exitCode { return .exited(code: code, at: r.finished.flatMap(parseTime)) }
        if let (code, at) = exitFile(r.id) { return .exited(code: code, at: at) }
        guard let pid = r.pid, let start = r.pidStart else { return .created }
        let alive = csys_proc_starttime(pid) == start
        if alive {
            if let m = r.monitorPid, csys_proc_starttime(m) == 0 { return .runningUnmonitored }
            return .running
        }
        return .unknown
    }

    public func exitFile(_ id: String) -> (Int32, Date?)? {
        guard let s = try? String(contentsOfFile: "\(path(id))/exit", encoding: .utf8) else { return nil }
        let f = s.split(separator: " ")
        guard let code = f.first.flatMap({ Int32($0) }) else { return nil }
        var at: Date?
        if f.count > 1, let ns = Double(f[1].trimmingCharacters(in: .whitespacesAndNewlines)) { at = Date(timeIntervalSince1970: ns / 1e9) }
        return (code, at)
    }

    func parseTime(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s) ?? ISO8601DateFormatter().date(from: s)
    }

    /// Manifest digests containers still use (prune keeps them).
    public func manifestsInUse() -> Set<String> {
        Set(all().map(\.manifest))
    }
}
