import CSysShims
import Errors
import Foundation
import HostOS

let O_PATH: Int32 = 0o10000000

/// Opens files of a stage's layers that this user may not (files of subordinate ids with modes
/// that shut others out, e.g. a 0700 home dir made by a RUN as another user): a helper in the
/// build's user namespace opens them and passes the fds back. Only used after a plain open
/// fails with EACCES.
final class PrivilegedOpener: @unchecked Sendable {
    private let mapping: IDMapping
    private var sock: Int32 = -1
    private var child: UserNamespace.Child?
    private var box: SharedBox<csys_fd_server>?
    private var failed = false
    private let lock = NSLock()

    /// The helper starts at the first request (most builds never need it).
    init(mapping: IDMapping) { self.mapping = mapping }

    private func start() throws {
        var sv: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw CtrError.errno("socketpair", "cannot start the file helper")
        }
        let b = SharedBox(csys_fd_server(sock: sv[1], error: csys_error()))
        let errPtr = UnsafeMutableRawPointer(b.pointer)
            .advanced(by: MemoryLayout<csys_fd_server>.offset(of: \csys_fd_server.error)!)
            .assumingMemoryBound(to: csys_error.self)
        do {
            child = try UserNamespace.start(csys_job_fd_server, arg: UnsafeMutableRawPointer(b.pointer), errOut: errPtr,
                                            mapping: mapping, keepFDs: [sv[1]])
        } catch {
            close(sv[0]); close(sv[1])
            throw error
        }
        close(sv[1])
        sock = sv[0]
        box = b
    }

    deinit {
        if sock >= 0 { close(sock) }
        _ = try? child?.wait()
    }

    /// An fd for path (O_NOFOLLOW, O_CLOEXEC added), or -1 with errno set.
    func open(_ path: String, _ flags: Int32) -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        if sock < 0 && !failed {
            do { try start() } catch { failed = true }
        }
        guard sock >= 0 else { errno = EACCES; return -1 }
        return csys_fd_request(sock, path, flags)
    }

    func lstat(_ path: String, _ st: inout stat) -> Bool {
        let fd = open(path, O_PATH)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fstat(fd, &st) == 0
    }

    func list(_ path: String) -> [String]? {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0, let d = fdopendir(fd) else { return nil }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    func readlink(_ path: String) -> String? {
        let fd = open(path, O_PATH)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [CChar](repeating: 0, count: 4097)
        guard csys_fd_readlink(fd, &buf, buf.count) >= 0 else { return nil }
        return String(cString: buf)
    }

    func xattr(_ path: String, _ name: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var v = [UInt8](repeating: 0, count: 8)
        let n = csys_fgetxattr(fd, name, &v, v.count)
        return n > 0 ? Array(v[0..<n]) : nil
    }
}
