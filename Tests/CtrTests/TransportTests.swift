import Foundation
import Testing

/// Image references in every transport (issue 15): `oci:PATH[:REF]`, `oci-archive:PATH[:REF]`,
/// `docker-archive:PATH[:NAME]` and `docker://REF` wherever an image is named (run, push,
/// inspect, save, tag, build FROM, --image-archive), layouts written by umoci, skopeo, buildah
/// and ctr, a layout of several images without a ref refused with their names, only the named
/// image's blobs read, and layout refs named as asked (`-t build` → ref `build`).
@Suite(.serialized) struct TransportTests {
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "--tag", "bb:1", TestEnv.busyboxTar))
        try FileManager.default.createDirectory(atPath: "\(w.dir)/ctx", withIntermediateDirectories: true)
        try Data("FROM bb:1\nRUN echo built > /which\nCMD [\"cat\", \"/which\"]\n".utf8).write(to: URL(fileURLWithPath: "\(w.dir)/ctx/Dockerfile"))
        _ = try w.bash("chmod -R a+rwX \(w.dir)/ctx")
        return w
    }

    func refNames(_ layout: String) throws -> [String] {
        let index = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(layout)/index.json"))) as? [String: Any])
        return ((index["manifests"] as? [[String: Any]]) ?? []).compactMap { ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] }
    }

    @Test(arguments: [Who.root, Who.rootless])
    func everyCommandTakesEveryTransport(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let l = "\(w.dir)/layout"
        // -t build writes ref `build`; a second image joins the layout under the ref asked
        expectOK(try w.ctr("build", "-t", "build", "-o", "type=oci,tar=false,dest=\(l)", "\(w.dir)/ctx"))
        #expect(try refNames(l) == ["build"])
        let pushed = try w.ctr("push", "bb:1", "oci:\(l):base")
        expectOK(pushed, "push to oci:")
        #expect(try refNames(l).sorted() == ["base", "build"])

        // run
        let run = try w.ctr("run", "--rm", "oci:\(l):build")
        #expect(run.status == 0 && run.stdout == "built\n", "run oci:…:build: \(run)")
        let base = try w.ctr("run", "--rm", "oci:\(l):base", "cat", "/etc/passwd")
        #expect(base.status == 0 && base.stdout.hasPrefix("root:"), "\(base)")
        // several images and no ref: one line naming them
        let none = try w.ctr("run", "--rm", "oci:\(l)", "true")
        expectOneLineError(none, mentions: "oci:\(l)")
        #expect(none.stderr.contains("build") && none.stderr.contains("base"), "\(none)")
        let missing = try w.ctr("run", "--rm", "oci:\(l):nope", "true")
        expectOneLineError(missing, mentions: "nope")
        #expect(missing.stderr.contains("it has: "), "\(missing)")

        // push to each archive kind, and run from each
        expectOK(try w.ctr("push", "oci:\(l):build", "oci-archive:\(w.dir)/a.tar:app"), "push to oci-archive:")
        expectOK(try w.ctr("push", "oci:\(l):build", "docker-archive:\(w.dir)/d.tar:app:7"), "push to docker-archive:")
        for src in ["oci-archive:\(w.dir)/a.tar:app", "oci-archive:\(w.dir)/a.tar", "docker-archive:\(w.dir)/d.tar",
                    "docker-archive:\(w.dir)/d.tar:app:7", "docker-archive:\(w.dir)/d.tar:@0"] {
            let r = try w.ctr("run", "--rm", src)
            #expect(r.status == 0 && r.stdout == "built\n", "run \(src): \(r)")
        }
        // inspect and tag: the same image id by every route
        let ids = try w.ctr("inspect", "--format", "{{.Id}}", "oci:\(l):build", "docker-archive:\(w.dir)/d.tar:app:7", "oci-archive:\(w.dir)/a.tar:app")
        expectOK(ids)
        #expect(Set(ids.lines).count == 1 && ids.lines.count == 3, "\(ids)")
        expectOK(try w.ctr("tag", "oci:\(l):base", "again:1"))
        let tagged = try w.ctr("run", "--rm", "again:1", "true")
        expectOK(tagged, "the image tagged from a layout")
        // save from a layout: ref names as asked
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/saved", "oci:\(l):build"))
        #expect(try refNames("\(w.dir)/saved").isEmpty, "an image named by location is saved nameless")
        // build FROM a layout, and --image-archive NAME=PATH:REF
        try Data("FROM oci:\(l):base\nRUN echo from-layout > /which\nCMD [\"cat\", \"/which\"]\n".utf8)
            .write(to: URL(fileURLWithPath: "\(w.dir)/ctx/Dockerfile.layout"))
        expectOK(try w.ctr("build", "-f", "\(w.dir)/ctx/Dockerfile.layout", "-t", "fromlayout", "\(w.dir)/ctx"))
        let fl = try w.ctr("run", "--rm", "fromlayout")
        #expect(fl.stdout == "from-layout\n", "\(fl)")
        try Data("FROM mybase\nRUN cat /which\n".utf8).write(to: URL(fileURLWithPath: "\(w.dir)/ctx/Dockerfile.archive"))
        for spec in ["mybase=\(l):build", "mybase=oci:\(l):build", "mybase=\(w.dir)/a.tar:app", "mybase=\(w.dir)/d.tar"] {
            let b = try w.ctr("build", "--no-cache", "-f", "\(w.dir)/ctx/Dockerfile.archive", "--image-archive", spec, "\(w.dir)/ctx")
            expectOK(b, "--image-archive \(spec)")
            #expect(b.stderr.contains("built"), "the base is the layout's build image: \(b.stderr)")
        }
        let several = try w.ctr("build", "-f", "\(w.dir)/ctx/Dockerfile.archive", "--image-archive", "mybase=\(l)", "\(w.dir)/ctx")
        expectOneLineError(several, mentions: "mybase=\(l)")
        // a transport that does not exist is named
        let nofile = try w.ctr("run", "--rm", "oci-archive:\(w.dir)/nope.tar", "true")
        expectOneLineError(nofile, mentions: "nope.tar")
    }

    /// Reading a layout copies only what the named image needs: with another image's layer
    /// gone from the layout, the named one still runs and no other blob enters the store.
    @Test func onlyTheNamedImagesBlobsAreRead() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        let l = "\(w.dir)/layout"
        expectOK(try w.ctr("build", "-t", "build", "-o", "type=oci-dir,dest=\(l)", "\(w.dir)/ctx"))
        expectOK(try w.ctr("push", "bb:1", "oci:\(l):base"))
        let store2 = "\(w.dir)/store2"
        // the build's own layer (the RUN's): the last layer of its manifest
        let m = try w.bash("cd \(l) && d=$(python3 -c 'import json;print([m for m in json.load(open(\"index.json\"))[\"manifests\"] if m[\"annotations\"][\"org.opencontainers.image.ref.name\"]==\"build\"][0][\"digest\"].split(\":\")[1])') && python3 -c \"import json;print(json.load(open('blobs/sha256/$d'))['layers'][-1]['digest'].split(':')[1])\"")
        expectOK(m)
        let runLayer = m.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(runLayer.count == 64)
        expectOK(try w.bash("rm \(l)/blobs/sha256/\(runLayer)"))
        let r = try w.ctr(["run", "--rm", "oci:\(l):base", "echo", "ok"], root: store2)
        #expect(r.status == 0 && r.stdout == "ok\n", "\(r)")
        let blobs = try w.bash("ls \(store2)/blobs/sha256")
        #expect(!blobs.stdout.contains(runLayer), "a blob of the other image entered the store")
        // and the image whose blob is gone fails naming it
        let bad = try w.ctr(["run", "--rm", "oci:\(l):build"], root: store2)
        expectOneLineError(bad, mentions: runLayer)
    }

    /// Layouts the peers write: skopeo (oci: from a docker-archive), umoci (init, new, insert,
    /// config), buildah (push to oci:). Each runs.
    @Test func peersLayouts() throws {
        guard TestEnv.amRoot, let w = try prepared(.root) else { return }
        expectOK(try w.ctr("save", "--format", "docker-archive", "-o", "\(w.dir)/bb.tar", "bb:1"))
        if TestEnv.have("skopeo") {
            expectOK(try w.sh(["skopeo", "copy", "-q", "docker-archive:\(w.dir)/bb.tar", "oci:\(w.dir)/skopeo:sk1"]), "skopeo copy")
            let r = try w.ctr("run", "--rm", "oci:\(w.dir)/skopeo:sk1", "echo", "skopeo")
            #expect(r.status == 0 && r.stdout == "skopeo\n", "\(r)")
        } else { print("skip skopeo: \(TestEnv.setupHint)") }
        if TestEnv.have("umoci") {
            let u = "\(w.dir)/umoci"
            expectOK(try w.bash("""
                mkdir -p \(w.dir)/bbroot && tar -C \(w.dir)/bbroot -xf \(TestEnv.busyboxTar) && \
                umoci init --layout \(u) && umoci new --image \(u):um1 && \
                umoci insert --image \(u):um1 \(w.dir)/bbroot / && \
                umoci config --image \(u):um1 --config.cmd /bin/echo --config.cmd from-umoci
                """), "umoci")
            let r = try w.ctr("run", "--rm", "oci:\(u):um1")
            #expect(r.status == 0 && r.stdout == "from-umoci\n", "\(r)")
        } else { print("skip umoci: \(TestEnv.setupHint)") }
        if TestEnv.have("buildah") {
            let b = "\(w.dir)/buildah"
            let flags = ["--storage-driver", "vfs", "--root", "\(b)/root", "--runroot", "\(b)/run"]
            let pulled = try w.sh(["buildah"] + flags + ["pull", "-q", "docker-archive:\(w.dir)/bb.tar"])
            expectOK(pulled, "buildah pull")
            expectOK(try w.sh(["buildah"] + flags + ["push", "-q", pulled.lines.last ?? "", "oci:\(b)/layout:bh1"]), "buildah push")
            let r = try w.ctr("run", "--rm", "oci:\(b)/layout:bh1", "echo", "buildah")
            #expect(r.status == 0 && r.stdout == "buildah\n", "\(r)")
            _ = try? w.bash("rm -rf \(b)/root")
        } else { print("skip buildah: \(TestEnv.setupHint)") }
    }
}
