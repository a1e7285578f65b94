import CSysShims
import Errors
import Foundation
import HostOS

/// What a request sends.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case data(Data)
        case file(path: String, offset: Int64, size: Int64)
    }
    public var method: String
    public var url: String
    public var headers: [String: String]
    public var body: Body
    public var followRedirects = true
    public init(method: String = "GET", url: String, headers: [String: String] = [:], body: Body = .none) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// What came back.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]   // lowercased names; repeated headers joined with ", "
    public var wwwAuthenticate: [String]   // each WWW-Authenticate header
    public var body: Data
    public var received: UInt64
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Where a response body goes: memory (bounded), files or pipes, a hasher.
public struct BodySink {
    public var maxMemory: Int = 0
    public var fds: [Int32] = []
    public var hasher: OpaquePointer? = nil
    public var progress: UnsafeMutablePointer<UInt64>? = nil
    public var resumeFrom: UInt64 = 0
    public var limit: UInt64 = 0
    public init(maxMemory: Int = 0, fds: [Int32] = [], hasher: OpaquePointer? = nil, progress: UnsafeMutablePointer<UInt64>? = nil) {
        self.maxMemory = maxMemory
        self.fds = fds
        self.hasher = hasher
        self.progress = progress
    }
}

/// How long one exchange may wait. An exchange is given up when nothing arrives or leaves for
/// `stall` seconds, or at `giveUpAt` (a `monotonicSeconds` time) unless body bytes moved: then
/// `idle` seconds after the last of them. A slow transfer that keeps moving is never cut.
public struct HTTPTiming: Sendable {
    public var connect: Double = 20
    public var stall: Double = 60
    public var giveUpAt: Double?
    public var idle: Double = 0
    public init(connect: Double = 20, stall: Double = 60, giveUpAt: Double? = nil, idle: Double = 0) {
        self.connect = connect
        self.stall = stall
        self.giveUpAt = giveUpAt
        self.idle = idle
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of `HTTPTiming.giveUpAt` and `CtrError.Transport.lastData`.
public func monotonicSeconds() -> Double { Double(csys_monotonic_ms()) / 1000 }

/// TLS settings for one registry.
public struct TLSSettings: Sendable {
    public var verify: Bool
    public var caPEM: Data?
    public var clientCert: String?
    public var clientKey: String?
    public init(verify: Bool = true, caPEM: Data? = nil, clientCert: String? = nil, clientKey: String? = nil) {
        self.verify = verify
        self.caPEM = caPEM
        self.clientCert = clientCert
        self.clientKey = clientKey
    }
}

/// One libcurl handle: use from one thread at a time; connections are kept alive.
public final class HTTPClient: @unchecked Sendable {
    let handle: OpaquePointer

    /// Fails when libcurl cannot be loaded (the error says which library is missing).
    public init() throws(CtrError) {
        var loadErr = csys_error()
        if csys_load_curl(&loadErr) != 0 { throw CtrError.transport(.other, CtrError(loadErr).message) }
        guard let h = csys_http_new() else { throw CtrError.transport(.other, "libcurl initialisation failed") }
        handle = h
    }

    deinit { csys_http_free(handle) }

    public func perform(_ req: HTTPRequest, tls: TLSSettings, sink: BodySink = BodySink(maxMemory: 1 << 20),
                        timing: HTTPTiming = HTTPTiming()) throws(CtrError) -> HTTPResponse {
        var fileFD: Int32 = -1
        if case .file(let path, let offset, _) = req.body {
            fileFD = open(path, O_RDONLY | O_CLOEXEC)
            if fileFD < 0 { throw CtrError.transport(.other, "cannot open \(path): \(String(cString: strerror(errno)))") }
            lseek(fileFD, off_t(offset), SEEK_SET)
        }
        defer { if fileFD >= 0 { close(fileFD) } }
        let headerLines = req.headers.map { "\($0.key): \($0.value)" }
        var cHeaders: [UnsafeMutablePointer<CChar>?] = headerLines.map { strdup($0) } + [nil]
        defer { cHeaders.forEach { free($0) } }
        var resp = csys_http_response()
        let rc: Int32 = req.method.withCString { method in
            req.url.withCString { url in
                cHeaders.withUnsafeMutableBufferPointer { hb in
                    withBody(req.body) { bodyPtr, bodyLen in
                        withOptionalCString(tls.clientCert) { cert in
                            withOptionalCString(tls.clientKey) { key in
                                withCA(tls.caPEM) { ca, caLen in
                                    var r = csys_http_request()
                                    r.method = method
                                    r.url = url
                                    hb.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: hb.count) { r.headers = UnsafePointer($0) }
                                    switch req.body {
                                    case .none: r.has_body = 0; r.body_fd = -1
                                    case .data: r.has_body = 1; r.body = bodyPtr; r.body_len = bodyLen; r.body_fd = -1
                                    case .file(_, _, let size): r.has_body = 1; r.body_fd = fileFD; r.body_size = UInt64(size)
                                    }
                                    r.verify_tls = tls.verify ? 1 : 0
                                    r.ca_pem = ca
                                    r.ca_pem_len = caLen
                                    r.client_cert = cert
                                    r.client_key = key
                                    r.connect_timeout_ms = max(Int(timing.connect * 1000), 1)
                                    r.stall_ms = max(Int(timing.stall * 1000), 1)
                                    r.give_up_at_ms = timing.giveUpAt.map { Int64($0 * 1000) } ?? 0
                                    r.idle_ms = Int(timing.idle * 1000)
                                    r.follow_redirects = req.followRedirects ? 1 : 0
                                    r.max_body = sink.maxMemory
                                    r.out_fd1 = sink.fds.count > 0 ? sink.fds[0] : -1
                                    r.out_fd2 = sink.fds.count > 1 ? sink.fds[1] : -1
                                    r.hash = sink.hasher
                                    r.progress = sink.progress
                                    r.resume_from = sink.resumeFrom
                                    r.limit = sink.limit
                                    return csys_http_perform(handle, &r, &resp)
                                }
                            }
                        }
                    }
                }
            }
        }
        defer { csys_http_response_free(&resp) }
        var errorText = cString(&resp.error)
        if resp.too_large != 0 {
            throw CtrError.transport(.tooLarge, "the response is larger than \(sink.maxMemory) bytes", received: resp.received)
        }
        if resp.write_failed != 0 {
            throw CtrError.transport(.write, "cannot write what was received: \(String(cString: strerror(resp.os_errno)))", received: resp.received)
        }
        if rc != 0 {
            let kind: CtrError.Transport.Kind
            switch csys_http_error_kind(resp.curl_code) {
            case 1: kind = .resolve
            case 2: kind = .connect
            case 3: kind = .certificate
            case 4: kind = .tls
            case 5: kind = .timeout
            case 6: kind = .cut
            default: kind = .other
            }
            if errorText.isEmpty { errorText = "transfer failed (curl \(resp.curl_code))" }
            throw CtrError(.transport(.init(resp.stalled != 0 ? .timeout : kind, received: resp.received, stalled: resp.stalled != 0,
                                            lastData: resp.last_data_ms > 0 ? Double(resp.last_data_ms) / 1000 : nil)), errorText)
        }
        var headers: [String: String] = [:]
        var challenges: [String] = []
        if let h = resp.headers {
            for line in String(cString: h).components(separatedBy: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if name == "www-authenticate" { challenges.append(value) }
                headers[name] = headers[name].map { "\($0), \(value)" } ?? value
            }
        }
        let body = resp.body.map { Data(bytes: $0, count: resp.body_len) } ?? Data()
        return HTTPResponse(status: resp.status, headers: headers, wwwAuthenticate: challenges, body: body, received: resp.received)
    }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

private func withCA<R>(_ d: Data?, _ body: (UnsafePointer<CChar>?, Int) -> R) -> R {
    guard let d else { return body(nil, 0) }
    return d.withUnsafeBytes { body($0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
}

private func withBody<R>(_ b: HTTPRequest.Body, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    if case .data(let d) = b { return d.withUnsafeBytes { body($0.baseAddress, $0.count) } }
    return body(nil, 0)
}

/// Lends HTTP clients to threads (one handle per concurrent request).
public final class HTTPPool: @unchecked Sendable {
    private var free: [HTTPClient] = []
    private let lock = NSLock()
    public init() {}

    public func with<T>(_ body: (HTTPClient) throws -> T) throws -> T {
        lock.lock()
        let reused = free.popLast()
        lock.unlock()
        let c = try reused ?? HTTPClient()
        defer { lock.lock(); free.append(c); lock.unlock() }
        return try body(c)
    }
}
