import Foundation
import Testing

/// Dockerfile results that differed from Docker's (issue 11, point 10, from an outside corpus
/// of Dockerfiles built by ctr and compared file by file): ENV order, a path twice in one
/// layer, hard links.
@Suite(.serialized) struct BuildParityTests {
    static let modes: [Who] = [.rootless, .root]

    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        return w
    }

    func env(_ w: Workspace, _ image: String) throws -> [String] {
        let r = try w.ctrHome(["inspect", "--format", "{{json .Config.Env}}", image])
        expectOK(r)
        return (try? JSONDecoder().decode([String].self, from: Data(r.stdout.utf8))) ?? []
    }

    /// Docker replaces a variable set again where it stands; the order is part of the config
    /// digest, so a different order is a different image.
    @Test func envSetAgainKeepsItsPlace() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        expectOK(try w.bash("""
        mkdir ctx && printf 'FROM busybox:local\\nENV a=1 b=2\\nENV c=3\\nENV a=4 d=5\\nENV b=6\\n' > ctx/Dockerfile
        """))
        expectOK(try w.ctrHome(["build", "-q", "-t", "envs", "ctx"]))
        let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        #expect(try env(w, "envs") == [path, "a=4", "b=6", "c=3", "d=5"])

        // the same for import --change
        expectOK(try w.ctrHome(["import", "--tag", "changed", "--change", "ENV a=1 b=2", "--change", "ENV c=3",
                                "--change", "ENV a=4 d=5", "--change", "ENV b=6", TestEnv.busyboxTar]))
        #expect(try env(w, "changed") == ["a=4", "b=6", "c=3", "d=5"])

        // and run -e over the image's: in place, new ones after
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "-e", "b=7", "-e", "z=1", "envs", "env"])
        expectOK(r)
        let names = r.lines.compactMap { $0.split(separator: "=").first.map(String.init) }.filter { ["PATH", "a", "b", "c", "d", "z"].contains($0) }
        #expect(names == ["PATH", "a", "b", "c", "d", "z"], "\(r)")
        #expect(r.lines.contains("b=7"))
    }

    /// `COPY script1 "" script2 DIR/` names script1 and script2 twice ("" is the whole
    /// context) and `ADD archived.* DIR/` unpacks two tars with the same paths: one entry per
    /// path, the last writer's (as Docker's result), so podman takes the image.
    @Test(arguments: modes)
    func onePathOnceInALayer(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("""
        set -e
        mkdir -p ctx/arch/x && cd ctx
        echo one > script1 && echo two > script2
        echo v1 > arch/x/f && echo same > arch/x/s && tar -C arch -cf archived.1.tar x
        echo v2 > arch/x/f && tar -C arch -cf archived.2.tar x && rm -r arch
        printf 'FROM busybox:local\\nCOPY script1 "" script2 /usr/local/tmp/\\nADD archived.* /dir/\\n' > Dockerfile
        """))
        expectOK(try w.ctrHome(["build", "-q", "--network", "none", "-t", "dups", "ctx"]))
        expectOK(try w.ctrHome(["save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "dups"]))
        // no layer of the image holds a path twice
        let listing = try w.bash("""
        cd layout/blobs/sha256
        for b in *; do
          if tar -tzf $b >/dev/null 2>&1; then
            d=$(tar -tzf $b | sed 's,/$,,' | sort | uniq -d)
            [ -z "$d" ] || echo "DUP $b: $d"
            n=$((n+1))
          fi
        done
        echo layers $n
        """)
        expectOK(listing)
        #expect(!listing.stdout.contains("DUP"), "\(listing)")
        #expect(listing.stdout.contains("layers 3"), "\(listing)")
        // the last writer wins, as Docker's result
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "dups", "cat", "/dir/x/f", "/dir/x/s", "/usr/local/tmp/script2"])
        expectOK(r)
        #expect(r.stdout == "v2\nsame\ntwo\n", "\(r)")
        // podman loads it (it refuses an image with a path twice in a layer)
        if TestEnv.amRoot && TestEnv.have("podman") {
            expectOK(try w.ctrHome(["save", "-o", "\(w.dir)/dups.tar", "dups"]))
            let pm = "\(w.dir)/podman"
            let p = try Workspace.exec("/usr/bin/podman", ["--root", "\(pm)/root", "--runroot", "\(pm)/run", "--storage-driver", "vfs",
                                                           "load", "-i", "\(w.dir)/dups.tar"])
            #expect(p.status == 0, "podman load: \(p)")
        } else {
            print("skip the podman load check: it needs root and podman")
        }
    }

    /// Hard links in a local tar given to ADD (unpacked as `tar -x` would) and in a context
    /// directory given to COPY stay hard links in the layer and in the container.
    @Test(arguments: modes)
    func hardLinksStayHardLinks(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("""
        set -e
        mkdir -p ctx/tree/d ctx/arch/x && cd ctx
        echo data > tree/d/a && ln tree/d/a tree/d/b && ln tree/d/a tree/c
        echo packed > arch/x/f && ln arch/x/f arch/x/g && tar -C arch -cf links.tar x && rm -r arch
        printf 'FROM busybox:local\\nADD links.tar /add/\\nCOPY tree /copy/\\n' > Dockerfile
        """))
        expectOK(try w.ctrHome(["build", "-q", "--network", "none", "-t", "links", "ctx"]))
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "links", "stat", "-c", "%n %i %h",
                               "/add/x/f", "/add/x/g", "/copy/c", "/copy/d/a", "/copy/d/b"])
        expectOK(r)
        var inode: [String: String] = [:], links: [String: String] = [:]
        for l in r.lines {
            let f = l.split(separator: " ").map(String.init)
            if f.count == 3 { inode[f[0]] = f[1]; links[f[0]] = f[2] }
        }
        #expect(inode["/add/x/f"] != nil && inode["/add/x/f"] == inode["/add/x/g"], "\(r)")
        #expect(links["/add/x/f"] == "2", "\(r)")
        #expect(inode["/copy/d/a"] != nil && inode["/copy/d/a"] == inode["/copy/d/b"] && inode["/copy/d/a"] == inode["/copy/c"], "\(r)")
        #expect(links["/copy/d/a"] == "3", "\(r)")
        // in the layers: one file and hard links to it
        expectOK(try w.ctrHome(["save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "links"]))
        let t = try w.bash("cd layout/blobs/sha256 && for b in *; do tar -tvzf $b 2>/dev/null; done | grep ' link to ' | sed 's/.* \\([^ ]*\\) link to \\(.*\\)/\\1 -> \\2/' | sort")
        expectOK(t)
        #expect(t.lines == ["add/x/g -> add/x/f", "copy/d/a -> copy/c", "copy/d/b -> copy/c"], "\(t)")
        // the same content without the links is another step: the cache tells them apart
        expectOK(try w.bash("cd ctx && rm tree/d/b && cp tree/d/a tree/d/b"))
        let again = try w.ctrHome(["build", "--network", "none", "-t", "links2", "ctx"])
        expectOK(again)
        let r2 = try w.ctrHome(["run", "--rm", "--network", "none", "links2", "stat", "-c", "%h", "/copy/d/b"])
        #expect(r2.stdout == "1\n", "\(r2)")
    }
}
