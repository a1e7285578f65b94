import CSysShims
import Errors
import Foundation
import HostOS

/// The container's stdin, stdout and stderr: never a file of the host. What ctr was given (or
/// the caller chose) is passed as it is only when it is /dev/null, a terminal or an anonymous
/// pipe; anything else (a file from `>> out.txt`, a named FIFO, a socket) is replaced by a pipe
/// that ctr copies, so the container cannot reopen it through /proc/self/fd or chmod it.
struct StdioRelay {
    /// The fds to give the container (as `csys_container_plan.stdio`: -1 keeps ctr's own).
    private(set) var child: (Int32, Int32, Int32)
    /// Pipe ends only the container must hold: closed by ctr once it has cloned.
    private var childEnds: [Int32] = []
    /// (from, to, isInput) copies to start after the clone.
    private var copies: [(from: Int32, to: Int32, input: Bool)] = []
    private var running: [(OpaquePointer, Bool)] = []

    /// `stdio`: what the caller would give (-1: ctr's own 0, 1, 2).
    init(_ stdio: (Int32, Int32, Int32)) throws {
        child = stdio
        let wanted = [stdio.0, stdio.1, stdio.2]
        var out = wanted
        for i in 0..<3 {
            let source = wanted[i] >= 0 ? wanted[i] : Int32(i)
            // a closed fd stays closed; a passable one is passed as it is
            if fcntl(source, F_GETFD) < 0 || csys_stdio_passable(source) != 0 { continue }
            var p: [Int32] = [-1, -1]
            guard csys_pipe_cloexec(&p) == 0 else { throw CtrError.errno("pipe", "cannot make a pipe for the container's stdio") }
            if i == 0 {
                out[i] = p[0]
                childEnds.append(p[0])
                copies.append((source, p[1], true))
            } else {
                out[i] = p[1]
                childEnds.append(p[1])
                copies.append((p[0], source, false))
            }
        }
        child = (out[0], out[1], out[2])
    }

    /// After the clone: close the container's ends here and start copying.
    mutating func start() throws {
        for fd in childEnds { close(fd) }
        childEnds.removeAll()
        for c in copies {
            var err = csys_error()
            // input: ctr's fd stays, the pipe's write end closes at the end; output: the reverse
            guard let r = csys_relay_start(c.from, c.to, c.input ? 0 : 1, c.input ? 1 : 0, &err) else { throw CtrError(err) }
            running.append((r, c.input))
        }
        copies.removeAll()
    }

    /// After the container exited: the output copied to its end, the input copy stopped.
    mutating func finish() {
        for (r, input) in running { csys_relay_finish(r, input ? 0 : 1) }
        running.removeAll()
        // never started (the clone failed): nothing copies, close everything of ours
        for fd in childEnds { close(fd) }
        for c in copies { close(c.input ? c.to : c.from) }
        childEnds.removeAll()
        copies.removeAll()
    }
}
