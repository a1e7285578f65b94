import CSysShims
import Errors
import Foundation
import HostOS
import Testing

/// The C shim's `csys_error {errno, stage, message, kind}` as a `CtrError`: `.system` with the
/// stage and errno, or `.container(126/127)` when it says a container's command could not be
/// executed (docker's statuses).
@Suite struct CErrorTests {
    func cError(err: Int32, stage: String, message: String, kind: Int32 = Int32(CSYS_ERR_SYSTEM)) -> csys_error {
        var e = csys_error()
        e.err = err
        e.kind = kind
        withUnsafeMutableBytes(of: &e.stage) { b in _ = stage.utf8CString.withUnsafeBytes { memcpy(b.baseAddress!, $0.baseAddress!, min($0.count, b.count - 1)) } }
        withUnsafeMutableBytes(of: &e.message) { b in _ = message.utf8CString.withUnsafeBytes { memcpy(b.baseAddress!, $0.baseAddress!, min($0.count, b.count - 1)) } }
        return e
    }

    @Test func systemErrorKeepsStageAndErrno() {
        let e = CtrError(cError(err: EPERM, stage: "mount", message: "cannot mount proc on /proc: Operation not permitted"))
        #expect(e.code == .system)
        #expect(e.stage == "mount" && e.errno == EPERM)
        #expect(e.description == "cannot mount proc on /proc: Operation not permitted")
        // an empty report: the fallback, and a stage that says so
        let empty = CtrError(csys_error(), fallback: "the child failed")
        #expect(empty.code == .system && empty.stage == "unknown" && empty.errno == 0 && empty.message == "the child failed")
    }

    static let execFailures: [(errno: Int32, status: Int32)] = [(ENOENT, 127), (EACCES, 126), (ENOEXEC, 127)]

    @Test(arguments: execFailures)
    func execFailureIsTheCommandsStatus(errno: Int32, status: Int32) {
        let e = CtrError(cError(err: errno, stage: "exec", message: "exec: \"/x\": failed", kind: Int32(CSYS_ERR_EXEC)))
        #expect(e.code == .container(status: status))
        #expect(e.stage == "exec" && e.errno == errno)
        // the same stage without the kind is only a failed step (a helper that could not start)
        #expect(CtrError(cError(err: errno, stage: "exec", message: "cannot run x")).code == .system)
    }

    /// A real failure in C: the id maps of a process that does not exist.
    @Test func fromARealCall() {
        let e = #expect(throws: CtrError.self) { try UserNamespace.writeMaps(pid: 999_999_999, mapping: .single(uid: getuid(), gid: getgid())) }
        #expect(e?.code == .system && e?.stage == "idmap" && e?.errno == ENOENT, "\(String(describing: e))")
        #expect(e?.message == "cannot open /proc/999999999/setgroups: \(String(cString: strerror(ENOENT)))")
    }

    /// What the helper of `ctr exec` says on its sync socket, read by C: the pid, then an exec
    /// failure (from the exec stub's layout) or a failure before the pid.
    @Test func execStartedReportsOverASocket() throws {
        func pair() throws -> (Int32, Int32) {
            var sv: [Int32] = [0, 0]
            try #require(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &sv) == 0)
            return (sv[0], sv[1])
        }
        func send(_ fd: Int32, _ e: csys_error) {
            var e = e
            #expect(write(fd, &e, MemoryLayout<csys_error>.size) == MemoryLayout<csys_error>.size)
        }
        // pid 4242, then the command was not found
        var (ours, theirs) = try pair()
        send(theirs, cError(err: 4242, stage: "pid", message: ""))
        send(theirs, cError(err: ENOENT, stage: "exec", message: "exec: \"/nope\": no such file or directory", kind: Int32(CSYS_ERR_EXEC)))
        close(theirs)
        var err = csys_error()
        #expect(csys_exec_started(ours, 1, &err) == -1)
        close(ours)
        let notFound = CtrError(err)
        #expect(notFound.code == .container(status: 127) && notFound.message == "exec: \"/nope\": no such file or directory")
        // the pid, then EOF: it runs
        (ours, theirs) = try pair()
        send(theirs, cError(err: 4242, stage: "pid", message: ""))
        close(theirs)
        #expect(csys_exec_started(ours, 1, &err) == 4242)
        close(ours)
        // a failure before the pid: the step that failed
        (ours, theirs) = try pair()
        send(theirs, cError(err: EPERM, stage: "setns", message: "cannot join the container's mount namespace: Operation not permitted"))
        close(theirs)
        err = csys_error()
        #expect(csys_exec_started(ours, 1, &err) == -1)
        close(ours)
        let setns = CtrError(err)
        #expect(setns.code == .system && setns.stage == "setns" && setns.errno == EPERM)
        // nothing said: the helper's own pid is waited for
        (ours, theirs) = try pair()
        close(theirs)
        #expect(csys_exec_started(ours, 77, &err) == 77)
        close(ours)
    }
}
