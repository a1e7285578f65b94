import Foundation
import Testing

/// Images without a Dockerfile (issue 15): `ctr append` (layer tarballs as they are, files
/// and directories with --chown/--chmod, a scratch base, config changes) and `ctr mutate`
/// (config only), reproducible with SOURCE_DATE_EPOCH across stores, temp dirs and umasks.
@Suite(.serialized) struct AssembleTests {
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "--tag", "bb:1", TestEnv.busyboxTar))
        // the artifacts: three layer tarballs, a file, a directory with a link and a hard link
        expectOK(try w.bash("""
            set -e; cd \(w.dir); umask 022
            mkdir -p in/l1/etc in/l2/opt in/l3 in/tree/sub
            echo gz > in/l1/etc/from-gzip; echo zst > in/l2/opt/from-zstd; echo plain > in/l3/from-plain
            tar -C in/l1 -czf in/l1.tar.gz . && tar -C in/l2 -cf - . | zstd -q -o in/l2.tar.zst && tar -C in/l3 -cf in/l3.tar .
            printf '#!/bin/sh\\necho "app says $*"\\n' > in/app.sh && chmod 0700 in/app.sh
            echo one > in/tree/sub/one; ln -s sub/one in/tree/link; ln in/tree/sub/one in/tree/hard
            chmod -R a+rX in; chmod 0700 in/app.sh; chmod a+r in/app.sh
            """))
        return w
    }

    @Test(arguments: [Who.root, Who.rootless])
    func appendLayersAndFiles(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let i = "\(w.dir)/in"
        let a = try w.ctr("append", "--base", "bb:1", "--layer", "\(i)/l1.tar.gz", "--layer", "\(i)/l2.tar.zst", "--layer", "\(i)/l3.tar",
                          "--add", "\(i)/app.sh:/usr/local/bin/app", "--add", "\(i)/tree:/data", "--chown", "1000:1000",
                          "--change", "ENTRYPOINT [\"/usr/local/bin/app\"]", "--change", "ENV PORT=8080", "-t", "app:1")
        expectOK(a, "append")
        #expect(a.stdout.hasPrefix("sha256:") && a.lines.count == 1, "the image id on stdout: \(a)")
        let run = try w.ctr("run", "--rm", "app:1", "hello")
        #expect(run.status == 0 && run.stdout == "app says hello\n", "\(run)")
        let look = try w.ctr("run", "--rm", "--entrypoint", "sh", "app:1", "-c",
                             "cat /etc/from-gzip /opt/from-zstd /from-plain /data/sub/one /data/link; stat -c '%n %u:%g %a' /usr/local/bin/app /data/sub/one; [ /data/hard -ef /data/sub/one ] && echo hardlinked; readlink /data/link; echo $PORT")
        #expect(look.status == 0, "\(look)")
        #expect(look.stdout == "gz\nzst\nplain\none\none\n/usr/local/bin/app 1000:1000 744\n/data/sub/one 1000:1000 644\nhardlinked\nsub/one\n8080\n", "\(look.stdout)")
        // the gzip and zstd layers went in as they are: their digests are the files'
        let layers = try w.ctr("inspect", "--format", "{{json .RootFS.Layers}}", "app:1")
        expectOK(layers)
        let rootfs = try JSONSerialization.jsonObject(with: Data(layers.stdout.utf8)) as? [String]
        #expect(rootfs?.count == 5, "busybox's layer, three tarballs, the --add layer: \(layers)")
        let manifest = try w.ctr("inspect", "app:1")
        for f in ["l1.tar.gz", "l2.tar.zst"] {
            let sum = try w.bash("sha256sum \(i)/\(f) | cut -c1-64")
            #expect(manifest.stdout.contains(sum.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(f) is a layer as it is")
        }
        // --chmod, and mutate: config only, the layers the same
        expectOK(try w.ctr("append", "--base", "app:1", "--add", "\(i)/app.sh:/bin/", "--chmod", "0755", "-t", "app:2"))
        let m = try w.ctr("run", "--rm", "--entrypoint", "stat", "app:2", "-c", "%a %u", "/bin/app.sh")
        #expect(m.stdout == "755 0\n", "\(m)")
        expectOK(try w.ctr("mutate", "app:1", "--entrypoint", "/bin/echo", "--cmd", "mutated,ok", "--label", "k=v", "--env", "PORT=9", "-t", "app:3"))
        let m3 = try w.ctr("run", "--rm", "app:3")
        #expect(m3.stdout == "mutated ok\n", "\(m3)")
        let l3 = try w.ctr("inspect", "--format", "{{.Config.Labels.k}} {{.RootFS.Layers}}", "app:3")
        let l1 = try w.ctr("inspect", "--format", "{{.RootFS.Layers}}", "app:1")
        #expect(l3.stdout.hasPrefix("v ") && l3.stdout.dropFirst(2) == l1.stdout, "mutate adds no layer: \(l3) vs \(l1)")
        // mutate without -t writes back to the name
        expectOK(try w.ctr("mutate", "app:3", "--workdir", "/data"))
        let wd = try w.ctr("run", "--rm", "--entrypoint", "pwd", "app:3")
        #expect(wd.stdout == "/data\n", "\(wd)")
    }

    @Test func scratchBase() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        let a = try w.ctr("append", "--add", "/bin/busybox:/bin/busybox", "--change", "ENTRYPOINT [\"/bin/busybox\", \"echo\"]",
                          "--change", "CMD [\"from scratch\"]", "-t", "tiny:1")
        expectOK(a, "append to scratch")
        let r = try w.ctr("run", "--rm", "tiny:1")
        #expect(r.status == 0 && r.stdout == "from scratch\n", "\(r)")
        let n = try w.ctr("inspect", "--format", "{{json .RootFS.Layers}} {{.Os}}", "tiny:1")
        #expect(n.stdout.filter { $0 == "," }.isEmpty && n.stdout.hasSuffix(" linux\n"), "one layer: \(n)")
        let explicit = try w.ctr("append", "--base", "scratch", "--add", "/bin/busybox:/bin/", "-t", "tiny:2")
        expectOK(explicit)
    }

    /// Two stores, two temp dirs, two umasks: the same inputs give the same manifest digest.
    @Test func reproducible() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        var digests: [String] = []
        for (n, umask) in [("a", "022"), ("b", "077")] {
            let d = "\(w.dir)/rep-\(n)"
            // the inputs copied with their modes, new mtimes
            expectOK(try w.bash("mkdir -p \(d) && cp -r --preserve=mode \(w.dir)/in \(d)/in && touch -d @\(1_700_000_100 + (n == "a" ? 0 : 5000)) \(d)/in/app.sh"))
            let script = """
                umask \(umask); export SOURCE_DATE_EPOCH=1700000000 TMPDIR=\(d)
                \(TestEnv.binary) --root \(d)/store import -q --tag bb:1 \(TestEnv.busyboxTar) >/dev/null &&
                \(TestEnv.binary) --root \(d)/store append --base bb:1 --layer \(d)/in/l3.tar --add \(d)/in/app.sh:/app/app \\
                  --add \(d)/in/tree:/data --change 'ENTRYPOINT ["/app/app"]' -t oci:\(d)/out:app
                """
            let r = try w.bash(script)
            expectOK(r, "append in \(d)")
            let idx = try w.bash("python3 -c 'import json;print(json.load(open(\"\(d)/out/index.json\"))[\"manifests\"][0][\"digest\"])'")
            digests.append(idx.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(digests.count == 2 && digests[0] == digests[1] && digests[0].hasPrefix("sha256:"), "\(digests)")
    }

    @Test func badInput() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        let before = w.storeSnapshot()
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--layer", "\(w.dir)/nope.tar", "-t", "x:1"), mentions: "nope.tar")
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--add", "\(w.dir)/nope:/x", "-t", "x:1"), mentions: "nope")
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--add", "relative", "-t", "x:1"), mentions: "relative")
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--add", "\(w.dir)/in/app.sh:/a", "--chown", "someone", "-t", "x:1"), mentions: "someone")
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--change", "RUN true", "-t", "x:1"), mentions: "RUN")
        try Data("not a tar".utf8).write(to: URL(fileURLWithPath: "\(w.dir)/bad.tar"))
        expectOneLineError(try w.ctr("append", "--base", "bb:1", "--layer", "\(w.dir)/bad.tar", "-t", "x:1"), mentions: "bad.tar")
        expectOneLineError(try w.ctr("append", "--base", "nosuch:1", "--pull", "never", "-t", "x:1"), mentions: "nosuch")
        expectOneLineError(try w.ctr("mutate", "sha256:0000000000000000000000000000000000000000000000000000000000000000", "--user", "1"), mentions: "-t")
        #expect(w.storeSnapshot() == before, "nothing half-written stays in the store")
    }

    /// `ctr commit` as docker and podman commit: the container's changes (a new file, a
    /// removed one) become a layer on its image, its -e settings stay, --change applies; the
    /// result can go to a layout.
    @Test(arguments: [Who.root, Who.rootless])
    func commitAContainer(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let run = try w.ctr("run", "--name", "c1", "-e", "FOO=bar", "bb:1", "sh", "-c",
                            "echo changed > /etc/changed && rm /etc/group && mkdir -p /opt/x && echo y > /opt/x/y && chown 1000:1000 /opt/x/y")
        expectOK(run, "run")
        let c = try w.ctr("commit", "-c", "CMD [\"cat\", \"/etc/changed\"]", "-m", "from c1", "c1", "committed:1")
        expectOK(c, "commit")
        #expect(c.stdout.hasPrefix("sha256:"), "\(c)")
        let r = try w.ctr("run", "--rm", "committed:1")
        #expect(r.stdout == "changed\n", "\(r)")
        let look = try w.ctr("run", "--rm", "committed:1", "sh", "-c", "test -e /etc/group && echo still-there; cat /opt/x/y; stat -c %u /opt/x/y; echo $FOO")
        #expect(look.stdout == "y\n1000\nbar\n", "the removal, the new files and their owner, the env: \(look)")
        expectOK(try w.ctr("commit", "c1", "oci:\(w.dir)/committed:c1"), "commit to a layout")
        let fromLayout = try w.ctr("run", "--rm", "oci:\(w.dir)/committed:c1", "cat", "/etc/changed")
        #expect(fromLayout.stdout == "changed\n", "\(fromLayout)")
        expectOneLineError(try w.ctr("commit", "nosuch", "x:1"), mentions: "nosuch")
        expectOneLineError(try w.ctr("commit", "-c", "RUN true", "c1", "x:1"), mentions: "RUN")
        expectOK(try w.ctr("rm", "c1"))
    }
}
