import CSysShims
import Errors
import Foundation
import HostOS

extension CtrError {
    /// The registry refused: its HTTP status and error code.
    static func registry(_ message: String, status: Int? = nil, code: String? = nil) -> CtrError {
        CtrError(.registry(status: status, code: code), message)
    }
}

/// How to reach one registry.
public struct RegistryEndpoint: Sendable {
    /// The registry as references name it ("docker.io", "127.0.0.1:5000").
    public var registry: String
    /// The host the API lives on ("registry-1.docker.io" for docker.io).
    public var host: String
    /// Plain HTTP allowed and TLS certificates not verified.
    public var insecure: Bool
    public var tls: TLSSettings
    public var credentials: Credentials?
    /// Why there are no credentials, when an auth file names a helper that is not installed:
    /// looked up only when a registry asks for credentials.
    public var missingHelper: (@Sendable () -> String?)?

    public init(registry: String, host: String? = nil, insecure: Bool, tls: TLSSettings = TLSSettings(), credentials: Credentials? = nil) {
        self.registry = registry
        self.host = host ?? RegistryEndpoint.apiHost(registry)
        self.insecure = insecure
        self.tls = tls
        self.credentials = credentials
        if insecure { self.tls.verify = false }
    }

    public static func apiHost(_ registry: String) -> String {
        registry == "docker.io" || registry == "index.docker.io" ? "registry-1.docker.io" : registry
    }

    /// Docker treats loopback registries as insecure by default (plain HTTP allowed).
    public static func isLoopback(_ registry: String) -> Bool {
        var host = registry
        if host.hasPrefix("[") {
            host = String(host.dropFirst().prefix { $0 != "]" })
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host == "localhost" || host.hasPrefix("127.")
    }
}

/// A WWW-Authenticate challenge.
public struct AuthChallenge: Sendable, Equatable {
    public var scheme: String          // "bearer" or "basic" (lowercased)
    public var params: [String: String]

    /// Parse `Bearer realm="…",service="…",scope="…"` (several challenges may be given).
    public static func parse(_ header: String) -> AuthChallenge? {
        let s = header.trimmingCharacters(in: .whitespaces)
        guard let sp = s.firstIndex(of: " ") else {
            return s.isEmpty ? nil : AuthChallenge(scheme: s.lowercased(), params: [:])
        }
        let scheme = s[..<sp].lowercased()
        var params: [String: String] = [:]
        var rest = Substring(s[s.index(after: sp)...])
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                var end = rest.endIndex
                for i in rest.indices {
                    let c = rest[i]
                    if escaped { value.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { end = i; break }
                    value.append(c)
                }
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : ""
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            params[key] = value
        }
        return AuthChallenge(scheme: scheme, params: params)
    }
}

/// Speaks the OCI distribution protocol to one registry: ping, authentication (basic and
/// bearer tokens, cached per scope), retries with backoff, and errors a user can act on.
/// Thread-safe: each request borrows its own HTTP handle.
public final class RegistryClient: @unchecked Sendable {
    public let endpoint: RegistryEndpoint
    let pool = HTTPPool()
    private let lock = NSLock()
    private var baseURL: String?
    private var challenge: AuthChallenge?
    private var pinged = false
    private var tokens: [String: String] = [:]
    /// One token request at a time: parallel blob transfers for one scope share the first's.
    private let tokenFetch = NSLock()
    /// Seconds to wait before retry n (0-based); tests shorten it.
    public var backoff: (Int) -> Double = { n in min(0.5 * pow(2, Double(n)), 8) }
    public var maxAttempts = 5
    /// How long a request may go without a byte of progress before it is given up, in
    /// seconds; its retries share it (`CTR_REGISTRY_TIMEOUT`, 30 by default, as podman).
    public var idleLimit = RegistryClient.defaultIdleLimit
    /// Where "waiting" and "retrying" notes go (the CLI prints them on stderr).
    public var notice: (@Sendable (String) -> Void)?

    public static let defaultIdleLimit: Double = 30

    /// `CTR_REGISTRY_TIMEOUT` (seconds) from an environment, if it is a positive number.
    public static func idleLimit(from environment: [String: String]) throws -> Double {
        guard let v = environment["CTR_REGISTRY_TIMEOUT"], !v.isEmpty else { return defaultIdleLimit }
        guard let d = Double(v), d > 0, d.isFinite else {
            throw CtrError.usage("CTR_REGISTRY_TIMEOUT=\(v): expected a number of seconds greater than 0")
        }
        return d
    }

    public init(_ endpoint: RegistryEndpoint) {
        self.endpoint = endpoint
    }

    var host: String { endpoint.host }

    // MARK: patience

    /// One request's patience: it gives up when nothing moved for `idleLimit` seconds, counted
    /// across its retries. GET and HEAD retry a connection that went quiet for half of that
    /// on a new one; other requests wait the whole of it (a registry may take a while to
    /// commit a big upload).
    struct Patience {
        let limit: Double
        let idempotent: Bool
        var lastProgress = monotonicSeconds()

        var remaining: Double { lastProgress + limit - monotonicSeconds() }

        mutating func noteProgress(_ at: Double?) {
            if let at, at > lastProgress { lastProgress = at }
        }

        var timing: HTTPTiming {
            let left = max(remaining, 0.05)
            let stall = idempotent ? max(limit / 2, 1) : limit
            return HTTPTiming(connect: min(20, left), stall: min(stall, left), giveUpAt: lastProgress + limit, idle: limit)
        }
    }

    func patience(_ method: String) -> Patience {
        Patience(limit: idleLimit, idempotent: method == "GET" || method == "HEAD")
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() && s < 1e6 ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }

    /// The error of a request that went without progress for the whole of its patience.
    func stalledError(_ doing: String, received: UInt64 = 0, of total: Int64? = nil) -> CtrError {
        let got = total.map { ", \(received) of \($0) bytes in" } ?? ""
        return CtrError(.transport(.init(.timeout, received: received, stalled: true)), "\(endpoint.registry): nothing received for \(Self.seconds(idleLimit)) (\(doing)\(got)); gave up (CTR_REGISTRY_TIMEOUT sets how long to wait)")
    }

    /// After a transient transport failure: say so and wait before the next attempt, or throw
    /// when the attempts or the patience are used up.
    func retryAfter(_ e: CtrError, attempt: inout Int, patience: inout Patience, timing: HTTPTiming, url: String,
                    doing: String, received: UInt64 = 0, of total: Int64? = nil) throws {
        let t = e.transport ?? .init(.other)
        patience.noteProgress(t.lastData)
        let left = patience.remaining
        if t.transient && attempt + 1 < maxAttempts && left > 0.05 {
            let why = t.stalled ? "nothing received for \(Self.seconds(timing.stall))" : e.message
            notice?("\(endpoint.registry): \(why) (\(doing)); retrying; giving up after \(Self.seconds(idleLimit)) without progress")
            try pause(min(backoff(attempt), left))
            attempt += 1
            return
        }
        if t.stalled || (t.transient && left <= 0.05) { throw stalledError(doing, received: received, of: total) }
        throw transportError(e, url: url)
    }

    // MARK: errors

    /// The wait before a retry; a stop signal (Ctrl-C) ends it and the command.
    func pause(_ seconds: Double) throws {
        let end = Date().addingTimeInterval(seconds)
        while true {
            let sig = csys_stop_signal()
            if sig != 0 { throw CtrError(.interrupted(signal: sig), "interrupted") }
            let left = end.timeIntervalSinceNow
            if left <= 0 { return }
            Thread.sleep(forTimeInterval: min(left, 0.05))
        }
    }

    /// A transport failure as the user sees it: what to do about it, its code kept.
    func transportError(_ e: CtrError, url: String) -> CtrError {
        let detail = e.message
        let message: String
        switch e.transport?.kind ?? .other {
        case .resolve:
            message = "cannot resolve \(hostOnly(host)): check the registry name (\(detail))"
        case .connect:
            message = "cannot connect to \(host): \(detail) (is the registry running, and is the port right?)"
        case .certificate:
            message = "\(host): the registry's TLS certificate is not trusted (\(detail)); put its CA in /etc/containers/certs.d/\(host)/ca.crt or ~/.config/containers/certs.d/\(host)/ca.crt, or use --tls-verify=false"
        case .tls:
            // libcurl's words for a plain HTTP answer to a TLS hello (OpenSSL's text, not ours)
            let hint = detail.contains("wrong version number") || detail.contains("record")
                ? " (it may serve plain HTTP: use --tls-verify=false or mark it insecure in registries.conf)" : ""
            message = "\(host): TLS handshake failed: \(detail)\(hint)"
        case .timeout:
            message = "\(host): timed out: \(detail)"
        case .cut:
            message = "\(host): the connection was cut: \(detail)"
        case .tooLarge:
            message = "\(host): \(url): \(detail)"
        case .write, .other:
            message = "\(host): \(detail)"
        }
        return CtrError(e.code, message, cause: e)
    }

    func hostOnly(_ h: String) -> String {
        if h.hasPrefix("[") { return h }
        return h.split(separator: ":").first.map(String.init) ?? h
    }

    /// The registry's error document, as one line.
    public static func describe(_ resp: HTTPResponse) -> (String, String?) {
        struct Doc: Decodable {
            struct E: Decodable { var code: String?; var message: String? }
            var errors: [E]?
        }
        if let doc = try? JSONDecoder().decode(Doc.self, from: resp.body), let errs = doc.errors, !errs.isEmpty {
            let text = errs.map { e in [e.code, e.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ")
            return (text, errs.first?.code)
        }
        let body = String(decoding: resp.body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let reasons = [400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                       409: "Conflict", 413: "Payload Too Large", 416: "Range Not Satisfiable", 429: "Too Many Requests",
                       500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"]
        let reason = reasons[resp.status] ?? ""
        return (body.isEmpty || body.hasPrefix("<") ? "HTTP \(resp.status) \(reason)" : "HTTP \(resp.status): \(body.replacingOccurrences(of: "\n", with: " "))", nil)
    }

    func statusError(_ resp: HTTPResponse, doing: String) -> CtrError {
        let (text, code) = Self.describe(resp)
        if resp.status == 401 {
            if let c = endpoint.credentials {
                return .authentication("\(endpoint.registry): authentication failed for \(c.username) (\(text)): check the username and password, or run `ctr login \(endpoint.registry)`")
            }
            let hint = endpoint.missingHelper?().map { ", or install \($0)" } ?? ""
            return .authentication("\(endpoint.registry): authentication required (\(text)): run `ctr login \(endpoint.registry)`\(hint)")
        }
        if resp.status == 403 {
            return .registry("\(endpoint.registry): access denied \(doing) (\(text))", status: 403, code: code)
        }
        return .registry("\(endpoint.registry): \(text) (\(doing))", status: resp.status, code: code)
    }

    // MARK: ping and auth

    /// GET /v2/: decides https or http (insecure registries only) and learns the auth scheme.
    public func ping() throws {
        lock.lock()
        let done = pinged
        lock.unlock()
        if done { return }
        var schemes = ["https"]
        if endpoint.insecure { schemes.append("http") }
        var lastError: CtrError?
        for scheme in schemes {
            let url = "\(scheme)://\(host)/v2/"
            let timing = HTTPTiming(connect: min(20, idleLimit), stall: idleLimit)
            do {
                let resp = try pool.with { try $0.perform(HTTPRequest(url: url), tls: endpoint.tls, timing: timing) }
                if resp.status == 404 {
                throw CtrError.registry("\(host) does not look like a registry (GET /v2/ answered 404)", status: 404)
                }
                lock.lock()
                baseURL = "\(scheme)://\(host)"
                challenge = resp.status == 401 ? resp.wwwAuthenticate.compactMap(AuthChallenge.parse).first : nil
                pinged = true
                lock.unlock()
                return
            } catch let e as CtrError where e.transport != nil {
                if e.transport!.stalled { throw stalledError("GET \(url)") }
                lastError = transportError(e, url: url)
                // a TLS failure or refusal on https: try plain http when allowed
                continue
            }
        }
        throw lastError ?? CtrError(.transport(.init(.connect)), "\(host): unreachable")
    }

    public var base: String {
        lock.lock()
        defer { lock.unlock() }
        return baseURL ?? "https://\(host)"
    }

    /// A bearer token for the scopes (cached), or nil when the registry wants none.
    func authorization(scopes: [String], refresh: Bool = false) throws -> String? {
        lock.lock()
        let ch = challenge
        lock.unlock()
        guard let ch else { return nil }
        if ch.scheme == "basic" {
            guard let c = endpoint.credentials else { return nil }
            return "Basic " + Data("\(c.username):\(c.password)".utf8).base64EncodedString()
        }
        guard ch.scheme == "bearer", let realm = ch.params["realm"] else { return nil }
        let key = scopes.sorted().joined(separator: " ")
        func cached() -> String? {
            lock.lock()
            defer { lock.unlock() }
            return tokens[key]
        }
        if !refresh, let t = cached() { return "Bearer " + t }
        tokenFetch.lock()
        defer { tokenFetch.unlock() }
        // another transfer may have fetched it while this one waited
        if !refresh, let t = cached() { return "Bearer " + t }
        var comps = URLComponents(string: realm)
        var items = comps?.queryItems ?? []
        if let service = ch.params["service"] { items.append(URLQueryItem(name: "service", value: service)) }
        for s in scopes { items.append(URLQueryItem(name: "scope", value: s)) }
        comps?.queryItems = items.isEmpty ? nil : items
        guard let url = comps?.string else { throw CtrError.registry("\(endpoint.registry): bad token realm \(realm)") }
        var headers: [String: String] = [:]
        if let c = endpoint.credentials {
            headers["Authorization"] = "Basic " + Data("\(c.username):\(c.password)".utf8).base64EncodedString()
        }
        let resp: HTTPResponse
        do {
            resp = try pool.with { try $0.perform(HTTPRequest(url: url, headers: headers), tls: endpoint.tls, timing: patience("GET").timing) }
        } catch let e as CtrError where e.transport != nil {
            if e.transport!.stalled { throw stalledError("getting a token from \(realm)") }
            throw transportError(e, url: url)
        }
        guard (200..<300).contains(resp.status) else {
            throw statusError(resp, doing: "getting a token from \(realm)")
        }
        struct Token: Decodable { var token: String?; var access_token: String? }
        guard let t = try? JSONDecoder().decode(Token.self, from: resp.body), let token = t.token ?? t.access_token else {
            throw CtrError.authentication("\(endpoint.registry): the token server \(realm) answered without a token")
        }
        lock.lock()
        tokens[key] = token
        lock.unlock()
        return "Bearer " + token
    }

    /// Update the challenge from a 401 (it may name a wider scope).
    func learn(_ resp: HTTPResponse) {
        guard let ch = resp.wwwAuthenticate.compactMap(AuthChallenge.parse).first else { return }
        lock.lock()
        challenge = AuthChallenge(scheme: ch.scheme, params: ch.params.filter { $0.key != "scope" && $0.key != "error" })
        lock.unlock()
    }

    public static func isTransientStatus(_ s: Int) -> Bool {
        s == 429 || s == 408 || (s >= 500 && s != 501 && s != 505)
    }

    func retryDelay(_ resp: HTTPResponse?, attempt: Int) -> Double {
        if let ra = resp?.header("Retry-After"), let secs = Double(ra.trimmingCharacters(in: .whitespaces)) {
            return min(max(secs, 0), 60)
        }
        return backoff(attempt)
    }

    /// A 5xx or 429 answer: say so and wait for the next attempt (true), or false when the
    /// attempts are used up or the wait would outlast the request's patience (the registry's
    /// error is then the answer).
    func retryStatus(_ resp: HTTPResponse, attempt: inout Int, patience: Patience, doing: String) throws -> Bool {
        guard Self.isTransientStatus(resp.status) && attempt + 1 < maxAttempts else { return false }
        let delay = retryDelay(resp, attempt: attempt)
        guard delay < patience.remaining else { return false }
        notice?("\(endpoint.registry): \(Self.describe(resp).0) (\(doing)); retrying in \(Self.seconds(delay))")
        try pause(delay)
        attempt += 1
        return true
    }

    /// Send a request to a path (or absolute URL) under the registry, authenticated for the
    /// scopes, retrying transient failures. Returns any response with a status below 400, or
    /// 404 when `allow404`; other statuses throw the registry's error.
    public func send(_ method: String, _ pathOrURL: String, scopes: [String], headers: [String: String] = [:],
                     body: HTTPRequest.Body = .none, sink: BodySink = BodySink(maxMemory: 1 << 20),
                     followRedirects: Bool = true, allow404: Bool = false, doing: String) throws -> HTTPResponse {
        try ping()
        let url = pathOrURL.hasPrefix("http://") || pathOrURL.hasPrefix("https://") ? pathOrURL : base + pathOrURL
        var refreshed = false
        var attempt = 0
        var patience = patience(method)
        while true {
            if attempt > 0 && patience.remaining <= 0.05 { throw stalledError(doing) }
            var req = HTTPRequest(method: method, url: url, headers: headers, body: body)
            req.followRedirects = followRedirects
            if let auth = try authorization(scopes: scopes) { req.headers["Authorization"] = auth }
            let resp: HTTPResponse
            let timing = patience.timing
            do {
                resp = try pool.with { try $0.perform(req, tls: endpoint.tls, sink: sink, timing: timing) }
            } catch let e as CtrError where e.transport != nil {
                try retryAfter(e, attempt: &attempt, patience: &patience, timing: timing, url: url, doing: doing)
                continue
            }
            if resp.status == 401 && !refreshed {
                refreshed = true
                learn(resp)
                lock.lock()
                tokens.removeAll()
                lock.unlock()
                continue
            }
            if try retryStatus(resp, attempt: &attempt, patience: patience, doing: doing) { continue }
            if resp.status < 400 || (allow404 && resp.status == 404) { return resp }
            throw statusError(resp, doing: doing)
        }
    }

    // MARK: the protocol

    public static let manifestAccept = [
        MediaType.ociIndex, .ociManifest, .dockerManifestList, .dockerManifest,
    ].map(\.rawValue).joined(separator: ", ")

    public static let maxManifestSize = 4 << 20

    public func pullScope(_ repo: String) -> String { "repository:\(repo):pull" }
    public func pushScope(_ repo: String) -> String { "repository:\(repo):pull,push" }

    /// "team/app:1.0", or "team/app@sha256:…" for a digest, as references are written.
    static func named(_ repo: String, _ reference: String) -> String {
        "\(repo)\(reference.contains(":") ? "@" : ":")\(reference)"
    }

    /// GET a manifest or index by tag or digest, checked against `Docker-Content-Digest` and,
    /// for a digest reference, against the digest asked for.
    public func manifest(repo: String, reference: String, expected: Digest? = nil) throws -> (Data, Descriptor) {
        let resp: HTTPResponse
        do {
            resp = try send("GET", "/v2/\(repo)/manifests/\(reference)", scopes: [pullScope(repo)],
                            headers: ["Accept": Self.manifestAccept], sink: BodySink(maxMemory: Self.maxManifestSize),
                            doing: "getting manifest \(Self.named(repo, reference))")
        } catch let e as CtrError where e.transport?.kind == .tooLarge {
            throw CtrError.invalid("\(endpoint.registry): the manifest of \(Self.named(repo, reference)) is larger than 4 MiB; refusing it", cause: e)
        }
        let data = resp.body
        // before the digest: a signed schema 1 manifest's digest is not over its bytes
        let served = resp.header("Content-Type").map { MediaType(String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces)) }
        if let problem = ManifestSchema.problem(data, mediaType: served) {
            throw CtrError.invalid("\(endpoint.registry): \(Self.named(repo, reference)) \(problem)")
        }
        let actual = Digest.sha256(data)
        if let header = resp.header("Docker-Content-Digest"), let d = try? Digest(parsing: header), d.algorithm == "sha256", d != actual {
            throw CtrError.invalid("\(endpoint.registry): manifest \(Self.named(repo, reference)) does not match its Docker-Content-Digest \(d) (its content hashes to \(actual))")
        }
        if let expected, expected != actual {
            throw CtrError.invalid("\(endpoint.registry): manifest \(repo)@\(expected) failed verification: its content hashes to \(actual)")
        }
        var media = resp.header("Content-Type").map { MediaType(String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces)) }
        if media == nil || !(media!.isManifest || media!.isIndex) {
            // fall back to the document's own mediaType field
            struct M: Decodable { var mediaType: String?; var manifests: [EmptyObject]? }
            let m = try? JSONDecoder().decode(M.self, from: data)
            if let t = m?.mediaType {
                media = MediaType(t)
            } else {
                media = m?.manifests != nil ? MediaType.ociIndex : MediaType.ociManifest
            }
        }
        return (data, Descriptor(mediaType: media!, digest: actual, size: Int64(data.count)))
    }

    /// GET a small blob (a config) into memory, verified.
    public func smallBlob(repo: String, _ d: Descriptor) throws -> Data {
        let resp = try send("GET", "/v2/\(repo)/blobs/\(d.digest)", scopes: [pullScope(repo)],
                            sink: BodySink(maxMemory: max(Int(d.size), 1) + 1), doing: "getting blob \(d.digest)")
        do {
            try ImageCopy.verify(resp.body, d)
        } catch let e as CtrError {
            throw CtrError.invalid("\(endpoint.registry): \(e.message)", cause: e)
        }
        return resp.body
    }

    /// Stream a blob into `fds`, hashing it, resuming after transient failures with Range (or
    /// by skipping what was already received when the registry ignores Range), and check its
    /// digest and size.
    /// `verifyDigest: false` when the reader of `fds` hashes the bytes itself (a layer job).
    public func downloadBlob(repo: String, _ d: Descriptor, to fds: [Int32], progress: UnsafeMutablePointer<UInt64>? = nil,
                             verifyDigest: Bool = true, from offset: UInt64 = 0) throws {
        precondition(offset == 0 || !verifyDigest, "a digest is checked over the whole blob")
        try ping()
        guard let hasher = csys_sha256_new() else { throw CtrError.internal("out of memory") }
        defer { csys_sha256_free(hasher) }
        var received: UInt64 = offset
        var attempt = 0
        var refreshed = false
        var patience = patience("GET")
        let url = base + "/v2/\(repo)/blobs/\(d.digest)"
        let doing = "getting blob \(d.digest)"
        while true {
            if attempt > 0 && patience.remaining <= 0.05 { throw stalledError(doing, received: received, of: d.size) }
            var req = HTTPRequest(url: url)
            if let auth = try authorization(scopes: [pullScope(repo)]) { req.headers["Authorization"] = auth }
            let timing = patience.timing
            let result: Result<HTTPResponse, CtrError> = try pool.with { client in
                Result { () throws(CtrError) -> HTTPResponse in
                    try client.performResumable(req, tls: endpoint.tls, fds: fds, hasher: verifyDigest ? hasher : nil, progress: progress,
                                                resumeFrom: received, limit: UInt64(d.size), timing: timing)
                }
            }
            switch result {
            case .failure(let e):
                if e.transport?.kind == .tooLarge {
                    throw CtrError.invalid("\(endpoint.registry): blob \(d.digest) is larger than its descriptor says (\(d.size) bytes)")
                }
                received += e.transport?.received ?? 0
                try retryAfter(e, attempt: &attempt, patience: &patience, timing: timing, url: url, doing: doing, received: received, of: d.size)
                continue
            case .success(let resp):
                if resp.status == 401 && !refreshed {
                    refreshed = true
                    learn(resp)
                    lock.lock(); tokens.removeAll(); lock.unlock()
                    continue
                }
                if try retryStatus(resp, attempt: &attempt, patience: patience, doing: doing) { continue }
                if resp.status >= 400 { throw statusError(resp, doing: doing) }
                received += resp.received
                if received < UInt64(d.size) && attempt + 1 < maxAttempts {
                    // the body ended early without an error: resume
                    if resp.received > 0 { patience.noteProgress(monotonicSeconds()) }
                    notice?("\(endpoint.registry): blob \(d.digest) ended after \(received) of \(d.size) bytes; resuming")
                    attempt += 1
                    continue
                }
                var out = [UInt8](repeating: 0, count: 32)
                csys_sha256_final(hasher, &out)
                let actual = Digest(sha256Bytes: out)
                if received != UInt64(d.size) {
                    throw CtrError(.transport(.init(.cut, received: received)), "\(endpoint.registry): blob \(d.digest) ended after \(received) of \(d.size) bytes")
                }
                if verifyDigest && actual != d.digest {
                    throw CtrError.invalid("\(endpoint.registry): blob \(d.digest) failed verification: what the registry sent hashes to \(actual)")
                }
                return
            }
        }
    }
}

extension HTTPClient {
    /// A GET whose 2xx body goes to fds and the hasher, continuing from `resumeFrom`.
    func performResumable(_ req: HTTPRequest, tls: TLSSettings, fds: [Int32], hasher: OpaquePointer?,
                          progress: UnsafeMutablePointer<UInt64>?, resumeFrom: UInt64, limit: UInt64,
                          timing: HTTPTiming) throws(CtrError) -> HTTPResponse {
        var sink = BodySink(maxMemory: 0, fds: fds, hasher: hasher, progress: progress)
        sink.resumeFrom = resumeFrom
        sink.limit = limit
        return try perform(req, tls: tls, sink: sink, timing: timing)
    }
}
