import CSysShims
import Foundation
import Testing

/// `ctr run` and the container lifecycle, rootless (with and without subordinate ids) and as root.
@Suite(.serialized) struct RunTests {
    static let modes: [Who] = [.rootless, .root]

    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", "--change", #"CMD ["sh"]"#, TestEnv.busyboxTar]))
        return w
    }

    /// ctr run --rm --network none IMAGE ARGS…
    func run(_ w: Workspace, _ args: [String], env: [String: String] = [:], stdin: Data? = nil) throws -> RunResult {
        try w.ctrHome(["run", "--rm", "--network", "none"] + args, env: env, stdin: stdin)
    }

    /// From an audit against podman: the container never shares ctr's controlling terminal
    /// (TIOCSTI could type into the host's shell), its inheritable capabilities are empty, exec
    /// starts processes as the container's own (-e, -w, -u), bad option values are refused, and
    /// a run that fails leaves no container dir.
    @Test(arguments: modes)
    func terminalCapsExecInheritsAndChecks(_ who: Who) throws {
        guard let w = try prepared(who), TestEnv.have("script") else { return }
        let base = "HOME=\(w.home) XDG_RUNTIME_DIR=\(w.dir)/run CTR_ROOT=\(w.store) \(TestEnv.binary)"
        // field 7 of /proc/self/stat is the controlling tty: none without -t, even on a terminal
        let ttyNr = try w.sh(["script", "-qec", "\(base) run --rm --network none busybox:local sh -c 'cut -d\" \" -f7 /proc/self/stat; grep CapInh /proc/self/status'", "/dev/null"])
        expectOK(ttyNr)
        let ttyLines = ttyNr.stdout.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n").map(String.init)
        #expect(ttyLines == ["0", "CapInh:\t0000000000000000"], "\(ttyNr)")
        // --init's pid 1 shows none of the host's command line (its -e values)
        let initCmd = try run(w, ["--init", "-e", "SECRET=hidden", "busybox:local", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"])
        #expect(initCmd.stdout.trimmingCharacters(in: .whitespaces) == "ctr-init" && !initCmd.stdout.contains("hidden"), "\(initCmd)")
        expectOK(try w.ctrHome(["run", "-d", "--name", "ex", "--network", "none", "-e", "FOO=fromrun", "-w", "/tmp", "-u", "1000",
                                "busybox:local", "sleep", "60"]))
        let inherited = try w.ctrHome(["exec", "ex", "sh", "-c", "echo $FOO; pwd; id -u"])
        #expect(inherited.lines == ["fromrun", "/tmp", "1000"], "\(inherited)")
        let ps = try w.ctrHome(["ps", "--format", "{{.Names}} {{.State}} {{.Image}}"])
        #expect(ps.lines == ["ex running busybox:local"], "ps takes a Go template: \(ps)")
        let execTty = try w.sh(["script", "-qec", "\(base) exec ex cut -d' ' -f7 /proc/self/stat", "/dev/null"])
        #expect(execTty.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(execTty)")
        expectOK(try w.ctrHome(["rm", "-f", "ex"]))
        // refused, one line each, and nothing left in containers/
        for bad in [["--userns", "bogus"], ["--security-opt", "no-new-privileges=maybe"], ["--name", "a b"], ["-e", "=x"],
                    ["-w", "rel"], ["-v", "\(w.dir)/vol:relative"]] {
            let r = try w.ctrHome(["run", "--rm", "--network", "none"] + bad + ["busybox:local", "true"])
            #expect(r.status != 0 && r.stderr.split(separator: "\n").count == 1, "\(bad): \(r)")
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "\(w.store)/containers")) ?? []
        #expect(left.isEmpty, "failed runs leave no container dir: \(left)")
    }

    @Test(arguments: modes)
    func exitCodesAndOutput(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let hello = try run(w, ["busybox:local", "echo", "hello"])
        #expect(hello.status == 0 && hello.stdout == "hello\n", "\(hello)")
        #expect(try run(w, ["busybox:local", "sh", "-c", "exit 3"]).status == 3)
        // a signal: 128+N (pid 1 cannot be killed from inside its namespace, so with --init)
        #expect(try run(w, ["--init", "busybox:local", "sh", "-c", "kill -KILL $$"]).status == 137)
        // the image's CMD when none is given, stdin passed with -i
        let sh = try run(w, ["-i", "busybox:local"], stdin: Data("echo from-stdin; exit 4\n".utf8))
        #expect(sh.status == 4 && sh.stdout == "from-stdin\n", "\(sh)")
        // commands that cannot run: 127 and 126, one line
        let missing = try run(w, ["busybox:local", "no-such-command"])
        #expect(missing.status == 127, "\(missing)")
        expectOneLineError(missing, mentions: "no-such-command")
        let notExec = try run(w, ["busybox:local", "/etc/passwd"])
        #expect(notExec.status == 126, "\(notExec)")
        // an image that is not there (and may not be pulled): ctr's own failure, 125 as docker run
        let noImage = try w.ctrHome(["run", "--rm", "--pull", "never", "nothing:here", "true"])
        expectOneLineError(noImage, mentions: "nothing:here")
        #expect(noImage.status == 125, "\(noImage)")
    }

    @Test(arguments: modes)
    func identityEnvironmentAndWorkdir(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("printf 'FROM_FILE=yes\\n# comment\\nB=2\\n' > vars"))
        let r = try run(w, ["-e", "A=1", "--env-file", "\(w.dir)/vars", "-e", "B=3", "-w", "/tmp", "-u", "1000:1000",
                            "busybox:local", "sh", "-c", "id; pwd; echo $A $B $FROM_FILE $HOME; touch /tmp/x && stat -c %u /tmp/x"])
        #expect(r.status == 0, "\(r)")
        #expect(r.lines == ["uid=1000(user) gid=1000(user) groups=1000(user)", "/tmp", "1 3 yes /home/user", "1000"], "\(r)")
        let byName = try run(w, ["-u", "user", "busybox:local", "id"])
        #expect(byName.stdout.hasPrefix("uid=1000(user) gid=1000(user) groups="), "\(byName)")
        #expect(byName.stdout.contains("10(wheel)") && byName.stdout.contains("1000(user)"), "supplementary groups from /etc/group: \(byName)")
        expectOneLineError(try run(w, ["-u", "nobody-here", "busybox:local", "id"]), mentions: "nobody-here")
        // a file owned by 1000 in the image shows uid 1000
        let own = try run(w, ["busybox:local", "stat", "-c", "%u:%g", "/home/user/owned-by-1000"])
        #expect(own.stdout == "1000:1000\n", "\(own)")
        let host = try run(w, ["--hostname", "box1", "busybox:local", "sh", "-c", "hostname; cat /etc/hostname"])
        #expect(host.stdout == "box1\nbox1\n", "\(host)")
    }

    /// As root there is no user namespace unless asked for; with one, root's subordinate range
    /// maps the container and the layers (root's own) are seen through idmapped mounts.
    @Test func rootWithUserNamespace() throws {
        guard let w = try prepared(.root) else { return }
        let plain = try run(w, ["busybox:local", "cat", "/proc/self/uid_map"])
        #expect(plain.stdout.split(separator: " ", omittingEmptySubsequences: true).map(String.init) == ["0", "0", "4294967295\n"], "\(plain)")
        guard let (start, _) = TestEnv.subRange(file: "/etc/subuid", user: "root") else {
            print("skip rootWithUserNamespace: root has no range in /etc/subuid; \(TestEnv.setupHint)")
            return
        }
        let r = try run(w, ["--userns", "auto", "busybox:local", "sh", "-c", """
            cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'
            id -u; stat -c %u:%g / /home/user/owned-by-1000 /etc/hosts
            ls /root >/dev/null && echo root-dir-readable
            mkdir /data && chown 1000:1000 /data && stat -c %u /data
            exit 5
            """])
        #expect(r.status == 5, "\(r)")
        #expect(r.lines == ["0 \(start) 65536", "0", "0:0", "1000:1000", "0:0", "root-dir-readable", "1000"], "\(r)")
        // detached: exec joins the namespace, and users resolve from the image
        expectOK(try w.ctrHome(["run", "-d", "--name", "un", "--network", "none", "--userns", "auto", "busybox:local", "sleep", "60"]))
        let ex = try w.ctrHome(["exec", "-u", "user", "un", "sh", "-c", "id -u; stat -c %u /home/user/owned-by-1000"])
        #expect(ex.lines == ["1000", "1000"], "\(ex)")
        // on the host the container's files belong to the range
        let upper = try w.bash("stat -c %u \(w.store)/containers/*/upper")
        #expect(upper.stdout == "\(start)\n", "\(upper)")
        expectOK(try w.ctrHome(["rm", "-f", "un"]))
    }

    /// --cap-add ALL is every capability this process may still hand on; -it wants a terminal;
    /// a working directory through a dangling symlink is made inside the root.
    @Test(arguments: modes)
    func capAllTerminalCheckAndWorkdirSymlink(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let all = try run(w, ["--cap-add", "ALL", "busybox:local", "grep", "CapEff", "/proc/self/status"])
        let bnd = try w.bash("grep CapBnd /proc/self/status | cut -f2")
        #expect(all.status == 0 && all.stdout.hasSuffix("\t" + bnd.stdout), "CapEff is our bounding set: \(all) \(bnd)")
        let it = try run(w, ["-it", "busybox:local", "sh"], stdin: Data("echo hi\n".utf8))
        expectOneLineError(it, mentions: "not a TTY")
        expectOK(try w.bash("mkdir ctx && echo copied > ctx/f && printf 'FROM busybox:local\\nRUN ln -s /tmp/gone /evil\\nWORKDIR /evil/wd\\nCOPY f /evil/f\\n' > ctx/Dockerfile"))
        expectOK(try w.ctrHome(["build", "-q", "-t", "wd:1", "ctx"]))
        let wd = try run(w, ["wd:1", "sh", "-c", "pwd -P; test -L /evil && echo link-kept; test -d /tmp/gone/wd && echo made-inside; cat /tmp/gone/f"])
        #expect(wd.lines == ["/tmp/gone/wd", "link-kept", "made-inside", "copied"], "WORKDIR and COPY follow the link: \(wd)")
        // a workdir given at run time through the same dangling link
        let rt = try run(w, ["-w", "/evil/other", "wd:1", "pwd", "-P"])
        #expect(rt.stdout == "/tmp/gone/other\n", "\(rt)")
    }

    @Test(arguments: modes)
    func confinement(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let st = try run(w, ["busybox:local", "sh", "-c", "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status"])
        #expect(st.stdout.contains("Seccomp:\t2"), "\(st)")
        #expect(st.stdout.contains("NoNewPrivs:\t1"))
        #expect(st.stdout.contains("CapEff:\t00000000800405fb"), "podman's default capabilities: \(st)")
        #expect(st.stdout.contains("CapBnd:\t00000000800405fb"))
        // a user other than root has no effective capabilities
        let user = try run(w, ["-u", "1000", "busybox:local", "grep", "CapEff", "/proc/self/status"])
        #expect(user.stdout.contains("0000000000000000"), "\(user)")
        let add = try run(w, ["--cap-add", "NET_RAW", "--cap-drop", "chown", "busybox:local", "grep", "CapEff", "/proc/self/status"])
        #expect(add.stdout.contains("00000000800425fa"), "NET_RAW (13) added, CHOWN (0) dropped: \(add)")
        let unconfined = try run(w, ["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges=false",
                                     "busybox:local", "grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"])
        #expect(unconfined.stdout.contains("Seccomp:\t0") && unconfined.stdout.contains("NoNewPrivs:\t0"), "\(unconfined)")
        // the default profile refuses what podman's refuses
        let denied = try run(w, ["busybox:local", "sh", "-c", "swapon /dev/null 2>&1; echo rc=$?"])
        #expect(denied.stdout.contains("Operation not permitted"), "\(denied)")
        // masked and read-only paths
        let masked = try run(w, ["busybox:local", "sh", "-c", "wc -c < /proc/keys; echo 1 > /proc/sys/kernel/domainname 2>&1 || echo ro"])
        #expect(masked.stdout.hasPrefix("0\n"), "\(masked)")
        #expect(masked.stdout.contains("ro"), "\(masked)")
        // no fd of ctr's leaks into the container
        let fds = try run(w, ["busybox:local", "ls", "/proc/self/fd"])
        #expect(fds.stdout == "0\n1\n2\n3\n", "only stdio (and ls's own directory): \(fds)")
    }

    @Test(arguments: modes)
    func volumesTmpfsAndReadOnly(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("mkdir src && echo data > src/file"))
        let ro = try run(w, ["-v", "\(w.dir)/src:/src:ro", "--tmpfs", "/scratch", "--read-only", "busybox:local", "sh", "-c",
                             "cat /src/file; touch /src/new 2>/dev/null || echo src-ro; touch /scratch/ok && echo scratch-rw; touch /rootfile 2>/dev/null || echo root-ro"])
        #expect(ro.stdout == "data\nsrc-ro\nscratch-rw\nroot-ro\n", "\(ro)")
        let rw = try run(w, ["-v", "\(w.dir)/src:/data", "busybox:local", "sh", "-c", "echo written > /data/out"])
        #expect(rw.status == 0, "\(rw)")
        #expect(try String(contentsOfFile: "\(w.dir)/src/out", encoding: .utf8) == "written\n")
        // a named volume persists between containers
        expectOK(try run(w, ["-v", "vol1:/v", "busybox:local", "sh", "-c", "echo kept > /v/f"]))
        let again = try run(w, ["-v", "vol1:/v", "busybox:local", "cat", "/v/f"])
        #expect(again.stdout == "kept\n", "\(again)")
        // --ulimit
        let ul = try run(w, ["--ulimit", "nofile=100:200", "busybox:local", "sh", "-c", "ulimit -n; ulimit -Hn"])
        #expect(ul.stdout == "100\n200\n", "\(ul)")
    }

    /// An image whose /evil is a symlink to a host directory: a volume mounted at /evil/x
    /// must land inside the container's root, never on the host.
    @Test(arguments: modes)
    func volumeTargetThroughASymlinkStaysInside(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let sentinel = "\(w.dir)/host-dir"
        expectOK(try w.bash("mkdir -p host-dir img && ln -s \(sentinel) img/evil && ln -s ../../../../../../..\(sentinel) img/evil2 && echo x > mounted && tar -C img -cf evil.tar ."))
        expectOK(try w.ctrHome(["import", "--tag", "evil", "\(w.dir)/evil.tar"]))
        let env = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        for target in ["/evil/x", "/evil2/y"] {
            let r = try w.ctrHome(["run", "--rm", "--network", "none", "-v", "\(w.dir)/mounted:\(target)", "busybox:local", "true"], env: env)
            _ = r
            let r2 = try w.ctrHome(["run", "--rm", "--network", "none", "-v", "\(w.dir)/mounted:\(target)", "evil", "/x"], env: env)
            _ = r2
        }
        // whatever the runs did, nothing appeared in the host directory
        let inside = (try? FileManager.default.contentsOfDirectory(atPath: sentinel)) ?? []
        #expect(inside.isEmpty, "the host directory was reached: \(inside)")
        // and the mount did happen inside the container's root
        expectOK(try w.bash("mkdir -p img2/bin && cp /bin/busybox img2/bin/ && ln -s \(sentinel) img2/evil && tar -C img2 -cf evil2.tar ."))
        expectOK(try w.ctrHome(["import", "--tag", "evil2", "\(w.dir)/evil2.tar"]))
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "-v", "\(w.dir)/mounted:/evil/x", "evil2", "/bin/busybox", "cat", "\(sentinel)/x"])
        #expect(r.stdout == "x\n", "the mount is at the symlink's target inside the root: \(r)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: sentinel)) ?? []).isEmpty)
    }

    @Test(arguments: modes)
    func networkNoneAndHost(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let none = try run(w, ["busybox:local", "ip", "-o", "link"])
        #expect(none.stdout.split(separator: "\n").count == 1 && none.stdout.contains("lo:"), "\(none)")
        // --network host reaches a server on the host's loopback
        let server = try FaultServer { _ in .respond(status: 200, headers: [:], body: Data("from-host\n".utf8)) }
        let host = try w.ctrHome(["run", "--rm", "--network", "host", "busybox:local", "wget", "-qO-", "http://\(server.addr)/"])
        #expect(host.stdout == "from-host\n", "\(host)")
    }

    /// -p through pasta or slirp4netns where this user can run them; elsewhere one clear line.
    @Test(arguments: modes)
    func publishedPort(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let info = try w.ctrHome(["info"])
        let usable = info.stdout.contains("network pasta: available") || info.stdout.contains("network slirp4netns: available")
        let port = 20000 + Int(getpid() % 20000)
        let args = ["run", "-d", "--name", "pub", "-p", "\(port):80", "busybox:local", "sh", "-c",
                    "mkdir -p /w && echo served-from-container > /w/index.html && exec httpd -f -p 80 -h /w"]
        guard usable else {
            print("note \(who): no pasta/slirp4netns for this user (\(info.stdout.split(separator: "\n").filter { $0.contains("/dev/net/tun") }.joined()))")
            expectOneLineError(try w.ctrHome(args), mentions: "-p")
            return
        }
        expectOK(try w.ctrHome(args))
        defer { _ = try? w.ctrHome(["rm", "-f", "pub"]) }
        var body = ""
        for _ in 0..<30 where !body.contains("served") {
            usleep(100_000)
            body = (try? w.sh(["busybox", "wget", "-qO-", "http://127.0.0.1:\(port)/"]))?.stdout ?? ""
        }
        #expect(body == "served-from-container\n")
        expectOK(try w.ctrHome(["rm", "-f", "pub"]))
        // the helper is gone with the container: the port is free again
        // (curl: busybox's wget -T crashes here, which would pass for a refused connection)
        let after = try w.sh(["curl", "-s", "-m", "2", "http://127.0.0.1:\(port)/"])
        #expect(after.status == 7, "connection refused: \(after)")
    }

    /// --add-host reaches /etc/hosts, also when a network helper rewrites the file with its
    /// address (the default network where slirp4netns or pasta can run).
    @Test(arguments: modes)
    func addHostWithEveryNetwork(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        for net in [["--network", "none"], []] {
            let r = try w.ctrHome(["run", "--rm"] + net + ["--add-host", "db:10.0.0.5", "busybox:local", "grep", "-c", "10.0.0.5.*db", "/etc/hosts"])
            #expect(r.stdout == "1\n", "\(net): \(r)")
        }
        // --network host: the host's name and /etc/hosts, plus --add-host (docker, podman)
        let host = try w.ctrHome(["run", "--rm", "--network", "host", "--add-host", "db:10.0.0.5", "busybox:local", "sh", "-c",
                                  "hostname; grep -c 10.0.0.5.*db /etc/hosts"])
        let hostHosts = (try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? ""
        #expect(host.lines == [hostName(), "1"], "\(host)")
        let seen = try w.ctrHome(["run", "--rm", "--network", "host", "busybox:local", "cat", "/etc/hosts"])
        #expect(seen.stdout == hostHosts, "\(seen)")
    }

    func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count) == 0 ? String(cString: buf) : ""
    }

    /// --memory and --pids-limit bite where a cgroup is writable (root; a delegated cgroup v2
    /// subtree); elsewhere a one-line error, never a silent no-op.
    @Test(arguments: modes)
    func resourceLimits(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let pids = try run(w, ["--pids-limit", "5", "busybox:local", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait"])
        if who == .root || pids.status == 0 || pids.stderr.contains("can't fork") {
            #expect(pids.stderr.contains("can't fork"), "the sixth process is refused: \(pids)")
            let mem = try run(w, ["--memory", "32m", "--memory-swap", "32m", "busybox:local", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
            #expect(mem.status == 137, "64 MiB in a 32 MiB cgroup is OOM-killed: \(mem)")
            let fine = try run(w, ["--memory", "64m", "--cpus", "0.5", "busybox:local", "true"])
            expectOK(fine)
        } else {
            expectOneLineError(pids, mentions: "--pids-limit")
            expectOneLineError(try run(w, ["--memory", "64m", "busybox:local", "true"]), mentions: "--memory")
        }
        expectOneLineError(try run(w, ["--memory", "lots", "busybox:local", "true"]), mentions: "lots")
    }

    @Test(arguments: modes)
    func initReapsZombiesAndForwardsSignals(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        // an orphan: the inner sh exits at once, its sleep is reparented to pid 1. pid 1 is the
        // command (sh exec'ing sleep, which never waits) or, with --init, the init.
        let script = "(sh -c 'sleep 0.2 &'; sleep 1; ps -o stat,comm | grep -c '^Z' || true) & exec sleep 1.5"
        let with = try run(w, ["--init", "busybox:local", "sh", "-c", script])
        #expect(with.stdout == "0\n", "no zombie with --init: \(with)")
        let without = try run(w, ["busybox:local", "sh", "-c", script])
        #expect(without.stdout == "1\n", "a zombie without an init reaping it: \(without)")
        // pid 1 with --init is the init; the command is pid 2
        let pid = try run(w, ["--init", "busybox:local", "sh", "-c", "echo $$"])
        #expect(pid.stdout == "2\n", "\(pid)")
        // a signal sent to ctr reaches the container (through init)
        let start = Date()
        let sig = try w.bash("\(TestEnv.binary) run --rm --network none --init busybox:local sleep 30 & p=$!; sleep 1; kill -TERM $p; wait $p; echo $?",
                             env: ["CTR_ROOT": w.store, "HOME": w.home])
        #expect(sig.stdout.hasSuffix("143\n"), "SIGTERM forwarded, 128+15: \(sig)")
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test(arguments: modes)
    func detachedLifecycle(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let d = try w.ctrHome(["run", "-d", "--name", "web", "--network", "none", "busybox:local", "sh", "-c",
                               "trap 'echo got-term; exit 9' TERM; echo hello; echo oops >&2; while :; do sleep 0.1; done"])
        expectOK(d)
        let id = d.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.count == 64, "\(d)")
        usleep(500_000)
        let ps = try w.ctrHome(["ps"])
        #expect(ps.stdout.contains("web") && ps.stdout.contains("Up"), "\(ps)")
        let json = try w.ctrHome(["ps", "--format", "json"])
        #expect(json.stdout.contains("\"state\" : \"running\""), "\(json)")
        let logs = try w.ctrHome(["logs", "web"])
        #expect(logs.stdout == "hello\n" && logs.stderr == "oops\n", "\(logs)")
        let tail = try w.ctrHome(["logs", "--tail", "1", "web"])
        #expect(tail.stdout.isEmpty && tail.stderr == "oops\n", "--tail 1: the last line only: \(tail)")
        let ts = try w.ctrHome(["logs", "--timestamps", "web"])
        #expect(ts.stdout.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z hello$"#, options: .regularExpression) != nil, "\(ts)")
        // exec joins every namespace: same hostname, sees pid 1
        let ex = try w.ctrHome(["exec", "web", "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; id -u"])
        #expect(ex.status == 0, "\(ex)")
        #expect(ex.lines.first == String(id.prefix(12)), "\(ex)")
        #expect(ex.stdout.contains("sh -c trap"), "\(ex)")
        #expect(try w.ctrHome(["exec", "web", "sh", "-c", "exit 5"]).status == 5)
        let exUser = try w.ctrHome(["exec", "-u", "1000", "-w", "/tmp", "-e", "X=y", "web", "sh", "-c", "id -u; pwd; echo $X"])
        #expect(exUser.stdout == "1000\n/tmp\ny\n", "\(exUser)")
        // kill -s HUP is delivered; stop sends TERM, the trap exits 9
        expectOK(try w.ctrHome(["kill", "-s", "USR1", "web"]) , "kill")
        let stop = try w.ctrHome(["stop", "-t", "5", "web"])
        expectOK(stop)
        let after = try w.ctrHome(["ps", "-a"])
        #expect(after.stdout.contains("Exited (9)") || after.stdout.contains("Exited (138)"), "\(after)")
        #expect(try w.ctrHome(["logs", "web"]).stdout.contains("got-term") || after.stdout.contains("Exited (138)"))
        expectOneLineError(try w.ctrHome(["exec", "web", "true"]), mentions: "not running")
        expectOK(try w.ctrHome(["rm", "web"]))
        #expect(try w.ctrHome(["ps", "-a", "-q"]).stdout.isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(w.store)/containers")) ?? []).isEmpty, "rm removed the state")
        // rm of a running container needs --force; --rm with -d removes itself on exit
        expectOK(try w.ctrHome(["run", "-d", "--name", "spin", "--network", "none", "busybox:local", "sleep", "100"]))
        expectOneLineError(try w.ctrHome(["rm", "spin"]), mentions: "--force")
        expectOK(try w.ctrHome(["rm", "-f", "spin"]))
        expectOK(try w.ctrHome(["run", "-d", "--rm", "--name", "short", "--network", "none", "busybox:local", "true"]))
        var gone = false
        for _ in 0..<50 where !gone { usleep(100_000); gone = try w.ctrHome(["ps", "-a", "-q"]).stdout.isEmpty }
        #expect(gone, "a detached --rm container removes itself")
    }

    @Test(arguments: modes)
    func aKilledMonitorIsReportedAndCleaned(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.ctrHome(["run", "-d", "--name", "orphan", "--network", "none", "busybox:local", "sleep", "100"]))
        let json = try w.ctrHome(["ps", "--format", "json"])
        let list = (try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]) ?? []
        let id = try #require(list.first?["id"] as? String)
        let rec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(w.store)/containers/\(id)/container.json"))) as? [String: Any]
        let monitor = try #require(rec?["monitorPid"] as? Int)
        kill(pid_t(monitor), SIGKILL)
        usleep(200_000)
        let ps = try w.ctrHome(["ps"])
        #expect(ps.stdout.contains("monitor gone"), "\(ps)")
        expectOK(try w.ctrHome(["rm", "-f", "orphan"]))
        #expect(try w.ctrHome(["ps", "-a", "-q"]).stdout.isEmpty)
        let pid = rec?["pid"] as? Int ?? 0
        #expect(csys_proc_starttime(pid_t(pid)) == 0 || kill(pid_t(pid), 0) != 0, "the container process is gone")
    }

    @Test(arguments: modes)
    func terminalAndResize(_ who: Who) throws {
        guard TestEnv.have("script"), let w = try prepared(who) else { return }
        let cmd = "stty cols 91 rows 33; CTR_ROOT=\(w.store) HOME=\(w.home) \(TestEnv.binary) run --rm -it --network none busybox:local sh -c '[ -t 0 ] && echo is-a-tty; tty; stty size'"
        let r = try w.sh(["script", "-qec", cmd, "/dev/null"])
        #expect(r.stdout.contains("is-a-tty"), "\(r)")
        #expect(r.stdout.contains("/dev/console"), "the terminal has a name inside (ttyname): \(r.stdout.debugDescription)")
        #expect(r.stdout.contains("33 91"), "the window size reaches the container: \(r.stdout.debugDescription)")
    }

    @Test func withoutSubordinateIDs() throws {
        guard let w = try prepared(.nosub) else { return }
        let r = try run(w, ["busybox:local", "sh", "-c", "id -u; cat /proc/self/uid_map"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.hasPrefix("0\n"), "\(r)")
        #expect(r.stderr.contains("subordinate"), "said once on stderr: \(r)")
        let user = try run(w, ["-u", "1000", "busybox:local", "id"])
        expectOneLineError(user, mentions: "not mapped")
    }
}
