import Errors
import Foundation

/// The upload half of the protocol.
extension RegistryClient {
    /// HEAD a blob: does the repository have it?
    public func blobExists(repo: String, _ d: Digest) throws -> Bool {
        let resp = try send("HEAD", "/v2/\(repo)/blobs/\(d)", scopes: [pushScope(repo)], allow404: true,
                            doing: "checking blob \(d)")
        return resp.status == 200
    }

    func absolute(_ location: String) -> String {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return location }
        return base + (location.hasPrefix("/") ? location : "/" + location)
    }

    static func withDigest(_ location: String, _ d: Digest) -> String {
        let enc = d.string.replacingOccurrences(of: ":", with: "%3A")
        return location + (location.contains("?") ? "&" : "?") + "digest=" + enc
    }

    public enum MountResult: Sendable { case mounted, upload(location: String) }

    /// Ask the registry to mount a blob from another repository of its own; when it cannot,
    /// the answer is an upload session to use instead.
    public func mountBlob(repo: String, _ d: Digest, from source: String) throws -> MountResult {
        let enc = d.string.replacingOccurrences(of: ":", with: "%3A")
        let resp = try send("POST", "/v2/\(repo)/blobs/uploads/?mount=\(enc)&from=\(source)",
                            scopes: [pushScope(repo), pullScope(source)], doing: "mounting blob \(d) from \(source)")
        if resp.status == 201 { return .mounted }
        guard let loc = resp.header("Location") else {
            throw CtrError.registry("\(endpoint.registry): no upload location for blob \(d)")
        }
        return .upload(location: absolute(loc))
    }

    /// Start an upload session.
    public func startUpload(repo: String) throws -> String {
        let resp = try send("POST", "/v2/\(repo)/blobs/uploads/", scopes: [pushScope(repo)], doing: "starting an upload")
        guard resp.status == 202, let loc = resp.header("Location") else {
            throw CtrError.registry("\(endpoint.registry): the registry did not start an upload (HTTP \(resp.status))", status: resp.status)
        }
        return absolute(loc)
    }

    /// Upload a file in one PUT.
    public func uploadMonolithic(repo: String, location: String, file: String, _ d: Descriptor) throws {
        let resp = try send("PUT", Self.withDigest(location, d.digest), scopes: [pushScope(repo)],
                            headers: ["Content-Type": "application/octet-stream"],
                            body: .file(path: file, offset: 0, size: d.size), doing: "uploading blob \(d.digest)")
        try checkCreated(resp, d)
    }

    /// Upload a file in PATCH chunks, then close the session with a PUT.
    public func uploadChunked(repo: String, location: String, file: String, _ d: Descriptor, chunkSize: Int64) throws {
        var loc = location
        var offset: Int64 = 0
        while offset < d.size {
            let n = min(chunkSize, d.size - offset)
            let resp = try send("PATCH", loc, scopes: [pushScope(repo)],
                                headers: ["Content-Type": "application/octet-stream",
                                          "Content-Range": "\(offset)-\(offset + n - 1)"],
                                body: .file(path: file, offset: offset, size: n), doing: "uploading blob \(d.digest)")
            guard resp.status == 202 else {
                throw CtrError.registry("\(endpoint.registry): chunk upload of \(d.digest) answered HTTP \(resp.status)", status: resp.status)
            }
            if let l = resp.header("Location") { loc = absolute(l) }
            offset += n
        }
        let resp = try send("PUT", Self.withDigest(loc, d.digest), scopes: [pushScope(repo)],
                            doing: "finishing the upload of \(d.digest)")
        try checkCreated(resp, d)
    }

    func checkCreated(_ resp: HTTPResponse, _ d: Descriptor) throws {
        guard resp.status == 201 || resp.status == 204 || resp.status == 200 else {
            throw CtrError.registry("\(endpoint.registry): uploading \(d.digest) answered HTTP \(resp.status)", status: resp.status)
        }
        if let h = resp.header("Docker-Content-Digest"), let got = try? Digest(parsing: h), got != d.digest {
            throw CtrError.registry("\(endpoint.registry): the registry stored \(got) for blob \(d.digest)")
        }
    }

    /// PUT a manifest under a tag or its digest; checks the digest the registry reports.
    public func putManifest(repo: String, reference: String, data: Data, mediaType: MediaType) throws -> Digest {
        let digest = Digest.sha256(data)
        let resp = try send("PUT", "/v2/\(repo)/manifests/\(reference)", scopes: [pushScope(repo)],
                            headers: ["Content-Type": mediaType.rawValue], body: .data(data),
                            doing: "putting manifest \(Self.named(repo, reference))")
        guard resp.status == 201 || resp.status == 200 else {
            throw CtrError.registry("\(endpoint.registry): putting manifest \(Self.named(repo, reference)) answered HTTP \(resp.status)", status: resp.status)
        }
        if let h = resp.header("Docker-Content-Digest"), let got = try? Digest(parsing: h), got != digest {
            throw CtrError.registry("\(endpoint.registry): the registry stored manifest \(got), ctr sent \(digest)")
        }
        return digest
    }

    /// Check credentials: GET /v2/ (basic) or a token (bearer) with them.
    public func checkLogin() throws {
        try ping()
        _ = try send("GET", "/v2/", scopes: [], doing: "logging in")
    }
}
