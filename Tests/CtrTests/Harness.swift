import Foundation
import HostOS
import Testing

/// Who runs ctr in a test: root, an unprivileged user with subordinate ids (rootless), or an
/// unprivileged user without them (the single-mapping fallback).
enum Who: String, CustomTestStringConvertible, Sendable, CaseIterable {
    case root, rootless, nosub
    var testDescription: String { rawValue }

    var user: String? {
        switch self {
        case .root: return nil
        case .rootless: return TestEnv.amRoot ? "ctrtest" : nil
        case .nosub: return "ctrnosub"
        }
    }

    var available: Bool {
        switch self {
        case .root: return TestEnv.amRoot
        case .rootless: return TestEnv.amRoot ? TestEnv.userExists("ctrtest") : TestEnv.selfHasSubuids
        case .nosub: return TestEnv.amRoot && TestEnv.userExists("ctrnosub")
        }
    }

    /// The host uid of container uid `id` for this user (nil: not mapped).
    func hostUID(_ id: UInt32) -> UInt32? {
        switch self {
        case .root: return id
        case .nosub: return id == 0 ? TestEnv.uid(of: "ctrnosub") : nil
        case .rootless:
            let name = user ?? TestEnv.currentUserName
            let own = user.flatMap { TestEnv.uid(of: $0) } ?? getuid()
            if id == 0 { return own }
            guard let (start, count) = TestEnv.subRange(file: "/etc/subuid", user: name), id - 1 < count else { return nil }
            return start + id - 1
        }
    }
}

enum TestEnv {
    static let amRoot = getuid() == 0
    static let fixtures = ProcessInfo.processInfo.environment["CTR_FIXTURES"] ?? "/var/tmp/ctr-fixtures"
    static let busyboxTar = "\(fixtures)/busybox.tar"
    static var haveBusybox: Bool { access(busyboxTar, R_OK) == 0 }
    static let debianTar = "\(fixtures)/debian-bookworm.tar"
    static var haveDebian: Bool { access(debianTar, R_OK) == 0 }
    static let setupHint = "run scripts/setup.sh (it installs packages, test users and fixtures)"

    static var currentUserName: String { String(cString: getpwuid(getuid())!.pointee.pw_name) }

    static func userExists(_ name: String) -> Bool { getpwnam(name) != nil }
    static func uid(of name: String) -> UInt32? { getpwnam(name).map { $0.pointee.pw_uid } }

    static func subRange(file: String, user: String) -> (UInt32, UInt32)? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":")
            if f.count == 3, f[0] == user, let s = UInt32(f[1]), let c = UInt32(f[2]) { return (s, c) }
        }
        return nil
    }

    static var selfHasSubuids: Bool { subRange(file: "/etc/subuid", user: currentUserName) != nil }

    static func have(_ tool: String) -> Bool {
        for d in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] where access("\(d)/\(tool)", X_OK) == 0 { return true }
        return false
    }

    /// The ctr binary, copied where the unprivileged test users can run it.
    static let binary: String = {
        let built: String
        if let b = ProcessInfo.processInfo.environment["CTR_BIN"] {
            built = b
        } else {
            // Tests/CtrTests/Harness.swift → package root
            let pkg = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            built = pkg.appendingPathComponent(".build/debug/ctr").path
        }
        guard amRoot else { return built }
        let dir = "/var/tmp/ctr-tests/bin-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod("/var/tmp/ctr-tests", 0o755)
        chmod(dir, 0o755)
        let dst = "\(dir)/ctr"
        unlink(dst)
        try? FileManager.default.copyItem(atPath: built, toPath: dst)
        chmod(dst, 0o755)
        // the copy (some 90 MB) goes with the test process
        copiedBinaryDir = dir
        atexit {
            if let d = TestEnv.copiedBinaryDir { unlink("\(d)/ctr"); rmdir(d) }
        }
        return dst
    }()
    nonisolated(unsafe) static var copiedBinaryDir: String?
}

struct RunResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// A scratch directory owned by the test's user, and ctr runs as that user with its own store.
final class Workspace: @unchecked Sendable {
    let who: Who
    let dir: String
    var store: String { "\(dir)/store" }

    init(_ who: Who) throws {
        self.who = who
        let base = TestEnv.amRoot ? "/var/tmp/ctr-tests" : NSTemporaryDirectory() + "ctr-tests"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        chmod(base, 0o1777)
        dir = "\(base)/\(who.rawValue)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let u = who.user, let uid = TestEnv.uid(of: u) {
            let gid = getpwnam(u)!.pointee.pw_gid
            chown(dir, uid, gid)
        }
    }

    deinit {
        if TestEnv.amRoot {
            _ = try? Self.exec("/bin/rm", ["-rf", dir])
        } else {
            // files of subordinate ids need the user namespace to go
            _ = try? Self.exec("/usr/bin/podman", ["unshare", "rm", "-rf", dir])
            _ = try? Self.exec("/bin/rm", ["-rf", dir])
        }
    }

    /// Run ctr as this sandbox's user with CTR_ROOT set to the sandbox's store.
    @discardableResult
    func ctr(_ args: String..., env: [String: String] = [:], stdin: Data? = nil) throws -> RunResult {
        try ctr(args, env: env, stdin: stdin)
    }

    @discardableResult
    func ctr(_ args: [String], env: [String: String] = [:], stdin: Data? = nil, root: String? = nil) throws -> RunResult {
        var e = ["CTR_ROOT": root ?? store, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"]
        for (k, v) in env { e[k] = v }
        return try sh([TestEnv.binary] + args, env: e, stdin: stdin)
    }

    /// Run a command as this workspace's user, in its directory, with a clean environment
    /// (only `env`, PATH and HOME), so tests do not see the caller's auth or config files.
    @discardableResult
    func sh(_ argv: [String], env: [String: String] = [:], stdin: Data? = nil) throws -> RunResult {
        var e = env
        if e["PATH"] == nil { e["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" }
        if e["LANG"] == nil { e["LANG"] = "C.UTF-8" }
        if let u = who.user {
            let home = String(cString: getpwnam(u)!.pointee.pw_dir)
            e["HOME"] = e["HOME"] ?? home
            e["USER"] = u
            let envArgs = e.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return try Self.exec("/usr/sbin/runuser", ["-u", u, "--", "/usr/bin/env", "-i"] + envArgs + argv, cwd: dir, stdin: stdin)
        }
        e["HOME"] = e["HOME"] ?? (ProcessInfo.processInfo.environment["HOME"] ?? "/root")
        e["USER"] = e["USER"] ?? TestEnv.currentUserName
        let envArgs = e.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return try Self.exec("/usr/bin/env", ["-i"] + envArgs + argv, cwd: dir, stdin: stdin)
    }

    /// Shell snippet as this user.
    @discardableResult
    func bash(_ script: String, env: [String: String] = [:]) throws -> RunResult {
        try sh(["/bin/bash", "-c", script], env: env)
    }

    static func exec(_ path: String, _ args: [String], env: [String: String]? = nil, cwd: String? = nil, stdin: Data? = nil) throws -> RunResult {
        let out = try Command(path, args, environment: env, directory: cwd).run(input: stdin.map { Array($0) })
        return RunResult(status: out.status, stdout: out.stdoutText, stderr: out.stderrText)
    }

    /// Files under the store's blobs and the index, to show nothing was added.
    func storeSnapshot() -> [String] {
        let fm = FileManager.default
        var out = (try? fm.contentsOfDirectory(atPath: "\(store)/blobs/sha256"))?.map { "blob:\($0)" } ?? []
        out += (try? fm.contentsOfDirectory(atPath: "\(store)/layers/sha256"))?.map { "layer:\($0)" } ?? []
        out += (try? fm.contentsOfDirectory(atPath: "\(store)/layers"))?.filter { $0.hasPrefix(".tmp") }.map { "tmp:\($0)" } ?? []
        out += (try? fm.contentsOfDirectory(atPath: "\(store)/ingest"))?.map { "ingest:\($0)" } ?? []
        if let idx = fm.contents(atPath: "\(store)/index.json") { out.append("index:" + String(decoding: idx, as: UTF8.self)) }
        return out.sorted()
    }

    func stat(_ path: String) -> stat? {
        var st = Glibc.stat()
        return lstat(path, &st) == 0 ? st : nil
    }
}

func expectOK(_ r: RunResult, _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 0, "\(what) \(r)", sourceLocation: sourceLocation)
}

/// A failing command: non-zero exit, one line on stderr that mentions `culprit`.
func expectOneLineError(_ r: RunResult, mentions culprit: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status != 0, "expected failure: \(r)", sourceLocation: sourceLocation)
    // progress ("0123456789ab: downloading …") and warnings are not error lines
    let lines = r.stderr.split(separator: "\n").filter { line in
        if line.hasPrefix("warning:") { return false }
        let id = line.prefix(13)
        return !(id.count == 13 && id.hasSuffix(":") && id.dropLast().allSatisfy { $0.isHexDigit })
    }
    #expect(lines.count == 1, "expected one error line, got: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(culprit), "error should name \(culprit): \(r.stderr)", sourceLocation: sourceLocation)
}

/// A directory served over HTTP on 127.0.0.1 (busybox httpd): the apt repositories the builds
/// in containers and the offline Python builds install from. Nil when it cannot listen.
enum LocalHTTP {
    /// `firstPort` spreads concurrent test processes; `probe` is a file the dir must serve.
    static func serve(_ dir: String, firstPort: Int, probe: String = "Packages") throws -> (server: ChildProcess, port: Int)? {
        for p in stride(from: firstPort + Int(getpid() % 400) * 2, to: firstPort + 2000, by: 7) {
            let s = try Command("/bin/busybox", ["httpd", "-f", "-p", "127.0.0.1:\(p)", "-h", dir], fds: [-1, -1, -1]).spawn()
            usleep(200_000)
            if s.wait(timeout: 0) == nil,
               (try? Workspace.exec("/bin/busybox", ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:\(p)/\(probe)"]))?.status == 0 {
                return (s, p)
            }
            s.signal(SIGKILL)
            _ = s.wait()
        }
        return nil
    }
}
