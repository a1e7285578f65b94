import Foundation
import HostOS
import Testing

/// Debian's docker-registry (the CNCF distribution server) on 127.0.0.1, started once per test
/// process: one plain-HTTP instance and one with TLS (a CA made here) and htpasswd auth.
final class TestRegistry: @unchecked Sendable {
    let addr: String          // "127.0.0.1:PORT"
    let dir: String
    let tls: Bool
    let process: ChildProcess
    static let user = "tester"
    static let password = "s3cret-pw"

    static let binary: String? = {
        let candidates: [String] = ["/usr/bin/docker-registry", "/usr/bin/registry"]
        return candidates.first { access($0, X_OK) == 0 }
    }()
    static var available: Bool { binary != nil && TestEnv.have("htpasswd") && TestEnv.have("openssl") }
    static let skipReason = "docker-registry, htpasswd or openssl missing: \(TestEnv.setupHint)"

    static let plain: TestRegistry? = try? TestRegistry(tls: false)
    static let secure: TestRegistry? = try? TestRegistry(tls: true)
    /// Plain HTTP that takes Docker schema 1 manifests (as registries that still serve old
    /// images do), pushed with `skopeo copy --format v2s1`.
    static let schema1: TestRegistry? = try? TestRegistry(tls: false, schema1: true)

    /// The test CA's certificate (PEM), for certs.d.
    var caPath: String { "\(dir)/ca.crt" }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    init(tls: Bool, schema1: Bool = false) throws {
        guard let bin = Self.binary else { throw CocoaError(.fileNoSuchFile) }
        self.tls = tls
        let port = Self.freePort()
        addr = "127.0.0.1:\(port)"
        dir = (TestEnv.amRoot ? "/var/tmp/ctr-tests" : NSTemporaryDirectory() + "ctr-tests") + "/registry-\(tls ? "tls" : schema1 ? "schema1" : "plain")-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: "\(dir)/data", withIntermediateDirectories: true)
        chmod(dir, 0o755)
        var config = """
        version: 0.1
        log:
          level: error
          accesslog:
            disabled: true
        storage:
          filesystem:
            rootdirectory: \(dir)/data
          delete:
            enabled: true
        http:
          addr: \(addr)

        """
        if schema1 {
            config += """
            compatibility:
              schema1:
                enabled: true

            """
        }
        if tls {
            let sh = """
            set -e
            cd \(dir)
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=ctr test CA' 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null
            htpasswd -Bbn \(Self.user) \(Self.password) > htpasswd
            chmod 644 ca.crt
            """
            let r = try Workspace.exec("/bin/sh", ["-c", sh])
            guard r.status == 0 else { throw CocoaError(.fileWriteUnknown) }
            config += """
              tls:
                certificate: \(dir)/server.crt
                key: \(dir)/server.key
            auth:
              htpasswd:
                realm: ctr-test
                path: \(dir)/htpasswd

            """
        }
        try config.write(toFile: "\(dir)/config.yml", atomically: true, encoding: .utf8)
        process = try Command(bin, ["serve", "\(dir)/config.yml"], fds: [-1, -1, -1]).spawn()
        let pid = process.pid
        atexit_pids.append(pid)
        atexit_dirs.append(dir)
        if !registeredAtexit {
            registeredAtexit = true
            // the registries stop and their storage (hundreds of MB) goes with the test process
            atexit {
                for p in atexit_pids { kill(p, SIGKILL) }
                for p in atexit_pids { var st: Int32 = 0; waitpid(p, &st, 0) }
                for d in atexit_dirs { _ = try? Workspace.exec("/bin/rm", ["-rf", d]) }
            }
        }
        // wait until it answers
        for _ in 0..<100 {
            let r = try Workspace.exec("/usr/bin/curl", ["-sk", "-o", "/dev/null", "-w", "%{http_code}", "\(tls ? "https" : "http")://\(addr)/v2/"])
            if r.stdout == "200" || r.stdout == "401" { return }
            usleep(100_000)
        }
        throw CocoaError(.fileReadUnknown)
    }
}

nonisolated(unsafe) private var atexit_pids: [pid_t] = []
nonisolated(unsafe) private var atexit_dirs: [String] = []
nonisolated(unsafe) private var registeredAtexit = false

extension Workspace {
    /// A HOME of the test's own under its directory: auth files and certs.d stay per test.
    var home: String { "\(dir)/home" }

    func makeHome() throws {
        try bash("mkdir -p home/.config/containers run && chmod 700 home run")
    }

    /// Trust the TLS test registry's CA through ~/.config/containers/certs.d.
    func trust(_ reg: TestRegistry) throws {
        try makeHome()
        let r = try bash("mkdir -p home/.config/containers/certs.d/\(reg.addr) && cp \(reg.caPath) home/.config/containers/certs.d/\(reg.addr)/ca.crt")
        #expect(r.status == 0, "\(r)")
    }

    /// ctr with this workspace's HOME and runtime dir (`run`, where `login` writes), so no test
    /// reads or writes the machine's auth files (root's is /run/containers/0/auth.json).
    @discardableResult
    func ctrHome(_ args: [String], env: [String: String] = [:], stdin: Data? = nil, root: String? = nil) throws -> RunResult {
        var e = env
        e["HOME"] = home
        e["XDG_RUNTIME_DIR"] = e["XDG_RUNTIME_DIR"] ?? "\(dir)/run"
        return try ctr(args, env: e, stdin: stdin, root: root)
    }
}
