import Foundation

/// A tiny HTTP/1.1 server on 127.0.0.1 for faults a real registry will not produce: wrong
/// digests, connections cut mid-blob, 5xx then success, 429 with Retry-After, huge manifests.
final class FaultServer: @unchecked Sendable {
    struct Request {
        var method: String
        var path: String
        var headers: [String: String]   // lowercased names
        var body: Data
    }

    enum Reply {
        case respond(status: Int, headers: [String: String], body: Data)
        /// Send the headers (with the full Content-Length) and the first `bytes` of body, then close.
        case cut(status: Int, headers: [String: String], body: Data, after: Int)
        /// Send the first `bytes` of body, wait `seconds`, then send the rest: a slow transfer.
        case pause(status: Int, headers: [String: String], body: Data, after: Int, seconds: Double)
        /// A stalled server: send the headers and the first `after` bytes of body (status nil:
        /// nothing at all), then hold the connection open, sending nothing, until the client
        /// goes away.
        case stall(status: Int?, headers: [String: String], body: Data, after: Int)
        /// Slow but moving: the body in `chunks` pieces, `interval` seconds apart.
        case trickle(status: Int, headers: [String: String], body: Data, chunks: Int, interval: Double)
    }

    let port: Int
    var addr: String { "127.0.0.1:\(port)" }
    private let listener: Int32
    private let handler: @Sendable (Request) -> Reply
    private let lock = NSLock()
    private var _log: [Request] = []
    var log: [Request] { lock.lock(); defer { lock.unlock() }; return _log }

    init(_ handler: @escaping @Sendable (Request) -> Reply) throws {
        self.handler = handler
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let b = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard b == 0, listen(listener, 64) == 0 else { throw CocoaError(.fileWriteUnknown) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        self.listener = listener
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { if errno == EINTR { continue }; return }
            let t = Thread { [self] in serve(fd) }
            t.start()
        }
    }

    private func readLine(_ fd: Int32, _ buf: inout [UInt8]) -> String? {
        while true {
            if let i = buf.firstIndex(of: 10) {
                let line = String(decoding: buf[..<i], as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
                buf.removeSubrange(...i)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return nil }
            buf += chunk[..<n]
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buf: [UInt8] = []
        // a TLS ClientHello (clients try https first): close, as plain-HTTP servers do
        var first = [UInt8](repeating: 0, count: 65536)
        let n0 = read(fd, &first, first.count)
        if n0 <= 0 || first[0] == 0x16 { return }
        buf += first[..<n0]
        while true {
            guard let first = readLine(fd, &buf), !first.isEmpty else { return }
            let parts = first.split(separator: " ")
            guard parts.count >= 2 else { return }
            var headers: [String: String] = [:]
            while let line = readLine(fd, &buf), !line.isEmpty {
                if let c = line.firstIndex(of: ":") {
                    headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
                }
            }
            var body = Data()
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while body.count < length {
                if !buf.isEmpty {
                    let take = min(buf.count, length - body.count)
                    body.append(contentsOf: buf[..<take])
                    buf.removeFirst(take)
                    continue
                }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { return }
                buf += chunk[..<n]
            }
            let req = Request(method: String(parts[0]), path: String(parts[1]), headers: headers, body: body)
            lock.lock(); _log.append(req); lock.unlock()
            switch handler(req) {
            case .respond(let status, let h, let b):
                if !send(fd, status: status, headers: h, body: b, count: req.method == "HEAD" ? 0 : b.count, length: b.count) { return }
            case .cut(let status, let h, let b, let after):
                _ = send(fd, status: status, headers: h, body: b, count: after, length: b.count)
                return
            case .pause(let status, let h, let b, let after, let seconds):
                guard send(fd, status: status, headers: h, body: b, count: after, length: b.count) else { return }
                Thread.sleep(forTimeInterval: seconds)
                if !write(fd, b.subdata(in: after..<b.count)) { return }
            case .stall(let status, let h, let b, let after):
                if let status { _ = send(fd, status: status, headers: h, body: b, count: after, length: b.count) }
                holdUntilClosed(fd)
                return
            case .trickle(let status, let h, let b, let chunks, let interval):
                let piece = max(1, (b.count + chunks - 1) / max(chunks, 1))
                guard send(fd, status: status, headers: h, body: b, count: min(piece, b.count), length: b.count) else { return }
                var off = min(piece, b.count)
                while off < b.count {
                    Thread.sleep(forTimeInterval: interval)
                    let end = min(off + piece, b.count)
                    if !write(fd, b.subdata(in: off..<end)) { return }
                    off = end
                }
            }
        }
    }

    /// Send nothing and wait until the client closes the connection (at most five minutes).
    private func holdUntilClosed(_ fd: Int32) {
        let end = Date().addingTimeInterval(300)
        var scratch = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 200)
            if n < 0 && errno != EINTR { return }
            if n > 0 {
                // a closed connection reads as 0 (or fails); anything else is ignored
                if read(fd, &scratch, scratch.count) <= 0 { return }
            }
        }
    }

    private func send(_ fd: Int32, status: Int, headers: [String: String], body: Data, count: Int, length: Int) -> Bool {
        var head = "HTTP/1.1 \(status) X\r\n"
        var h = headers
        if h["Content-Length"] == nil { h["Content-Length"] = String(length) }
        for (k, v) in h { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        var out = Data(head.utf8)
        out.append(body.prefix(count))
        return write(fd, out)
    }

    private func write(_ fd: Int32, _ out: Data) -> Bool {
        out.withUnsafeBytes { p -> Bool in
            var off = 0
            while off < p.count {
                let n = Glibc.write(fd, p.baseAddress! + off, p.count - off)
                if n <= 0 { return false }
                off += n
            }
            return true
        }
    }
}
