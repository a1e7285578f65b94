import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// Operations on existing containers: exec, stop, kill, rm, logs.
extension Runtime {
    public static func signal(_ s: String) throws -> Int32 {
        guard let n = Signals.number(s) else { throw CtrError.usage("unknown signal \"\(s)\"") }
        return n
    }

    func requireRunning(_ r: ContainerRecord) throws -> pid_t {
        switch containers.status(r) {
        case .running, .runningUnmonitored:
            return r.pid!
        default:
            throw CtrError.conflict("container \(r.name) is not running")
        }
    }

    public func kill(_ r: ContainerRecord, signal: Int32) throws {
        let pid = try requireRunning(r)
        if Glibc.kill(pid, signal) != 0 {
            throw CtrError.errno("kill", "cannot signal \(r.name)")
        }
    }

    /// The stop signal (the image's, else SIGTERM), then SIGKILL after `timeout` seconds.
    public func stop(_ r: ContainerRecord, timeout: Double) throws {
        guard case let pid? = try? requireRunning(r) else { return }
        let sig = try r.stopSignal.map(Self.signal) ?? SIGTERM
        _ = Glibc.kill(pid, sig)
        let start = r.pidStart ?? 0
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if csys_proc_starttime(pid) != start { return waitRecorded(r) }
            usleep(20_000)
        }
        _ = Glibc.kill(pid, SIGKILL)
        while csys_proc_starttime(pid) == start { usleep(10_000) }
        waitRecorded(r)
    }

    /// Give the monitor a moment to write the exit status.
    func waitRecorded(_ r: ContainerRecord) {
        guard let m = r.monitorPid else { return }
        for _ in 0..<100 {
            if containers.exitFile(r.id) != nil || csys_proc_starttime(m) == 0 { return }
            usleep(10_000)
        }
    }

    /// Remove a container; a running one only with force (it is killed first).
    public func rm(_ r: ContainerRecord, force: Bool) throws {
        switch containers.status(r) {
        case .running, .runningUnmonitored:
            guard force else { throw CtrError.conflict("container \(r.name) is running: stop it first or use --force") }
            if let pid = r.pid { _ = Glibc.kill(pid, SIGKILL) }
            if let pid = r.pid, let start = r.pidStart {
                for _ in 0..<300 where csys_proc_starttime(pid) == start { usleep(10_000) }
            }
            waitRecorded(r)
        default:
            break
        }
        if let m = r.monitorPid, csys_proc_starttime(m) != 0 {
            // a monitor of a dead container finishes on its own; give it a moment
            for _ in 0..<100 where csys_proc_starttime(m) != 0 { usleep(10_000) }
        }
        cleanup(r, removeState: false)
        try remove(r)
    }

    /// After a detached container exited (the monitor runs `ctr cleanup ID`), or before it is
    /// removed: stop its network helper and remove its cgroup; with --rm, remove it.
    public func cleanup(_ r: ContainerRecord, removeState: Bool) {
        let dir = containers.path(r.id)
        NetworkAttachment.stopRecorded(at: "\(dir)/network.json")
        if let d = FileManager.default.contents(atPath: "\(dir)/cgroup.json"),
           let paths = try? JSONDecoder().decode([String].self, from: d) {
            for p in paths.sorted(by: { $0.count > $1.count }) { rmdir(p) }
            unlink("\(dir)/cgroup.json")
        }
        if removeState { try? remove(r) }
    }

    /// `ctr exec`: a process in a running container's namespaces, with the same confinement.
    public func exec(_ r: ContainerRecord, command: [String], env: [String], workdir: String?, user: String?,
                     tty: Bool, interactive: Bool) throws -> Int32 {
        let pid = try requireRunning(r)
        if tty && interactive && isatty(0) == 0 {
            throw CtrError.usage("the input device is not a TTY: use -i without -t to pipe input")
        }
        // by the manifest digest the container keeps (and prune keeps for it): the image may
        // have lost its names since (rmi -f)
        guard let digest = try? Digest(parsing: r.manifest) else {
            throw CtrError.invalid("\(r.name): its record names no image manifest (\(r.manifest))")
        }
        let manifest = try store.manifest(Descriptor(mediaType: .ociManifest, digest: digest, size: 0))
        let config = try store.config(manifest)
        let cfg = config.config ?? ContainerConfig()
        let root = "/proc/\(pid)/root"
        // a fuse-overlayfs root answers only its user namespace: read from the layers then
        let layers = access(root + "/", X_OK) == 0 ? [] : ["\(containers.path(r.id))/upper"] + ((try? store.unpackedLayers(manifest, config)) ?? [])
        // as the container's process was started (its -e, -w, -u), then what exec adds
        let user = try UserDB.resolve(user ?? r.user ?? cfg.user ?? "", read: {
            layers.isEmpty ? try? String(contentsOfFile: root + $0, encoding: .utf8) : UserDB.readFromLayers(layers, $0)
        })
        let arena = CArena()
        var env = Planner.mergeEnv([["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], r.env ?? cfg.env ?? [], env])
        if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=\(user.home)") }
        if tty && !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let pathEnv = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? ""
        let caps = Capabilities.podmanDefault
        let bpf = try SeccompProfile.podmanDefault.compile(capabilities: caps)

        var plan = csys_exec_plan()
        var fds: [Int32] = []
        let kinds = ["user", "mnt", "uts", "ipc", "net", "cgroup", "pid"]
        let selfNS = kinds.map { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/\($0)")) ?? "" }
        for (i, k) in kinds.enumerated() {
            let path = "/proc/\(pid)/ns/\(k)"
            let theirs = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? ""
            // join only namespaces that differ from ours (joining our own user ns fails)
            if theirs.isEmpty || theirs == selfNS[i] { fds.append(-1); continue }
            fds.append(open(path, O_RDONLY | O_CLOEXEC))
        }
        defer { fds.filter { $0 >= 0 }.forEach { close($0) } }
        plan.ns_fds = (fds[0], fds[1], fds[2], fds[3], fds[4], fds[5], fds[6])
        // O_PATH: nothing is looked up in the root until the helper has joined the namespaces
        let rootFD = open(root, 0o10000000 /* O_PATH */ | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw CtrError.errno("open", "cannot open the root of \(r.name)") }
        defer { close(rootFD) }
        plan.root_fd = rootFD
        plan.cwd = arena.string(workdir ?? r.workdir ?? cfg.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/")
        plan.argv = UnsafePointer(arena.strings(command))
        plan.envp = UnsafePointer(arena.strings(env))
        plan.path_env = arena.string(pathEnv)
        plan.uid = user.uid
        plan.gid = user.gid
        let single = r.rootless && mapping.isSingleMapping
        plan.groups = arena.array(single ? [] : user.groups.map { gid_t($0) })
        plan.ngroups = single ? 0 : Int32(user.groups.count)
        plan.setgroups = single ? 0 : 1
        plan.caps = Capabilities.mask(caps)
        plan.cap_last = Int32(Capabilities.lastCap)
        plan.no_new_privs = 1
        plan.seccomp = arena.bytes(bpf)
        plan.seccomp_len = bpf.count
        plan.tty = tty ? 1 : 0
        var master: Int32 = -1, slave: Int32 = -1
        var null: Int32 = -1
        var relay: StdioRelay?
        if tty {
            var err = csys_error()
            if csys_openpty(&master, &slave, isatty(0) != 0 ? 0 : -1, &err) != 0 { throw CtrError(err) }
            plan.stdio = (slave, slave, slave)
        } else {
            if !interactive { null = open("/dev/null", O_RDONLY | O_CLOEXEC) }
            // a file of the host given as stdio goes through a pipe ctr copies
            relay = try StdioRelay((null, -1, -1))
            plan.stdio = relay!.child
        }
        var sv: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw CtrError.errno("socketpair", "cannot make the sync socket")
        }
        plan.sync_fd = sv[1]
        var err = csys_error()
        let stub: Int32
        do { stub = try ExecStub.open() } catch { close(sv[0]); close(sv[1]); throw error }
        plan.stub_fd = stub
        let helper = csys_container_exec(&plan, &err)
        close(stub)
        close(sv[1])
        if slave >= 0 { close(slave) }
        if null >= 0 { close(null) }
        if helper < 0 { relay?.finish(); close(sv[0]); throw CtrError(err) }
        do { try relay?.start() } catch {
            Glibc.kill(helper, SIGKILL)
            _ = csys_wait_status(helper)
            relay?.finish()
            close(sv[0])
            throw error
        }
        // the inner pid, then EOF once it exec'd; or an error (126/127: the command could not
        // be executed)
        var startErr = csys_error()
        let inner = csys_exec_started(sv[0], helper, &startErr)
        close(sv[0])
        if inner < 0 {
            _ = csys_wait_status(helper)
            relay?.finish()
            throw CtrError(startErr)
        }
        csys_signals_forward_to(inner, master)
        if tty {
            let raw = isatty(0) != 0 && csys_tty_raw(0) == 0
            _ = csys_tty_relay(master, interactive ? 0 : -1, 1)
            if raw { csys_tty_restore(0) }
            close(master)
        }
        let code = csys_wait_status(helper)
        relay?.finish()
        csys_signals_forward_to(0, -1)
        return code
    }

    /// Log records: (timestamp, stream, text).
    public func logs(_ r: ContainerRecord, from offset: UInt64 = 0) -> (records: [(String, String, String)], end: UInt64) {
        let path = "\(containers.path(r.id))/ctr.log"
        guard let h = FileHandle(forReadingAtPath: path) else { return ([], offset) }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = h.readDataToEndOfFile()
        // only whole lines
        guard let last = data.lastIndex(of: 10) else { return ([], offset) }
        let text = String(decoding: data[..<last], as: UTF8.self)
        var out: [(String, String, String)] = []
        var partial = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let f = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count >= 3 else { continue }
            let msg = f.count > 3 ? String(f[3]) : ""
            if f[2] == "P" { partial += msg; continue }
            out.append((String(f[0]), String(f[1]), partial + msg))
            partial = ""
        }
        return (out, offset + UInt64(last) + 1)
    }
}
