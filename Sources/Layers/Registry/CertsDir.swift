import Errors
import Foundation

// Per-registry TLS material in certs.d directories, as containers/image (podman, skopeo) and Docker
// read it: `HOST[:PORT]/*.crt` are extra CA certificates (added to the system roots), `NAME.cert` with
// `NAME.key` is a client certificate.

/// TLS files for one registry.
public struct TLSMaterial: Sendable, Equatable {
    /// CA certificates (PEM), sorted by file name; to be trusted in addition to the system roots.
    public var caFiles: [String]
    /// Client certificate and key (PEM). With several pairs in a directory, the first by name.
    public var clientCert: String?
    public var clientKey: String?

    public init(caFiles: [String] = [], clientCert: String? = nil, clientKey: String? = nil) {
        self.caFiles = caFiles
        self.clientCert = clientCert
        self.clientKey = clientKey
    }

    public var isEmpty: Bool { caFiles.isEmpty && clientCert == nil }

    /// The CA files concatenated (for `TLSSettings.caPEM`), or nil when there are none.
    public func caBundle() throws -> Data? {
        guard !caFiles.isEmpty else { return nil }
        var out = Data()
        for f in caFiles {
            do {
                var d = try Data(contentsOf: URL(fileURLWithPath: f))
                if d.last != UInt8(ascii: "\n") { d.append(UInt8(ascii: "\n")) }
                out.append(d)
            } catch {
                throw CtrError.invalid("\(f): cannot read: \(describeIOError(error))")
            }
        }
        return out
    }
}

public enum CertsDir {
    /// The certs.d roots containers/image searches, in order: `~/.config/containers/certs.d`,
    /// `/etc/containers/certs.d`, `/etc/docker/certs.d`.
    public static func defaultDirs(home: String) -> [String] {
        [joinPath(home, ".config/containers/certs.d"), "/etc/containers/certs.d", "/etc/docker/certs.d"]
    }

    /// The directory used for `host` ("registry.example.com:5000"; "docker.io" for Docker Hub):
    /// `ROOT/HOST` in the first root where it exists (directories are not merged), or nil.
    public static func directory(for host: String, dirs: [String]) throws -> String? {
        try validate(host)
        for root in dirs {
            let candidate = joinPath(root, host)
            var st = stat()
            if stat(candidate, &st) == 0 { return candidate }
            // Missing or not accessible: try the next root, as containers/image does.
            if errno == ENOENT || errno == ENOTDIR || errno == EACCES || errno == EPERM { continue }
            throw CtrError.invalid("\(candidate): \(String(cString: strerror(errno)))")
        }
        return nil
    }

    /// TLS material for `host` from the first certs.d root that has a `HOST[:PORT]` directory; with
    /// `certDir` (`--cert-dir`), only that directory (not joined with the host) is read.
    public static func material(for host: String, dirs: [String], certDir: String? = nil) throws -> TLSMaterial {
        if let certDir { return try material(inDirectory: certDir) }
        guard let dir = try directory(for: host, dirs: dirs) else { return TLSMaterial() }
        return try material(inDirectory: dir)
    }

    /// Reads one directory: `*.crt` CA files, `*.cert`/`*.key` pairs. A `.cert` without its `.key` (or
    /// the reverse) is an error naming it. A missing or unreadable directory yields no material.
    public static func material(inDirectory dir: String) throws -> TLSMaterial {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: dir)
                .sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        } catch {
            return TLSMaterial()
        }
        let files = Set(names)
        var m = TLSMaterial()
        for name in names {
            let path = joinPath(dir, name)
            if name.hasSuffix(".crt") {
                if isDirectoryPath(path) { continue }
                m.caFiles.append(path)
            } else if name.hasSuffix(".cert") {
                let key = String(name.dropLast(".cert".count)) + ".key"
                guard files.contains(key) else {
                    throw CtrError.invalid("missing key \(key) for client certificate \(path). Note that CA certificates should use the extension .crt")
                }
                if m.clientCert == nil {
                    m.clientCert = path
                    m.clientKey = joinPath(dir, key)
                }
            } else if name.hasSuffix(".key") {
                let cert = String(name.dropLast(".key".count)) + ".cert"
                guard files.contains(cert) else {
                    throw CtrError.invalid("missing client certificate \(cert) for key \(path)")
                }
            }
        }
        return m
    }

    static func validate(_ host: String) throws {
        if host.isEmpty || host.contains("/") || host.hasPrefix(".") || host.contains("\0") {
            throw CtrError.invalid("invalid registry host \"\(host)\" for certs.d lookup")
        }
    }

    static func isDirectoryPath(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
