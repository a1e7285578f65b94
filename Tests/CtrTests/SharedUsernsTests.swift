import Foundation
import Testing

/// Rootless containers of a user share one user namespace, mapped once (newuidmap and newgidmap
/// cost about 8 ms per start), held by a keeper process; each still has its own mount, pid,
/// network, uts and ipc namespaces. See HostOS/UsernsKeeper.swift.
@Suite(.serialized) struct SharedUsernsTests {
    func prepared() throws -> Workspace? {
        guard Who.rootless.available, TestEnv.haveBusybox else { print("skip: \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(.rootless)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        return w
    }

    func ns(_ w: Workspace, env: [String: String] = [:]) throws -> (user: String, mnt: String) {
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "sh", "-c", "readlink /proc/self/ns/user; readlink /proc/self/ns/mnt"], env: env)
        expectOK(r)
        return (r.lines.first ?? "", r.lines.last ?? "")
    }

    /// The keeper's pid, from its state file in the runtime dir.
    func keeper(_ w: Workspace) -> pid_t? {
        let dir = "\(w.dir)/run/ctr"
        guard let f = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.first(where: { $0.hasPrefix("userns-") && !$0.hasSuffix(".tmp") }),
              let text = try? String(contentsOfFile: "\(dir)/\(f)", encoding: .utf8) else { return nil }
        return text.split(separator: " ").first.flatMap { pid_t($0) }
    }

    @Test func containersShareOneMappedUserNamespace() throws {
        guard let w = try prepared() else { return }
        let a = try ns(w), b = try ns(w)
        #expect(a.user == b.user && !a.user.isEmpty, "one user namespace: \(a) \(b)")
        let k = try #require(keeper(w), "a keeper with a state file in $XDG_RUNTIME_DIR/ctr")
        let comm = try String(contentsOfFile: "/proc/\(k)/comm", encoding: .utf8)
        #expect(comm.hasPrefix("ctr-userns") || comm.hasPrefix("3") || !comm.isEmpty)
        let keeperNS = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(k)/ns/user")
        #expect(keeperNS == a.user, "the keeper holds it")
        // the keeper has no capabilities and is not a copy of ctr
        let status = try String(contentsOfFile: "/proc/\(k)/status", encoding: .utf8)
        #expect(status.contains("CapEff:\t0000000000000000") && status.contains("CapPrm:\t0000000000000000"), "\(status)")
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(k)/exe")) ?? ""
        #expect(exe.hasPrefix("/memfd:"), "\(exe)")
        // exec joins it; a uid of the range works there
        expectOK(try w.ctrHome(["run", "-d", "--name", "k1", "--network", "none", "busybox:local", "sleep", "30"]))
        let e = try w.ctrHome(["exec", "-u", "1000", "k1", "sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/mnt"])
        #expect(e.lines.prefix(2) == ["1000", a.user], "\(e)")
        let c = try ns(w)
        #expect(c.user == a.user && e.lines.count == 3 && c.mnt != e.lines[2], "each container has its own mount namespace: \(c) \(e)")
        expectOK(try w.ctrHome(["rm", "-f", "k1"]))
        // CTR_SHARED_USERNS=0: a namespace of its own
        let own = try ns(w, env: ["CTR_SHARED_USERNS": "0"])
        #expect(own.user != a.user)
    }

    @Test func aDeadOrForeignKeeperIsReplaced() throws {
        guard let w = try prepared() else { return }
        let first = try ns(w)
        let k = try #require(keeper(w))
        kill(k, SIGKILL)
        usleep(100_000)
        let second = try ns(w)
        #expect(second.user != first.user, "a new keeper after the old one died")
        let k2 = try #require(keeper(w))
        #expect(k2 != k)
        // a state file naming a process of this user that is not a keeper (its user namespace
        // is the host's, owned by root) is not trusted
        let dir = "\(w.dir)/run/ctr"
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("userns-") && !$0.hasSuffix(".tmp") })
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        sleeper.arguments = ["--reuid=ctrtest", "--regid=ctrtest", "--clear-groups", "/bin/sleep", "30"]
        try sleeper.run()
        defer { sleeper.terminate() }
        usleep(100_000)
        let spid = sleeper.processIdentifier
        let st = try String(contentsOfFile: "/proc/\(spid)/stat", encoding: .utf8)
        let start = st[st.range(of: ")")!.upperBound...].split(separator: " ")[19]
        expectOK(try w.bash("printf '\(spid) \(start)\\n' > \(dir)/\(file)"))
        let third = try ns(w)
        let hostNS = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/user")
        #expect(third.user != hostNS && third.user != second.user, "\(third)")
        #expect(keeper(w) != spid)
        // the keeper goes when its state file does (checked every 5 s)
        let k3 = try #require(keeper(w))
        expectOK(try w.bash("rm -f \(dir)/userns-*"))
        var gone = false
        for _ in 0..<80 where !gone { usleep(100_000); gone = kill(k3, 0) != 0 }
        #expect(gone, "the keeper exits once its state file is gone")
    }
}
