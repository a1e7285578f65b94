import Foundation
import Testing

/// Push, pull, login against Debian's docker-registry on 127.0.0.1 (plain HTTP, and TLS with
/// htpasswd auth), and interop with skopeo.
@Suite(.serialized) struct RegistryTests {
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        guard TestRegistry.available, TestRegistry.plain != nil else { print("skip: \(TestRegistry.skipReason)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", "--change", #"CMD ["sh"]"#, TestEnv.busyboxTar]))
        return w
    }

    static func repo(_ tag: String = "1") -> String { "t\(UUID().uuidString.prefix(8).lowercased())/busybox:\(tag)" }

    func imageID(_ w: Workspace, _ ref: String, root: String? = nil) throws -> String? {
        let r = try w.ctrHome(["inspect", ref], root: root)
        return ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]])?.first?["Id"] as? String
    }

    @Test(arguments: [Who.root, Who.rootless])
    func pushAndPullRoundTrip(_ who: Who) throws {
        guard let w = try prepared(who), let reg = TestRegistry.plain else { return }
        let ref = "\(reg.addr)/\(Self.repo())"
        let push = try w.ctrHome(["push", "busybox:local", ref, "--digest-file", "\(w.dir)/digest"])
        expectOK(push)
        let digest = try String(contentsOfFile: "\(w.dir)/digest", encoding: .utf8)
        #expect(digest.hasPrefix("sha256:") && digest.count == 71)
        #expect(push.stdout == digest + "\n", "push prints the digest: \(push)")

        // a fresh store pulls it: same image id, layers unpacked with the right owners
        let other = "\(w.dir)/other"
        let pull = try w.ctrHome(["pull", ref], root: other)
        expectOK(pull)
        #expect(pull.stderr.contains("Digest: \(digest)"), "\(pull)")
        #expect(try imageID(w, ref, root: other) == imageID(w, "busybox:local"))
        let layers = try FileManager.default.contentsOfDirectory(atPath: "\(other)/layers/sha256")
        #expect(layers.count == 1, "the pull ends with the layer unpacked: \(layers)")
        #expect(w.stat("\(other)/layers/sha256/\(layers[0])/home/user/owned-by-1000")?.st_uid == who.hostUID(1000))
        expectOK(try w.ctrHome(["unpack", ref, "\(w.dir)/u"], root: other))

        // by digest; -q prints only the digest; a second pull downloads nothing
        let base = ref.split(separator: ":").dropLast().joined(separator: ":")
        let byDigest = try w.ctrHome(["pull", "-q", "\(base)@\(digest)"], root: "\(w.dir)/third")
        expectOK(byDigest)
        #expect(byDigest.stdout == digest + "\n", "\(byDigest)")
        let again = try w.ctrHome(["pull", ref], root: other)
        expectOK(again)
        #expect(again.stderr.contains("exists"), "\(again)")
        #expect(again.stderr.contains("up to date"), "\(again)")
        // the same image under a name the store did not have: nothing to fetch, but the name is new (docker's wording)
        expectOK(try w.ctrHome(["push", "busybox:local", "\(ref)-other"]))
        let renamed = try w.ctrHome(["pull", "\(ref)-other"], root: other)
        expectOK(renamed)
        #expect(renamed.stderr.contains("exists") && renamed.stderr.contains("Status: Downloaded newer image for"), "\(renamed)")

        // a digest that is not there: the registry's error code, one line
        let missing = try w.ctrHome(["pull", "\(base)@sha256:\(String(repeating: "ab", count: 32))"], root: other)
        expectOneLineError(missing, mentions: "MANIFEST_UNKNOWN")
        #expect(missing.stderr.contains("@sha256:abab"), "a digest is written with @: \(missing)")
        // podman's docker:// transport is taken; a push by digest has no tag to name
        let viaTransport = try w.ctrHome(["pull", "-q", "docker://\(ref)"], root: "\(w.dir)/fourth")
        expectOK(viaTransport)
        #expect(viaTransport.stdout == digest + "\n" && viaTransport.stderr.isEmpty, "\(viaTransport)")
        let pushByDigest = try w.ctrHome(["push", "busybox:local", "\(base)@\(digest)"])
        expectOK(pushByDigest)
        #expect(pushByDigest.stderr.contains("\ndigest: \(digest) size: ") && !pushByDigest.stderr.contains("latest:"), "\(pushByDigest)")
        let noRepo = try w.ctrHome(["pull", "\(reg.addr)/nothing/here:1"], root: other)
        expectOneLineError(noRepo, mentions: "nothing/here:1")
        #expect(noRepo.stderr.contains("MANIFEST_UNKNOWN") || noRepo.stderr.contains("NAME_UNKNOWN"), "\(noRepo)")
    }

    @Test func chunkedUploadAndCrossRepositoryMount() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let w = try prepared(who), let reg = TestRegistry.plain else { return }
        let a = "\(reg.addr)/\(Self.repo())"
        let chunked = try w.ctrHome(["push", "--chunk-size", "100000", "busybox:local", a])
        expectOK(chunked)
        expectOK(try w.ctrHome(["pull", a], root: "\(w.dir)/check"))
        #expect(try imageID(w, a, root: "\(w.dir)/check") == imageID(w, "busybox:local"))
        // the same image into another repository of the registry: blobs are mounted
        let b = "\(reg.addr)/\(Self.repo("2"))"
        let mount = try w.ctrHome(["push", "busybox:local", b])
        expectOK(mount)
        #expect(mount.stderr.contains("mounted"), "\(mount)")
        #expect(!mount.stderr.contains("uploading"), "\(mount)")
        // and into the same repository again: everything exists
        let same = try w.ctrHome(["push", "busybox:local", b])
        #expect(same.stderr.contains("exists") && !same.stderr.contains("mounted"), "\(same)")
        expectOK(try w.ctrHome(["pull", b], root: "\(w.dir)/check2"))
    }

    @Test(arguments: [Who.root, Who.rootless])
    func tlsLoginAndAuthFiles(_ who: Who) throws {
        guard let w = try prepared(who), let reg = TestRegistry.secure else { return }
        let ref = "\(reg.addr)/\(Self.repo())"
        // loopback registries are insecure by default, as in Docker; --tls-verify=true insists
        let v = "--tls-verify=true"
        // no CA: the certificate is not trusted, and the message says where the CA goes
        let untrusted = try w.ctrHome(["push", v, "busybox:local", ref])
        expectOneLineError(untrusted, mentions: "certs.d")
        try w.trust(reg)
        // no credentials
        let anon = try w.ctrHome(["push", v, "busybox:local", ref])
        expectOneLineError(anon, mentions: "ctr login")
        // a wrong password
        let bad = try w.ctrHome(["login", v, reg.addr, "-u", TestRegistry.user, "--password-stdin"], stdin: Data("wrong\n".utf8))
        expectOneLineError(bad, mentions: "authentication failed")
        let authPath = "\(w.dir)/run/containers/auth.json"
        #expect(!FileManager.default.fileExists(atPath: authPath))
        // the right one, stored where podman stores it ($XDG_RUNTIME_DIR/containers/auth.json)
        let ok = try w.ctrHome(["login", v, reg.addr, "-u", TestRegistry.user, "--password-stdin"], stdin: Data("\(TestRegistry.password)\n".utf8))
        expectOK(ok)
        #expect(ok.stdout.contains("Login Succeeded"))
        let auth = try #require(FileManager.default.contents(atPath: authPath))
        let entry = ((try JSONSerialization.jsonObject(with: auth) as? [String: Any])?["auths"] as? [String: Any])?[reg.addr] as? [String: Any]
        #expect(entry?["auth"] as? String == Data("\(TestRegistry.user):\(TestRegistry.password)".utf8).base64EncodedString())
        #expect(w.stat(authPath)!.st_mode & 0o777 == 0o600)
        expectOK(try w.ctrHome(["push", v, "busybox:local", ref]))
        expectOK(try w.ctrHome(["pull", v, ref], root: "\(w.dir)/p1"))
        // logout, then the pull needs credentials again
        let out = try w.ctrHome(["logout", reg.addr])
        expectOK(out)
        expectOneLineError(try w.ctrHome(["pull", v, ref], root: "\(w.dir)/p2"), mentions: "ctr login")
        // on a terminal, login asks for the user and the password, and does not echo the password
        do {
            // a pty, with each answer typed when its prompt shows (python's pty, as a user would)
            let driver = """
            import os, pty, sys
            pid, fd = pty.fork()
            if pid == 0:
                os.execvp(sys.argv[1], sys.argv[1:-2])
            out = b""
            for prompt, answer in ((b"Username: ", sys.argv[-2]), (b"Password: ", sys.argv[-1])):
                while prompt not in out:
                    out += os.read(fd, 1024)
                os.write(fd, answer.encode() + b"\\n")
            while True:
                try:
                    b = os.read(fd, 1024)
                except OSError:
                    break
                if not b:
                    break
                out += b
            sys.stdout.write(out.decode())
            sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """
            let asked = try w.sh(["python3", "-c", driver, TestEnv.binary, "login", v, reg.addr, TestRegistry.user, TestRegistry.password],
                                 env: ["HOME": w.home, "XDG_RUNTIME_DIR": "\(w.dir)/run"])
            expectOK(asked)
            #expect(asked.stdout.contains("Username: \(TestRegistry.user)") && asked.stdout.contains("Password: "), "\(asked)")
            #expect(asked.stdout.contains("Login Succeeded") && !asked.stdout.contains(TestRegistry.password), "\(asked)")
            expectOK(try w.ctrHome(["pull", v, ref], root: "\(w.dir)/p2b"))
            expectOK(try w.ctrHome(["logout", reg.addr]))
        }
        // Docker's config.json is read too
        let dockerCfg = #"{"auths":{"\#(reg.addr)":{"auth":"\#(Data("\(TestRegistry.user):\(TestRegistry.password)".utf8).base64EncodedString())"}}}"#
        expectOK(try w.bash("mkdir -p home/.docker && cat > home/.docker/config.json <<'X'\n\(dockerCfg)\nX"))
        expectOK(try w.ctrHome(["pull", v, ref], root: "\(w.dir)/p3"))
        // a credsStore that is not installed: anonymous access, and the error names the helper
        expectOK(try w.bash(#"echo '{"credsStore":"nosuch"}' > home/.docker/config.json"#))
        expectOneLineError(try w.ctrHome(["pull", v, ref], root: "\(w.dir)/p3b"), mentions: "install docker-credential-nosuch (credsStore in ")
        expectOK(try w.bash("rm home/.docker/config.json"))
        // REGISTRY_AUTH_FILE
        expectOK(try w.bash("cat > authfile.json <<'X'\n\(dockerCfg)\nX"))
        expectOK(try w.ctrHome(["pull", v, ref], env: ["REGISTRY_AUTH_FILE": "\(w.dir)/authfile.json"], root: "\(w.dir)/p4"))
        // without the CA: --tls-verify=false, or the loopback default
        expectOK(try w.bash("rm -rf home/.config/containers/certs.d"))
        expectOK(try w.ctrHome(["pull", "--tls-verify=false", "--creds", "\(TestRegistry.user):\(TestRegistry.password)", ref], root: "\(w.dir)/p5"))
        expectOK(try w.ctrHome(["pull", "--creds", "\(TestRegistry.user):\(TestRegistry.password)", ref], root: "\(w.dir)/p6"))
        // a CA given with --cert-dir
        expectOK(try w.bash("mkdir certs && cp \(reg.caPath) certs/ca.crt"))
        expectOK(try w.ctrHome(["pull", v, "--cert-dir", "\(w.dir)/certs", "--creds", "\(TestRegistry.user):\(TestRegistry.password)", ref], root: "\(w.dir)/p7"))
    }

    @Test func interopWithSkopeo() throws {
        guard TestEnv.have("skopeo"), let w = try prepared(.root), let reg = TestRegistry.plain else { return }
        // pushed by ctr, read by skopeo
        let ref = "\(reg.addr)/\(Self.repo())"
        let push = try w.ctrHome(["push", "busybox:local", ref])
        expectOK(push)
        let digest = push.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let insp = try w.sh(["skopeo", "inspect", "--tls-verify=false", "docker://\(ref)"])
        expectOK(insp)
        #expect((try JSONSerialization.jsonObject(with: Data(insp.stdout.utf8)) as? [String: Any])?["Digest"] as? String == digest)
        expectOK(try w.sh(["skopeo", "copy", "--src-tls-verify=false", "docker://\(ref)", "oci:\(w.dir)/sk-layout:x"]))
        expectOK(try w.sh(["umoci", "unpack", "--rootless", "--image", "\(w.dir)/sk-layout:x", "\(w.dir)/sk-bundle"]))
        #expect(w.stat("\(w.dir)/sk-bundle/rootfs/bin/busybox") != nil)
        // pushed by skopeo (docker v2s2 manifest), pulled and unpacked by ctr
        expectOK(try w.ctrHome(["save", "-o", "\(w.dir)/img.tar", "busybox:local"]))
        let sref = "\(reg.addr)/\(Self.repo("skopeo"))"
        expectOK(try w.sh(["skopeo", "copy", "--dest-tls-verify=false", "--format", "v2s2", "oci-archive:\(w.dir)/img.tar", "docker://\(sref)"]))
        let pull = try w.ctrHome(["pull", sref], root: "\(w.dir)/from-skopeo")
        expectOK(pull)
        let insp2 = try w.ctrHome(["inspect", sref], root: "\(w.dir)/from-skopeo")
        #expect(insp2.stdout.contains("application/vnd.docker.distribution.manifest.v2+json"), "a Docker v2s2 manifest")
        expectOK(try w.ctrHome(["unpack", sref, "\(w.dir)/u"], root: "\(w.dir)/from-skopeo"))
        #expect(w.stat("\(w.dir)/u/rootfs/home/user/owned-by-1000")?.st_uid == 1000)
        // and run from ctr's store
        let ran = try w.ctrHome(["run", "--rm", "--network", "none", sref, "stat", "-c", "%u %n", "/home/user/owned-by-1000"], root: "\(w.dir)/from-skopeo")
        #expect(ran.status == 0 && ran.stdout == "1000 /home/user/owned-by-1000\n", "\(ran)")
        // ctr run pulls a missing image (--pull missing, the default), and not with --pull never
        let fresh = "\(w.dir)/run-pulls"
        expectOneLineError(try w.ctrHome(["run", "--rm", "--pull", "never", "--network", "none", sref, "true"], root: fresh), mentions: sref)
        let pulled = try w.ctrHome(["run", "--rm", "--network", "none", sref, "echo", "pulled-and-ran"], root: fresh)
        #expect(pulled.status == 0 && pulled.stdout == "pulled-and-ran\n", "\(pulled)")
    }

    @Test func registriesConfRewritesMirrorsAndBlocks() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let w = try prepared(who), let reg = TestRegistry.plain else { return }
        let repo = Self.repo()
        expectOK(try w.ctrHome(["push", "busybox:local", "\(reg.addr)/\(repo)"]))
        let ns = repo.split(separator: "/")[0]
        let conf = """
        [[registry]]
        prefix = "registry.example.invalid/\(ns)"
        location = "\(reg.addr)/\(ns)"

        [[registry]]
        prefix = "mirrored.example.invalid"
        location = "127.0.0.1:9"
        [[registry.mirror]]
        location = "\(reg.addr)"

        [[registry]]
        prefix = "blocked.example.invalid"
        location = "blocked.example.invalid"
        blocked = true

        [[registry]]
        prefix = "\(reg.addr)/blockedns"
        location = "\(reg.addr)/blockedns"
        blocked = true

        [[registry]]
        prefix = "mirrorfails.example.invalid"
        location = "\(reg.addr)"
        [[registry.mirror]]
        location = "127.0.0.1:9/mirror1"
        """
        expectOK(try w.bash("cat > home/.config/containers/registries.conf <<'X'\n\(conf)\nX"))
        let rewritten = try w.ctrHome(["pull", "registry.example.invalid/\(repo)"], root: "\(w.dir)/a")
        expectOK(rewritten)
        #expect(try imageID(w, "registry.example.invalid/\(repo)", root: "\(w.dir)/a") == imageID(w, "busybox:local"))
        // the location (port 9) refuses; the mirror has it
        let mirrored = try w.ctrHome(["pull", "mirrored.example.invalid/\(repo)"], root: "\(w.dir)/b")
        expectOK(mirrored)
        let blocked = try w.ctrHome(["pull", "blocked.example.invalid/x:1"], root: "\(w.dir)/c")
        expectOneLineError(blocked, mentions: "blocked.example.invalid is blocked in \(w.home)/.config/containers/registries.conf:")
        // a blocked namespace is named as the entry names it
        let blockedNS = try w.ctrHome(["pull", "\(reg.addr)/blockedns/x:1"], root: "\(w.dir)/c")
        expectOneLineError(blockedNS, mentions: "\(reg.addr)/blockedns is blocked in ")
        // a mirror that fails is named with its path, and the location serves
        let viaLocation = try w.ctrHome(["pull", "mirrorfails.example.invalid/\(repo)"], root: "\(w.dir)/e")
        expectOK(viaLocation)
        #expect(viaLocation.stderr.contains("mirror 127.0.0.1:9/mirror1/\(repo) failed"), "\(viaLocation)")
        expectOK(try w.bash("printf 'this is = not toml [' > home/.config/containers/registries.conf"))
        expectOneLineError(try w.ctrHome(["pull", "x.example.invalid/y:1"], root: "\(w.dir)/d"), mentions: "registries.conf")
    }

    @Test func progressOnATerminalAndInPlainLines() throws {
        guard TestEnv.have("script"), let w = try prepared(.root), let reg = TestRegistry.plain else { return }
        let ref = "\(reg.addr)/\(Self.repo())"
        expectOK(try w.ctrHome(["push", "busybox:local", ref]))
        // a terminal (script gives ctr a pty): lines redrawn in place, with sizes and rates
        let cmd = "CTR_ROOT=\(w.dir)/tty HOME=\(w.home) TERM=xterm \(TestEnv.binary) pull \(ref)"
        let tty = try w.sh(["script", "-qec", cmd, "/dev/null"])
        expectOK(tty)
        #expect(tty.stdout.contains("\u{1B}[2K"), "redraws lines: \(tty.stdout.debugDescription.prefix(300))")
        #expect(tty.stdout.contains("/s"), "shows a rate")
        #expect(tty.stdout.contains("done"))
        #expect((tty.stdout.components(separatedBy: "\u{1B}[").last ?? "").contains("Status: "), "the result stays below the drawing")
        let push = try w.sh(["script", "-qec", "CTR_ROOT=\(w.dir)/tty HOME=\(w.home) TERM=xterm \(TestEnv.binary) push \(ref) \(ref)-again", "/dev/null"])
        expectOK(push)
        #expect((push.stdout.components(separatedBy: "\u{1B}[").last ?? "").contains("-again: digest: sha256:"),
                "the digest line stays below the drawing: \(push.stdout.debugDescription)")
        // not a terminal: plain lines, one per state change, no escapes
        let plain = try w.ctrHome(["pull", ref], root: "\(w.dir)/plain")
        expectOK(plain)
        #expect(!plain.stderr.contains("\u{1B}["))
        let lines = plain.stderr.split(separator: "\n")
        #expect(lines.contains { $0.hasSuffix("downloading  1.2MB") || $0.contains(": downloading") })
        #expect(lines.contains { $0.contains(": done") && $0.contains("/s)") }, "\(plain.stderr)")
        // --quiet: only the digest, nothing on stderr
        let q = try w.ctrHome(["pull", "-q", ref], root: "\(w.dir)/quiet")
        #expect(q.stderr.isEmpty && q.stdout.hasPrefix("sha256:"), "\(q)")
    }

    @Test func connectionErrorsSayWhatToDo() throws {
        let who: Who = .root
        guard who.available else { return }
        let w = try Workspace(who)
        try w.makeHome()
        expectOneLineError(try w.ctrHome(["pull", "127.0.0.1:9/x/y:1"]), mentions: "cannot connect to 127.0.0.1:9")
        expectOneLineError(try w.ctrHome(["pull", "no-such-host.invalid/x/y:1"]), mentions: "cannot resolve no-such-host.invalid")
    }
}
