import CSysShims
import Errors
import Glibc

/// A program to start: the one way ctr starts a program from Swift (helpers such as newuidmap,
/// slirp4netns, pasta, credential helpers, fuse-overlayfs --version; and the tests' tools).
///
/// `spawn()` is posix_spawn (a vfork: cheap enough for `ctr run`'s start-up) with exactly the
/// fds in `fds` — `fds[i]` becomes fd i in the child, -1 gives it /dev/null, and every other fd
/// is closed, so a helper never keeps a container's sync socket or another thread's pipe open.
/// The child starts with an empty signal mask and every signal at its default action (an
/// ignored SIGPIPE is not inherited). A program named without a `/` is looked up on PATH.
public struct Command: Sendable {
    public enum Group: Sendable {
        /// ctr's process group and session.
        case inherit
        /// A process group of its own (a terminal's ^C to ctr's group does not reach it).
        case newGroup
        /// A session of its own (no controlling terminal).
        case newSession
    }

    /// A path, or a name looked up on PATH (see `find`).
    public var program: String
    public var arguments: [String]
    /// The whole environment; nil: ctr's own.
    public var environment: [String: String]?
    /// `fds[i]` becomes fd i in the child (-1: /dev/null); nothing else is open there.
    public var fds: [Int32]
    public var group: Group
    /// The child's working directory (nil: ctr's).
    public var directory: String?

    public init(_ program: String, _ arguments: [String] = [], environment: [String: String]? = nil,
                fds: [Int32] = [-1, 1, 2], group: Group = .inherit, directory: String? = nil) {
        self.program = program
        self.arguments = arguments
        self.environment = environment
        self.fds = fds
        self.group = group
        self.directory = directory
    }

    /// The executable file `name` in `path` (a PATH-style list; an empty entry is the current
    /// directory). Without `path`: ctr's $PATH, then /usr/sbin, /sbin, /usr/bin and /bin (a
    /// user's PATH often lacks the sbin directories that hold helpers).
    public static func find(_ name: String, path: String? = nil) -> String? {
        if name.isEmpty { return nil }
        if name.contains("/") { return isExecutableFile(name) ? name : nil }
        var dirs: [Substring]
        if let path {
            dirs = path.split(separator: ":", omittingEmptySubsequences: false)
        } else {
            // getenv, not ProcessInfo's dictionary of the whole environment: this is on ctr run's path
            let own = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
            dirs = own.split(separator: ":", omittingEmptySubsequences: false) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        }
        for dir in dirs {
            let candidate = dir.isEmpty ? name : (dir.hasSuffix("/") ? "\(dir)\(name)" : "\(dir)/\(name)")
            if isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    static func isExecutableFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// Start the program; it runs on while the caller goes on (`ChildProcess.wait` reaps it).
    public func spawn() throws(CtrError) -> ChildProcess {
        // the child's PATH when it is given one, else ours
        let searchPath = environment?["PATH"]
        guard let path = Self.find(program, path: searchPath) else {
            throw CtrError.cannotRun(program, notFoundOn: searchPath ?? getenv("PATH").map { String(cString: $0) } ?? "")
        }
        guard fds.count <= Int(CSYS_SPAWN_MAX_FDS) else { throw CtrError.cannotRun(program, errno: EINVAL) }
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let envp = environment.map { env in env.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for e in envp ?? [] { free(e) } }
        let flags: Int32 = switch group {
        case .inherit: 0
        case .newGroup: CSYS_SPAWN_PGROUP
        case .newSession: CSYS_SPAWN_SESSION
        }
        var pid: pid_t = 0
        let rc = envp.withOptionalBuffer { env in
            csys_spawn(path, argv, env, fds, Int32(fds.count), flags, directory, &pid)
        }
        guard rc == 0 else { throw CtrError.cannotRun(program, errno: rc) }
        return ChildProcess(pid: pid)
    }

    /// What a program printed, and how it ended.
    public struct Output: Sendable {
        public var termination: Termination
        public var stdout: [UInt8]
        public var stderr: [UInt8]
        /// The exit code (128+N for a signal, as a shell has it).
        public var status: Int32 { termination.code }
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Run the program to its end with `input` on its stdin (nil: `fds[0]` as given) and its
    /// stdout and stderr collected (fds 3 and up as given). After `timeout` seconds it is killed
    /// (SIGKILL). A program that fails is no error: look at `termination`.
    public func run(input: [UInt8]? = nil, timeout: Double? = nil) throws(CtrError) -> Output {
        // our ends (read stdout and stderr, write stdin) and the child's, closed here once it has them
        var ours: [Int32] = [], theirs: [Int32] = []
        defer { for fd in ours + theirs { close(fd) } }
        func pipe() throws(CtrError) -> (read: Int32, write: Int32) {
            var p: [Int32] = [-1, -1]
            guard csys_pipe_cloexec(&p) == 0 else { throw CtrError.cannotRun(program, errno: errno) }
            return (p[0], p[1])
        }
        var c = self
        while c.fds.count < 3 { c.fds.append(-1) }
        let out = try pipe()
        (ours, theirs) = ([out.read], [out.write])
        let err = try pipe()
        (ours, theirs) = (ours + [err.read], theirs + [err.write])
        var inFD: Int32 = -1
        if input != nil {
            let p = try pipe()
            (ours, theirs) = (ours + [p.write], theirs + [p.read])
            inFD = p.write
            c.fds[0] = p.read
        }
        c.fds[1] = out.write
        c.fds[2] = err.write
        let child = try c.spawn()
        for fd in theirs { close(fd) }
        theirs = []
        let (stdout, stderr) = Self.exchange(input: input ?? [], inFD: inFD, outFD: out.read, errFD: err.read,
                                             child: child, timeout: timeout)
        ours.removeAll { $0 == inFD }  // closed by exchange
        return Output(termination: child.wait(), stdout: stdout, stderr: stderr)
    }

    /// Feed `input` to `inFD` and read `outFD` and `errFD` to their ends, all at once (a full
    /// pipe on either side cannot stall the other). `inFD` is closed here.
    private static func exchange(input: [UInt8], inFD: Int32, outFD: Int32, errFD: Int32, child: ChildProcess,
                                 timeout: Double?) -> ([UInt8], [UInt8]) {
        var out: [UInt8] = [], err: [UInt8] = []
        var inFD = inFD, written = 0
        if inFD >= 0 { _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK) }
        // a program that stops reading its stdin: EPIPE here, not a SIGPIPE to ctr
        var pipeSignal = sigset_t(), saved = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        let wasPending = Self.pending(SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &saved)
        defer {
            if !wasPending && Self.pending(SIGPIPE) {
                var zero = timespec()
                _ = sigtimedwait(&pipeSignal, nil, &zero)
            }
            pthread_sigmask(SIG_SETMASK, &saved, nil)
        }
        if inFD >= 0 && input.isEmpty { close(inFD); inFD = -1 }
        let deadline = timeout.map { csys_monotonic_ms() + Int64($0 * 1000) }
        var killedAt: Int64? = nil
        var buf = [UInt8](repeating: 0, count: 65536)
        var open = [outFD, errFD]
        while !open.isEmpty || inFD >= 0 {
            var pfds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inFD >= 0 { pfds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            var wait: Int32 = -1
            if let deadline {
                let now = csys_monotonic_ms()
                if now >= deadline && killedAt == nil {
                    child.signal(SIGKILL)
                    killedAt = now
                }
                // once killed, a grandchild that holds the pipes is not waited for long
                if let killedAt, now - killedAt > 1000 { break }
                wait = Int32(clamping: max(0, (killedAt.map { $0 + 1000 } ?? deadline) - now))
            }
            let n = poll(&pfds, nfds_t(pfds.count), wait)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { break }
            for p in pfds where p.revents != 0 {
                if p.fd == inFD {
                    let w = input.withUnsafeBytes { write(inFD, $0.baseAddress! + written, $0.count - written) }
                    if w > 0 { written += w }
                    if (w < 0 && errno != EAGAIN && errno != EINTR) || written == input.count {
                        close(inFD)
                        inFD = -1
                    }
                    continue
                }
                let r = read(p.fd, &buf, buf.count)
                if r > 0 {
                    if p.fd == outFD { out += buf[0..<r] } else { err += buf[0..<r] }
                } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == p.fd }
                }
            }
        }
        if inFD >= 0 { close(inFD) }
        return (out, err)
    }

    private static func pending(_ sig: Int32) -> Bool {
        var set = sigset_t()
        sigpending(&set)
        return sigismember(&set, sig) == 1
    }
}

extension CtrError {
    /// A program that could not be started: not an executable file on `path` (`.notFound`), or
    /// posix_spawn failed with `errno` (`.system`, stage "spawn"). `reason` is why, without
    /// the program's name ("not found on PATH …", "permission denied").
    static func cannotRun(_ program: String, notFoundOn path: String) -> CtrError {
        let why = program.contains("/") ? "no such executable file" : "not found on PATH (\(path))"
        return CtrError(.notFound, "cannot run \(program): \(why)", stage: "spawn", reason: why)
    }

    static func cannotRun(_ program: String, errno e: Int32) -> CtrError {
        let why = String(cString: strerror(e))
        return CtrError(.system, "cannot run \(program): \(why)", stage: "spawn", errno: e, reason: why)
    }
}

/// A started program (our child).
public struct ChildProcess: Sendable, Hashable {
    public let pid: pid_t

    public init(pid: pid_t) { self.pid = pid }

    /// Wait for it to end (reaping it).
    public func wait() -> Termination {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { return Termination(waitStatus: status) }
            if r < 0 && errno == EINTR { continue }
            return .unknown
        }
    }

    /// How it ended once it has, nil while it still runs after `timeout` seconds (0: now).
    public func wait(timeout: Double) -> Termination? {
        let deadline = csys_monotonic_ms() + Int64(timeout * 1000)
        var pause: UInt32 = 500
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return Termination(waitStatus: status) }
            if r < 0 && errno == EINTR { continue }
            if r < 0 { return .unknown }  // reaped elsewhere (ECHILD)
            if csys_monotonic_ms() >= deadline { return nil }
            usleep(pause)
            pause = min(pause * 2, 10_000)
        }
    }

    public func signal(_ sig: Int32) { _ = kill(pid, sig) }
}

/// How a child ended.
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Reaped by someone else: its status is lost.
    case unknown

    public init(waitStatus s: Int32) {
        let sig = s & 0x7f
        self = sig == 0 ? .exited((s >> 8) & 0xff) : .signaled(sig)
    }

    /// The exit code; 128+N for a signal (as a shell has it); -1 when unknown.
    public var code: Int32 {
        switch self {
        case .exited(let c): c
        case .signaled(let s): 128 + s
        case .unknown: -1
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): "exit status \(c)"
        case .signaled(let s): "killed by signal \(s)"
        case .unknown: "status unknown"
        }
    }
}

extension Optional where Wrapped == [UnsafeMutablePointer<CChar>?] {
    fileprivate func withOptionalBuffer<R>(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>?) -> R) -> R {
        guard let self else { return body(nil) }
        return self.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
