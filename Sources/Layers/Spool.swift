import Errors
import Foundation
import HostOS

extension Store {
    /// Everything `fd` gives (standard input by default), copied into a new file of the ingest
    /// dir, whose path is returned; the caller removes the file or moves it on. A failed read or
    /// write leaves nothing behind.
    public func spool(fd input: Int32 = 0, what: String = "standard input") throws -> String {
        let t = ingestPath()
        let fd = try valueOrErrno("open", "cannot create \(t)") { open(t, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(input, &buf, buf.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                let e = CtrError.errno("read", "cannot read \(what)")
                unlink(t)
                throw e
            }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(fd, $0.baseAddress! + off, n - off) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    let e = CtrError.errno("write", "cannot write \(t)")
                    unlink(t)
                    throw e
                }
                off += w
            }
        }
        return t
    }
}
