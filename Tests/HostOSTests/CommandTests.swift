import Errors
import Foundation
import HostOS
import Testing

/// HostOS.Command, the one way ctr starts a program: exactly the fds handed over, a clean
/// signal state, exit codes and signals reported, PATH searched, errors naming the program.
@Suite struct CommandTests {
    /// What a child has open, by its own account: `readlink /proc/self/fd/N` for N in 0..<32
    /// (readlink opens nothing of its own; a missing fd is only a complaint on stderr).
    static func openFDs(_ fds: [Int32]) throws -> [Int: String] {
        let out = try Command("/usr/bin/readlink", ["-v"] + (0..<32).map { "/proc/self/fd/\($0)" },
                              environment: ["LC_ALL": "C", "PATH": "/usr/bin:/bin"], fds: fds).run()
        // -v: a complaint per missing fd; the links of the others, in order, on stdout
        var missing = Set<Int>()
        for line in out.stderrText.split(separator: "\n") {
            if let r = line.range(of: "/proc/self/fd/"), let n = Int(line[r.upperBound...].prefix { $0.isNumber }) { missing.insert(n) }
        }
        let present = (0..<32).filter { !missing.contains($0) }
        let links = out.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        try #require(present.count == links.count, "\(out.stdoutText) / \(out.stderrText)")
        return Dictionary(uniqueKeysWithValues: zip(present, links))
    }

    @Test func exactlyTheFDsHandedOver() throws {
        let dir = NSTemporaryDirectory() + "ctr-command-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = open("\(dir)/three", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        // an fd without close-on-exec, as a library or another thread may leave one: a plain
        // fork and exec would hand it over
        let leak = open("\(dir)/leak", O_RDWR | O_CREAT, 0o600)
        defer { close(file); close(leak) }
        try #require(file >= 0 && leak >= 0)
        let fds = try Self.openFDs([-1, 1, 2, file, file])
        #expect(fds.keys.sorted() == [0, 1, 2, 3, 4], "\(fds)")
        #expect(fds[0] == "/dev/null")
        #expect(fds[1]?.hasPrefix("pipe:") == true && fds[2]?.hasPrefix("pipe:") == true && fds[1] != fds[2], "\(fds)")
        #expect(fds[3] == "\(dir)/three" && fds[4] == "\(dir)/three", "\(fds)")
        #expect(!fds.values.contains("\(dir)/leak"))
        // fds that sit where others go (our 0 and 1, asked for as 3 and 4, while 0 and 1 get
        // /dev/null and a pipe): each still arrives where it is asked for
        func ours(_ fd: Int32) throws -> String { try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") }
        let moved = try Self.openFDs([-1, 1, 2, 0, 1])
        #expect(moved[0] == "/dev/null" && moved[1]?.hasPrefix("pipe:") == true, "\(moved)")
        let (in0, out1) = (try ours(0), try ours(1))
        #expect(moved[3] == in0 && moved[4] == out1 && moved[4] != moved[1], "\(moved)")
    }

    @Test func exitCodesAndSignals() throws {
        let seven = try Command("/bin/sh", ["-c", "exit 7"]).run()
        #expect(seven.termination == .exited(7) && seven.status == 7)
        let term = try Command("/bin/sh", ["-c", "kill -TERM $$"]).run()
        #expect(term.termination == .signaled(SIGTERM) && term.status == 128 + SIGTERM)
        #expect(term.termination.description == "killed by signal \(SIGTERM)")
        let child = try Command("/bin/sleep", ["30"]).spawn()
        #expect(child.wait(timeout: 0.05) == nil)
        child.signal(SIGKILL)
        #expect(child.wait(timeout: 5) == .signaled(SIGKILL))
        #expect(child.wait() == .unknown)  // reaped already
        // a program that outlives its time is killed
        let slow = try Command("/bin/sleep", ["30"]).run(timeout: 0.2)
        #expect(slow.termination == .signaled(SIGKILL))
    }

    /// Nothing blocked or ignored, whatever the caller's thread blocks (ctr blocks INT, TERM,
    /// HUP… for its signal thread) or ignores.
    @Test func signalsReset() throws {
        var all = sigset_t(), saved = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        for _ in 0..<20 {
            let out = try Command("/bin/grep", ["-E", "^Sig(Blk|Ign):", "/proc/self/status"]).run()
            #expect(out.stdoutText == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "\(out.stdoutText)")
        }
    }

    @Test(arguments: [Command.Group.inherit, .newGroup, .newSession])
    func processGroupAndSession(_ group: Command.Group) throws {
        // /proc/self/stat: pid (comm) state ppid pgrp session …
        let out = try Command("/bin/cat", ["/proc/self/stat"], group: group).run()
        let f = out.stdoutText.split(separator: ")").last!.split(separator: " ")
        let pid = Int32(out.stdoutText.prefix { $0 != " " })!, pgrp = Int32(f[2])!, sid = Int32(f[3])!
        switch group {
        case .inherit: #expect(pgrp == getpgrp() && sid == getsid(0))
        case .newGroup: #expect(pgrp == pid && sid == getsid(0))
        case .newSession: #expect(pgrp == pid && sid == pid)
        }
    }

    @Test func environmentDirectoryAndPath() throws {
        let out = try Command("sh", ["-c", "echo $FOO; pwd; echo ${HOME-unset}"], environment: ["FOO": "bar", "PATH": "/usr/bin:/bin"],
                              directory: "/tmp").run()
        #expect(out.stdoutText == "bar\n/tmp\nunset\n")
        #expect(Command.find("sh", path: "/nonexistent:/bin") == "/bin/sh")
        #expect(Command.find("passwd", path: "/etc") == nil)  // not executable
        #expect(Command.find("newuidmap") != nil)  // ctr's PATH, then the sbin and bin dirs
    }

    @Test func stdinAndOutputsDoNotStall() throws {
        // more than a pipe holds, both ways at once
        let input = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let out = try Command("/bin/sh", ["-c", "cat; echo done >&2"]).run(input: input)
        #expect(out.termination == .exited(0))
        #expect(out.stdout == input)
        #expect(out.stderrText == "done\n")
        // a program that does not read its input: no SIGPIPE for us
        let ignored = try Command("/bin/true").run(input: input)
        #expect(ignored.termination == .exited(0))
    }

    @Test func programsThatCannotRun() throws {
        let missing = #expect(throws: CtrError.self) { try Command("no-such-program-ctr", environment: ["PATH": "/usr/bin:/bin"]).spawn() }
        #expect(missing?.code == .notFound)
        #expect(missing?.reason == "not found on PATH (/usr/bin:/bin)")
        #expect(missing?.description == "cannot run no-such-program-ctr: not found on PATH (/usr/bin:/bin)")
        let absent = #expect(throws: CtrError.self) { try Command("/nonexistent/tool").run() }
        #expect(absent?.code == .notFound)
        #expect(absent?.description == "cannot run /nonexistent/tool: no such executable file")
        // executable, but not a program
        let dir = NSTemporaryDirectory() + "ctr-command-bad-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: "\(dir)/junk", contents: Data([0, 1, 2, 3, 0xff, 0xfe]), attributes: [.posixPermissions: 0o755])
        let junk = #expect(throws: CtrError.self) { try Command("\(dir)/junk").spawn() }
        #expect(junk?.code == .system && junk?.stage == "spawn" && junk?.errno == ENOEXEC, "\(String(describing: junk))")
        #expect(junk?.description == "cannot run \(dir)/junk: \(String(cString: strerror(ENOEXEC)))")
    }
}
