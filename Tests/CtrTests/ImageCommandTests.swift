import CSysShims
import Foundation
import Testing

/// `ctr import/images/inspect/tag/rmi/unpack/prune` driven as a user would, as root, as a
/// rootless user with subordinate ids and as one without.
@Suite(.serialized) struct ImageCommandTests {
    static let allWho = Who.allCases

    @Test(arguments: allWho)
    func importListInspectTagRmi(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else {
            print("skip \(who): \(who.available ? "no busybox fixture" : "user not available"); \(TestEnv.setupHint)")
            return
        }
        let w = try Workspace(who)
        let imp = try w.ctr(["import", "--tag", "busybox:local",
                             "--change", #"CMD ["sh"]"#, "--change", "ENV A=1 B=\"two words\"", "--change", "WORKDIR /tmp",
                             "--change", "USER 1000:1000", "--change", "LABEL org.example.k=v", "--change", "EXPOSE 8080",
                             TestEnv.busyboxTar])
        expectOK(imp)
        let id = imp.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.hasPrefix("sha256:") && id.count == 71, "import prints the image id: \(imp)")

        let table = try w.ctr("images")
        expectOK(table)
        #expect(table.lines.first?.hasPrefix("REPOSITORY") == true)
        let row = table.lines.dropFirst().first { $0.hasPrefix("busybox ") }
        #expect(row != nil, "\(table)")
        #expect(row?.contains(" local ") == true && row?.contains(String(id.dropFirst(7).prefix(12))) == true, "\(table)")

        let json = try w.ctr("images", "--format", "json")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(list.count == 1)
        #expect(list.first?["id"] as? String == id)
        #expect(list.first?["tag"] as? String == "local")
        #expect(list.first?["name"] as? String == "docker.io/library/busybox")

        let insp = try w.ctr("inspect", "busybox:local")
        expectOK(insp)
        let obj = try #require((try JSONSerialization.jsonObject(with: Data(insp.stdout.utf8)) as? [[String: Any]])?.first)
        #expect(obj["Id"] as? String == id)
        let cfg = try #require(obj["Config"] as? [String: Any])
        #expect(cfg["Cmd"] as? [String] == ["sh"])
        #expect(cfg["Env"] as? [String] == ["A=1", "B=two words"])
        #expect(cfg["WorkingDir"] as? String == "/tmp")
        #expect(cfg["User"] as? String == "1000:1000")
        #expect((cfg["Labels"] as? [String: String])?["org.example.k"] == "v")
        #expect((cfg["ExposedPorts"] as? [String: Any])?["8080/tcp"] != nil)
        let manifest = try #require(obj["Manifest"] as? [String: Any])
        #expect((manifest["config"] as? [String: Any])?["digest"] as? String == id)
        // the digest of the manifest is what inspect calls Digest, and the store holds it
        let digest = try #require(obj["Digest"] as? String)
        #expect(FileManager.default.fileExists(atPath: "\(w.store)/blobs/sha256/\(digest.dropFirst(7))"))

        // by short id and by digest
        expectOK(try w.ctr("inspect", String(id.dropFirst(7).prefix(12))))
        expectOK(try w.ctr("inspect", "busybox@\(digest)"))

        expectOK(try w.ctr("tag", "busybox:local", "example.com/team/busybox:1"))
        let two = try w.ctr("images")
        #expect(two.stdout.contains("example.com/team/busybox") && two.stdout.contains(" 1 "), "\(two)")
        #expect(two.lines.count == 3)

        // removing by id while two names point at it needs --force
        expectOneLineError(try w.ctr("rmi", String(id.dropFirst(7).prefix(12))), mentions: "--force")

        let rm1 = try w.ctr("rmi", "busybox:local")
        expectOK(rm1)
        #expect(rm1.stdout.contains("Untagged: busybox:local"))
        #expect(!rm1.stdout.contains("Deleted"), "the image still has a name: \(rm1)")
        let rm2 = try w.ctr("rmi", "example.com/team/busybox:1")
        expectOK(rm2)
        #expect(rm2.stdout.contains("Deleted: \(id)"), "\(rm2)")
        // nothing is left: no blobs, no unpacked layers
        let left = w.storeSnapshot().filter { !$0.hasPrefix("index:") }
        #expect(left.isEmpty, "\(left)")
        expectOneLineError(try w.ctr("inspect", "busybox:local"), mentions: "busybox:local")
    }

    /// `-` for stdin and stdout as docker and podman take it; an image saved by id has no name;
    /// one image under two names is one docker-archive entry with both tags.
    @Test func stdinStdoutAndArchiveNames() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        let ctr = "CTR_ROOT=\(w.dir)/s \(TestEnv.binary)"
        expectOK(try w.bash("\(ctr) import -q - piped:1 < \(TestEnv.busyboxTar)"))
        // an xz tarball, as docker and podman import take it
        expectOK(try w.bash("xz -c \(TestEnv.busyboxTar) > bb.tar.xz && \(ctr) import -q bb.tar.xz xz:1 && \(ctr) unpack xz:1 xzout && test -x xzout/rootfs/bin/busybox"))
        expectOK(try w.bash("\(ctr) tag piped:1 other:2 && \(ctr) save -o - piped:1 > out.tar && test -s out.tar"))
        expectOK(try w.bash("CTR_ROOT=\(w.dir)/t \(TestEnv.binary) load -q -i - < out.tar"))
        #expect(try w.bash("CTR_ROOT=\(w.dir)/t \(TestEnv.binary) images -q").stdout.count > 0)
        // by id: no name in the archive
        let id = try w.bash("\(ctr) images -q piped:1").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        expectOK(try w.bash("\(ctr) save --format docker-archive -o byid.tar \(id) && tar -xOf byid.tar manifest.json > byid.json"))
        #expect(try String(contentsOfFile: "\(w.dir)/byid.json", encoding: .utf8).contains("RepoTags") == false)
        // two names of one image: one entry, both tags
        expectOK(try w.bash("\(ctr) save --format docker-archive -o two.tar piped:1 other:2 && tar -xOf two.tar manifest.json > two.json"))
        let two = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(w.dir)/two.json"))) as? [[String: Any]]
        #expect(two?.count == 1 && (two?.first?["RepoTags"] as? [String]) == ["piped:1", "other:2"], "\(String(describing: two))")
        // saving into a layout that holds another image with the same tag keeps both
        expectOK(try w.bash("\(ctr) tag piped:1 third:1 && \(ctr) save --format oci-dir -o lay piped:1 && \(ctr) save --format oci-dir -o lay third:1"))
        expectOK(try w.bash("CTR_ROOT=\(w.dir)/u \(TestEnv.binary) load -q -i lay"))
        let names = try w.bash("CTR_ROOT=\(w.dir)/u \(TestEnv.binary) images --format '{{.Repository}}:{{.Tag}}'")
        #expect(Set(names.lines) == ["piped:1", "third:1"], "\(names)")
    }

    /// Scripts' ways in: inspect's docker shape and Go templates, images' templates, and a
    /// reader that stops early (`| head -1`) ends ctr quietly.
    @Test func formatsAndPipes() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "-q", "--tag", "fmt:1", "--change", "ENV A=1", TestEnv.busyboxTar))
        let id = try w.ctr("inspect", "--format", "{{.Id}}", "fmt:1")
        expectOK(id)
        #expect(id.stdout.hasPrefix("sha256:") && id.lines.count == 1, "\(id)")
        let t = try w.ctr("inspect", "--format", "{{.Config.Env}} {{json .RootFS.Layers}} {{.RepoTags}}", "fmt:1")
        #expect(t.stdout.hasPrefix("[") && t.stdout.contains("A=1") && t.stdout.contains(#"["sha256:"#) && t.stdout.contains("fmt:1]"), "\(t)")
        let whole = try JSONSerialization.jsonObject(with: Data(try w.ctr("inspect", "fmt:1").stdout.utf8)) as? [[String: Any]]
        #expect((whole?.first?["RepoDigests"] as? [String])?.first?.contains("fmt@sha256:") == true, "\(String(describing: whole?.first?["RepoDigests"]))")
        // found and missing: the found one is shown, the missing one reported, exit 1
        let mixed = try w.ctr("inspect", "--format", "{{.Id}}", "fmt:1", "nosuch:1")
        #expect(mixed.status == 1 && mixed.stdout == id.stdout && mixed.stderr.contains("nosuch"), "\(mixed)")
        let images = try w.ctr("images", "--format", "{{.Repository}}:{{.Tag}}")
        #expect(images.stdout == "fmt:1\n", "\(images)")
        // (far more than a pipe holds, so the writer meets the closed pipe)
        let many = Array(repeating: "fmt:1", count: 200).joined(separator: " ")
        let head = try w.bash("\(TestEnv.binary) --root \(w.dir)/store inspect \(many) | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}")
        #expect(head.stdout == "141\n", "ends as SIGPIPE would: \(head)")
        #expect(head.stderr.isEmpty, "no crash report when the reader goes away: \(head.stderr.prefix(300))")
    }

    /// rmi as docker and podman: an image a container uses stays unless forced, every name is
    /// tried before the errors are reported, --all; `ctr help CMD`; globals before unshare.
    @Test func rmiInUseAllAndHelp() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "--tag", "a:1", "--tag", "b:1", TestEnv.busyboxTar))
        expectOK(try w.ctr("run", "--name", "user-of-a", "--network", "none", "a:1", "true"))
        expectOK(try w.ctr("rmi", "b:1"))  // another name remains: fine
        expectOneLineError(try w.ctr("rmi", "a:1"), mentions: "in use by container user-of-a")
        expectOK(try w.ctr("inspect", "a:1"))
        // an unknown name in the middle: the others are still removed, and the error is reported
        expectOK(try w.ctr("import", "--tag", "c:1", "--tag", "d:1", TestEnv.busyboxTar))
        let some = try w.ctr("rmi", "c:1", "nosuch:1", "d:1")
        #expect(some.status != 0 && some.stderr.contains("nosuch") && some.stdout.contains("Untagged: d:1"), "\(some)")
        expectOK(try w.ctr("rm", "user-of-a"))
        expectOK(try w.ctr("rmi", "--all"))
        #expect(try w.ctr("images", "-q").stdout.isEmpty)
        // help for a subcommand; global options before unshare are not its command
        #expect(try w.ctr("help", "import").stdout.contains("Create an image from a root filesystem"))
        let un = try w.ctr("--debug", "unshare", "true")
        expectOK(un)
    }

    @Test(arguments: allWho)
    func unpackKeepsOwnership(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "--tag", "bb", "--change", "ENV PATH=/bin", "--change", "USER user", TestEnv.busyboxTar))
        let r = try w.ctr("unpack", "bb", "\(w.dir)/out")
        expectOK(r)
        let file = "\(w.dir)/out/rootfs/home/user/owned-by-1000"
        let st = try #require(w.stat(file), "unpacked file missing")
        switch who {
        case .root, .rootless:
            let want = try #require(who.hostUID(1000))
            #expect(st.st_uid == want, "uid 1000 in the image should be host uid \(want), is \(st.st_uid)")
            let root = try #require(w.stat("\(w.dir)/out/rootfs/bin/busybox"))
            #expect(root.st_uid == who.hostUID(0)!)
            #expect(!r.stderr.contains("subordinate"), "\(r)")
        case .nosub:
            #expect(st.st_uid == TestEnv.uid(of: "ctrnosub")!)
            #expect(r.stderr.contains("user.rootlesscontainers"), "a warning explains the fallback: \(r)")
            var buf = [UInt8](repeating: 0, count: 32)
            let n = csys_lgetxattr(file, "user.rootlesscontainers", &buf, buf.count)
            #expect(n > 0 && Array(buf.prefix(max(n, 0))) == [0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07],
                    "image owner 1000:1000 recorded in the xattr")
        }
        // setuid-free busybox keeps its mode; /tmp keeps the sticky bit; /root stays 0700
        #expect(w.stat("\(w.dir)/out/rootfs/tmp")!.st_mode & 0o7777 == 0o1777)
        #expect(w.stat("\(w.dir)/out/rootfs/root")!.st_mode & 0o7777 == 0o700)
        let meta = try #require(FileManager.default.contents(atPath: "\(w.dir)/out/metadata.json"))
        let m = try #require(try JSONSerialization.jsonObject(with: meta) as? [String: Any])
        #expect(m["env"] as? [String] == ["PATH=/bin"])
        #expect(m["user"] as? String == "user")
        // a second unpack into the same place refuses instead of mixing trees
        expectOneLineError(try w.ctr("unpack", "bb", "\(w.dir)/out"), mentions: "already exists")
    }

    @Test func storeLocation() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip: \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        // --root before and after the subcommand, and CTR_ROOT
        expectOK(try w.ctr(["--root", "\(w.dir)/a", "import", "--tag", "one", TestEnv.busyboxTar], root: ""))
        let a = try w.ctr(["images", "--root", "\(w.dir)/a"], root: "")
        #expect(a.stdout.contains("one "), "\(a)")
        #expect(FileManager.default.fileExists(atPath: "\(w.dir)/a/index.json"))
        let b = try w.ctr(["images"], root: "\(w.dir)/a")
        #expect(b.stdout.contains("one "), "CTR_ROOT chooses the store: \(b)")
        if who != .root {
            // XDG_DATA_HOME/ctr for a user
            let x = try w.ctr(["import", "--tag", "xdg", TestEnv.busyboxTar], env: ["XDG_DATA_HOME": "\(w.dir)/xdg"], root: "")
            expectOK(x)
            #expect(FileManager.default.fileExists(atPath: "\(w.dir)/xdg/ctr/index.json"), "\(x)")
        }
    }

    @Test(arguments: [Who.root, Who.rootless])
    func importDirectoryAndCompressedTarballs(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.bash("mkdir rootfs && tar -C rootfs -xf \(TestEnv.busyboxTar) && gzip -n -c \(TestEnv.busyboxTar) > bb.tar.gz"))
        expectOK(try w.ctr("import", "--tag", "fromdir", "\(w.dir)/rootfs"))
        expectOK(try w.ctr("import", "--tag", "fromgz", "\(w.dir)/bb.tar.gz"))
        var names = ["fromdir", "fromgz"]
        if TestEnv.have("zstd") {
            expectOK(try w.bash("zstd -q -c \(TestEnv.busyboxTar) > bb.tar.zst"))
            expectOK(try w.ctr("import", "--tag", "fromzst", "\(w.dir)/bb.tar.zst"))
            names.append("fromzst")
            let insp = try w.ctr("inspect", "fromzst")
            #expect(insp.stdout.contains("tar+zstd"), "a zstd tarball stays a zstd layer")
        } else {
            print("skip zstd import: the zstd tool is not installed")
        }
        for n in names {
            let r = try w.ctr("unpack", n, "\(w.dir)/u-\(n)")
            expectOK(r, n)
            let bb = w.stat("\(w.dir)/u-\(n)/rootfs/bin/busybox")
            #expect(bb != nil && bb!.st_size > 500_000, "\(n): busybox unpacked")
            #expect(try String(contentsOfFile: "\(w.dir)/u-\(n)/rootfs/home/user/owned-by-1000", encoding: .utf8) == "owned by uid 1000\n")
        }
        // a tree ctr unpacked (files of subordinate ids) imports back with the image's owners:
        // the user's own files become root's, uid 1000 stays 1000
        expectOK(try w.ctr("import", "--tag", "again", "\(w.dir)/u-fromgz/rootfs"))
        expectOK(try w.ctr("unpack", "again", "\(w.dir)/round"))
        #expect(w.stat("\(w.dir)/round/rootfs/home/user/owned-by-1000")?.st_uid == who.hostUID(1000))
        #expect(w.stat("\(w.dir)/round/rootfs/bin/busybox")?.st_uid == who.hostUID(0))
    }

    @Test func reproducibleImport() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip: \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.bash("mkdir rootfs && tar -C rootfs -xf \(TestEnv.busyboxTar) && echo data > rootfs/new"))
        let env = ["SOURCE_DATE_EPOCH": "1700000000"]
        let one = try w.ctr(["import", "--tag", "r1", "\(w.dir)/rootfs"], env: env)
        expectOK(one)
        expectOK(try w.bash("sleep 1.1; touch rootfs/new rootfs/bin rootfs/etc/passwd"))
        let two = try w.ctr(["import", "--tag", "r2", "\(w.dir)/rootfs"], env: env)
        expectOK(two)
        #expect(one.stdout == two.stdout, "same input, same SOURCE_DATE_EPOCH: same image id")
        let i1 = try w.ctr("inspect", "r1"), i2 = try w.ctr("inspect", "r2")
        func digest(_ r: RunResult) -> String? {
            ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]])?.first?["Digest"] as? String
        }
        #expect(digest(i1) != nil && digest(i1) == digest(i2), "same manifest digest")
        #expect(i1.stdout.contains("\"Created\" : \"2023-11-14T22:13:20Z\""), "created is SOURCE_DATE_EPOCH: \(i1.stdout.prefix(400))")
        // without the epoch, a touched file changes the layer
        let three = try w.ctr(["import", "--tag", "r3", "\(w.dir)/rootfs"])
        #expect(three.stdout != one.stdout)
    }

    @Test(arguments: [Who.rootless, Who.nosub])
    func deviceNodesAreSkippedRootless(_ who: Who) throws {
        guard who.available else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        // a tar with a character device, made by root (GNU tar can describe one without mknod)
        let tarPath = "\(w.dir)/dev.tar"
        try makeDeviceTar(tarPath)
        chmod(tarPath, 0o644)
        let r = try w.ctr("import", "--tag", "devs", tarPath)
        expectOK(r)
        #expect(r.stderr.contains("skipped 1 device node"), "\(r)")
        #expect(r.stderr.contains("/dev/null"), "names the first one: \(r)")
        let u = try w.ctr("unpack", "devs", "\(w.dir)/out")
        expectOK(u)
        #expect(FileManager.default.fileExists(atPath: "\(w.dir)/out/rootfs/dev/keep"))
    }

    /// A tar with dev/null (char 1:3) and dev/keep, written byte by byte.
    func makeDeviceTar(_ path: String) throws {
        var out = Data()
        func header(_ name: String, type: UInt8, mode: Int, size: Int, major: Int = 0, minor: Int = 0) {
            var h = [UInt8](repeating: 0, count: 512)
            func put(_ s: String, _ off: Int, _ len: Int) { for (i, b) in s.utf8.prefix(len).enumerated() { h[off + i] = b } }
            func oct(_ v: Int, _ off: Int, _ len: Int) { put(String(format: "%0\(len - 1)o", v), off, len - 1) }
            put(name, 0, 100); oct(mode, 100, 8); oct(0, 108, 8); oct(0, 116, 8); oct(size, 124, 12); oct(1700000000, 136, 12)
            h[156] = type; put("ustar", 257, 6); put("00", 263, 2); oct(major, 329, 8); oct(minor, 337, 8)
            for i in 148..<156 { h[i] = 0x20 }
            let sum = h.reduce(0) { $0 + Int($1) }
            put(String(format: "%06o", sum), 148, 6); h[154] = 0; h[155] = 0x20
            out.append(contentsOf: h)
        }
        header("dev/", type: UInt8(ascii: "5"), mode: 0o755, size: 0)
        header("dev/null", type: UInt8(ascii: "3"), mode: 0o666, size: 0, major: 1, minor: 3)
        header("dev/keep", type: UInt8(ascii: "0"), mode: 0o644, size: 3)
        out.append(contentsOf: Array("hi\n".utf8) + [UInt8](repeating: 0, count: 509))
        out.append(contentsOf: [UInt8](repeating: 0, count: 1024))
        try out.write(to: URL(fileURLWithPath: path))
    }
}
