import CSysShims
import Errors
import Foundation

/// Runs C jobs from the shim with the privileges an image's files need: directly as root,
/// as root of a mapped user namespace for a user with subordinate ids, or directly as the
/// user otherwise.
public enum UserNamespace {
    /// Write the id maps of `pid` (a child that has unshared its user namespace).
    public static func writeMaps(pid: pid_t, mapping: IDMapping) throws {
        switch mapping {
        case .root:
            return
        case .single(let uid, let gid):
            var err = csys_error()
            if csys_write_single_map(pid, uid, gid, &err) != 0 { throw CtrError(err) }
        case .mapped(let uids, let gids) where getuid() == 0:
            // root needs no newuidmap (nor an /etc/subuid entry checked by it)
            var err = csys_error()
            let u = uids.map { "\($0.containerID) \($0.hostID) \($0.count)\n" }.joined()
            let g = gids.map { "\($0.containerID) \($0.hostID) \($0.count)\n" }.joined()
            if csys_write_maps(pid, u, g, &err) != 0 { throw CtrError(err) }
        case .mapped(let uids, let gids):
            // both at once: each is a setuid program that takes a millisecond or two to start
            let u = try startMapper("newuidmap", pid: pid, ranges: uids, file: "/etc/subuid")
            let g: Mapper
            do { g = try startMapper("newgidmap", pid: pid, ranges: gids, file: "/etc/subgid") } catch { _ = u.finish(); throw error }
            let eu = u.finish(), eg = g.finish()
            if let eu { throw eu }
            if let eg { throw eg }
        }
    }

    /// newuidmap or newgidmap, started; `finish` waits for it.
    struct Mapper {
        let tool: String, file: String, child: ChildProcess, output: Int32

        /// Nil when it mapped the ranges, else its complaint.
        func finish() -> CtrError? {
            var said: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 512)
            while true {
                let n = read(output, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                if said.count < 1024 { said += buf[0..<min(n, 1024 - said.count)] }
            }
            close(output)
            let end = child.wait()
            if end == .exited(0) { return nil }
            let msg = String(decoding: said, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            // (the tool's own words are all there is to tell a refused write from a refused range)
            if msg.contains("_map failed: Operation not permitted") {
                // a setuid-root newuidmap (Debian's) writes the map as root, which needs
                // CAP_SYS_ADMIN over the new namespace: a container's default capabilities lack it
                return CtrError.system("idmap", """
                    \(tool) failed: \(msg): in a container, a setuid \(tool) needs CAP_SYS_ADMIN; give it file \
                    capabilities instead (chmod u-s \(Command.find(tool) ?? tool); setcap \(tool == "newuidmap" ? "cap_setuid" : "cap_setgid")+ep …, \
                    as rootless buildah and BuildKit images do), or drop this user's lines in /etc/subuid and /etc/subgid to work with one id
                    """)
            }
            return CtrError.system("idmap", "\(tool) failed: \(msg.isEmpty ? end.description : msg) (check \(file))")
        }
    }

    private static func startMapper(_ tool: String, pid: pid_t, ranges: [IDRange], file: String) throws -> Mapper {
        guard let path = Command.find(tool) else {
            throw CtrError.system("idmap", "\(tool) not found: install the uidmap package (it maps the ranges in \(file))")
        }
        var args = [String(pid)]
        for r in ranges { args += [String(r.containerID), String(r.hostID), String(r.count)] }
        // its stdout and stderr into one pipe, read by finish
        var p: [Int32] = [-1, -1]
        guard csys_pipe_cloexec(&p) == 0 else { throw CtrError.errno("pipe", "\(tool): cannot make a pipe") }
        defer { close(p[1]) }
        do {
            let child = try Command(path, args, fds: [-1, p[1], p[1]]).spawn()
            return Mapper(tool: tool, file: file, child: child, output: p[0])
        } catch {
            close(p[0])
            throw CtrError.system("idmap", "\(tool) failed: \(error.reason ?? error.message) (check \(file))")
        }
    }

    /// Fork a child that enters a new user namespace mapped by `mapping` and runs
    /// `job(arg)` as root there. `arg` and `errOut` must live in shared memory
    /// (`SharedBox`) so the parent sees what the child wrote. Returns the job's exit code.
    public static func run(_ job: csys_job_fn, arg: UnsafeMutableRawPointer, errOut: UnsafeMutablePointer<csys_error>,
                           mapping: IDMapping, keepFDs: [Int32]) throws -> Int32 {
        try start(job, arg: arg, errOut: errOut, mapping: mapping, keepFDs: keepFDs).wait()
    }

    /// A running user-namespace child.
    public final class Child: @unchecked Sendable {
        public let pid: pid_t
        let errOut: UnsafeMutablePointer<csys_error>
        private var code: Int32?

        init(pid: pid_t, errOut: UnsafeMutablePointer<csys_error>) {
            self.pid = pid
            self.errOut = errOut
        }

        /// Wait for the job; its exit code (125: the child failed before the job ran).
        public func wait() throws -> Int32 {
            if let code { return code }
            let c = csys_wait_exit(pid)
            code = c
            if c == 125 { throw CtrError(errOut.pointee, fallback: "the user-namespace child failed") }
            return c
        }

        public func kill() { _ = Glibc.kill(pid, SIGKILL) }
    }

    /// Start the job in a mapped user-namespace child and return at once.
    /// The child keeps only stdio and `keepFDs`.
    public static func start(_ job: csys_job_fn, arg: UnsafeMutableRawPointer, errOut: UnsafeMutablePointer<csys_error>,
                             mapping: IDMapping, keepFDs: [Int32]) throws -> Child {
        var child = csys_userns_child()
        var err = csys_error()
        if csys_userns_fork(job, arg, keepFDs, Int32(keepFDs.count), errOut, &child, &err) != 0 { throw CtrError(err) }
        if csys_userns_wait_ready(&child) != 0 {
            let code = csys_wait_exit(child.pid)
            close(child.release_fd)
            throw CtrError(errOut.pointee, fallback: "the user-namespace child exited (\(code)) before it was ready")
        }
        do {
            try writeMaps(pid: child.pid, mapping: mapping)
        } catch {
            close(child.release_fd) // the child exits
            _ = csys_wait_exit(child.pid)
            throw error
        }
        _ = csys_userns_release(&child)
        return Child(pid: child.pid, errOut: errOut)
    }
}

extension UserNamespace {
    /// Run a host command as root of the user namespace `mapping` gives (what
    /// `podman unshare` does): files of subordinate ids become manageable. Returns its exit code.
    public static func exec(_ argv: [String], mapping: IDMapping) throws -> Int32 {
        let cStrings = argv.map { strdup($0) } + [nil]
        defer { cStrings.forEach { free($0) } }
        return try cStrings.withUnsafeBufferPointer { buf in
            let job = SharedBox(csys_exec_job())
            job.pointer.pointee.argv = UnsafePointer(buf.baseAddress!)
            let errp = UnsafeMutableRawPointer(job.pointer).advanced(by: MemoryLayout<csys_exec_job>.offset(of: \.error)!)
                .assumingMemoryBound(to: csys_error.self)
            if case .root = mapping {
                let pid = csys_fork_job(csys_job_exec, job.pointer, nil, 0)
                if pid < 0 { throw CtrError.errno("fork", "cannot fork") }
                return csys_wait_exit(pid)
            }
            let code = try run(csys_job_exec, arg: UnsafeMutableRawPointer(job.pointer), errOut: errp, mapping: mapping, keepFDs: [])
            if code == 127, job.pointer.pointee.error.stage.0 != 0 { throw CtrError(job.pointer.pointee.error) }
            return code
        }
    }
}

/// A value of C type `T` in MAP_SHARED memory, so a forked child's writes are visible.
public final class SharedBox<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    private let size: Int

    public init(_ value: T) {
        size = max(MemoryLayout<T>.size, 1)
        guard let raw = csys_shared_alloc(size) else { fatalError("mmap failed") }
        pointer = raw.bindMemory(to: T.self, capacity: 1)
        pointer.initialize(to: value)
    }

    deinit { csys_shared_free(pointer, size) }
}
