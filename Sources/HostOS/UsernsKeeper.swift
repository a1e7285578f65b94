import CSysShims
import Errors
import Foundation

/// One user namespace shared by a user's containers, as podman's pause process keeps one.
///
/// Mapping a new user namespace through subordinate ids takes newuidmap and newgidmap, two
/// setuid programs that cost about 8 ms per container start (more than everything else ctr does
/// for `ctr run --rm IMAGE true`). So the first start makes a namespace and leaves a keeper in
/// it (the exec stub's pause loop: no capabilities, no files open, a few KB), and later starts
/// join it. Every container still gets its own mount, pid, uts, ipc, network and cgroup
/// namespaces; sharing the user namespace changes nothing of what a container's ids are on the
/// host, which the subordinate ranges already made the same for all of them.
///
/// The keeper is found through a state file in the user's runtime dir (`$XDG_RUNTIME_DIR/ctr`,
/// else a 0700 dir of ours under /tmp), named after the mapping (a change of /etc/subuid gets a
/// new keeper); it exits when that file is gone. A keeper is used only when its namespace is
/// owned by this user and maps exactly the ids the mapping says: a planted or stale file, a
/// reused pid, a changed mapping all make a new one.
public enum UsernsKeeper {
    /// The user's runtime dir for ctr's state that does not outlive a reboot.
    public static func runtimeDir() -> String? {
        let uid = getuid()
        var candidates: [String] = []
        if let x = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), x.hasPrefix("/") { candidates.append("\(x)/ctr") }
        // (/dev/shm is a tmpfs nearly everywhere; /tmp often is not)
        candidates.append("/dev/shm/ctr-run-\(uid)")
        candidates.append("/tmp/ctr-run-\(uid)")
        for dir in candidates {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST { continue }
            var st = stat()
            guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == uid, st.st_mode & 0o077 == 0 else { continue }
            return dir
        }
        return nil
    }

    /// The maps as the kernel shows them in /proc/PID/uid_map (and gid_map): one line per range.
    static func mapText(_ ranges: [IDRange]) -> String {
        ranges.map { "\($0.containerID) \($0.hostID) \($0.count)" }.joined(separator: "\n")
    }

    static func normalized(_ procMap: String) -> String {
        procMap.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            .joined(separator: "\n")
    }

    /// An fd (O_RDONLY, close-on-exec) of the shared user namespace for `mapping`, made when
    /// there is none. Only for `.mapped` as an unprivileged user (the other cases write their
    /// maps directly, which costs nothing); nil otherwise, or when there is no runtime dir.
    public static func namespace(for mapping: IDMapping) throws -> Int32? {
        guard getuid() != 0, case .mapped(let uids, let gids) = mapping, let dir = runtimeDir() else { return nil }
        let want = (uid: mapText(uids), gid: mapText(gids))
        let key = fnv(want.uid + "|" + want.gid)
        let state = "\(dir)/userns-\(key)"
        let lock = open("\(dir)/userns.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { return nil }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        defer { flock(lock, LOCK_UN) }
        if let fd = existing(state: state, want: want) { return fd }

        // a new keeper: its namespace mapped by newuidmap and newgidmap once
        var err = csys_error()
        let stub = csys_exec_stub_open(&err)
        if stub < 0 { throw CtrError(err) }
        defer { close(stub) }
        let tmp = "\(state).tmp"
        guard let f = fopen(tmp, "w") else { throw CtrError.errno("userns", "cannot write \(tmp)") }
        fclose(f)
        var release: Int32 = -1
        let pid = csys_userns_keeper_start(stub, state, &release, &err)
        if pid < 0 { unlink(tmp); throw CtrError(err) }
        do {
            try UserNamespace.writeMaps(pid: pid, mapping: mapping)
        } catch {
            close(release)  // it exits
            unlink(tmp)
            throw error
        }
        let fd = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
        let start = csys_proc_starttime(pid)
        // the state file first (the keeper exits when it is missing), then let it go
        let record = "\(pid) \(start)\n"
        _ = record.withCString { s in
            let out = open(tmp, O_WRONLY | O_TRUNC | O_CLOEXEC)
            defer { if out >= 0 { close(out) } }
            return out >= 0 ? write(out, s, strlen(s)) : -1
        }
        rename(tmp, state)
        _ = write(release, "g", 1)
        close(release)
        if fd < 0 { throw CtrError.errno("userns", "cannot open the shared user namespace") }
        return fd
    }

    /// The keeper the state file names, if it is alive, ours and mapped as wanted.
    static func existing(state: String, want: (uid: String, gid: String)) -> Int32? {
        guard let text = try? String(contentsOfFile: state, encoding: .utf8) else { return nil }
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count == 2, let pid = Int32(f[0]), let start = UInt64(f[1]), pid > 1 else { return nil }
        guard csys_proc_starttime(pid) == start else { return nil }
        let fd = open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        // owned by us, and mapping exactly what we would map
        var owner: uid_t = .max
        let uidMap = (try? String(contentsOfFile: "/proc/\(pid)/uid_map", encoding: .utf8)).map(normalized)
        let gidMap = (try? String(contentsOfFile: "/proc/\(pid)/gid_map", encoding: .utf8)).map(normalized)
        guard csys_ns_owner_uid(fd, &owner) == 0, owner == getuid(), uidMap == want.uid, gidMap == want.gid,
              csys_proc_starttime(pid) == start else {
            close(fd)
            return nil
        }
        return fd
    }

    /// A short stable name for a string (FNV-1a; not a security hash: a file name).
    public static func fnv(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }
}
