import Foundation
import HostOS
import Testing

/// `ctr save` / `ctr load`, interop with skopeo, umoci and podman, bad input, crashes and
/// concurrent writers.
@Suite(.serialized) struct ArchiveTests {
    static var rootAndRootless: [Who] { [.root, .rootless] }

    func prepared(_ who: Who) throws -> (Workspace, String)? {
        guard who.available, TestEnv.haveBusybox else {
            print("skip \(who): \(TestEnv.setupHint)")
            return nil
        }
        let w = try Workspace(who)
        let r = try w.ctr("import", "--tag", "busybox:local", "--change", #"CMD ["sh"]"#, TestEnv.busyboxTar)
        expectOK(r)
        return (w, r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func manifestDigest(_ w: Workspace, _ ref: String, root: String? = nil) throws -> String? {
        let r = try w.ctr(["inspect", ref], root: root)
        return ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]])?.first?["Digest"] as? String
    }

    @Test(arguments: rootAndRootless)
    func saveAndLoadEveryFormat(_ who: Who) throws {
        guard let (w, id) = try prepared(who) else { return }
        let digest = try #require(try manifestDigest(w, "busybox:local"))
        expectOK(try w.ctr("save", "-o", "\(w.dir)/image.tar", "busybox:local"))
        expectOK(try w.ctr("save", "--format", "docker-archive", "-o", "\(w.dir)/docker.tar", "busybox:local"))
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "busybox:local"))
        // to standard output, as docker save does
        let piped = try w.bash("\(TestEnv.binary) save busybox:local > piped.tar", env: ["CTR_ROOT": w.store])
        expectOK(piped)

        for (input, sameManifest) in [("image.tar", true), ("layout", true), ("piped.tar", true), ("docker.tar", false)] {
            let other = "\(w.dir)/store-\(input)"
            let r = try w.ctr(["load", "-i", "\(w.dir)/\(input)"], root: other)
            expectOK(r, input)
            #expect(r.stdout == "Loaded image: busybox:local\n", "\(input): \(r)")
            let ids = try w.ctr(["images", "-q", "--no-trunc"], root: other)
            #expect(ids.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == id, "\(input): same image id")
            if sameManifest {
                #expect(try manifestDigest(w, "busybox:local", root: other) == digest, "\(input): same manifest digest")
            }
            let u = try w.ctr(["unpack", "busybox:local", "\(w.dir)/u-\(input)"], root: other)
            expectOK(u, input)
            #expect(w.stat("\(w.dir)/u-\(input)/rootfs/home/user/owned-by-1000")?.st_uid == who.hostUID(1000))
        }
        // load from standard input
        let stdin = try w.bash("\(TestEnv.binary) load < image.tar", env: ["CTR_ROOT": "\(w.dir)/store-stdin"])
        expectOK(stdin)
        #expect(stdin.stdout.contains("Loaded image: busybox:local"))
        // saving again into the same layout replaces the tag instead of duplicating it
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "busybox:local"))
        let idx = try #require(FileManager.default.contents(atPath: "\(w.dir)/layout/index.json"))
        let manifests = (try JSONSerialization.jsonObject(with: idx) as? [String: Any])?["manifests"] as? [Any]
        #expect(manifests?.count == 1)
    }

    @Test func interopWithSkopeoUmociPodman() throws {
        guard let (w, id) = try prepared(.root) else { return }
        for tool in ["skopeo", "umoci", "podman"] where !TestEnv.have(tool) {
            Issue.record("\(tool) is not installed: \(TestEnv.setupHint)")
            return
        }
        let digest = try #require(try manifestDigest(w, "busybox:local"))
        expectOK(try w.ctr("save", "-o", "\(w.dir)/image.tar", "busybox:local"))
        expectOK(try w.ctr("save", "--format", "docker-archive", "-o", "\(w.dir)/docker.tar", "busybox:local"))
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "busybox:local"))

        // skopeo reads the OCI archive and sees our manifest digest
        let insp = try w.sh(["skopeo", "inspect", "oci-archive:\(w.dir)/image.tar"])
        expectOK(insp)
        let sk = try JSONSerialization.jsonObject(with: Data(insp.stdout.utf8)) as? [String: Any]
        #expect(sk?["Digest"] as? String == digest, "\(insp)")

        // umoci unpacks the layout by tag
        let um = try w.sh(["umoci", "unpack", "--rootless", "--image", "\(w.dir)/layout:local", "\(w.dir)/bundle"])
        expectOK(um)
        #expect(w.stat("\(w.dir)/bundle/rootfs/bin/busybox") != nil, "\(um)")
        #expect(FileManager.default.fileExists(atPath: "\(w.dir)/bundle/config.json"))

        // podman loads the docker-archive (into a private storage) with our image id
        let pod = ["podman", "--root", "\(w.dir)/podman", "--runroot", "\(w.dir)/podman-run", "--storage-driver", "vfs"]
        let pl = try w.sh(pod + ["load", "-i", "\(w.dir)/docker.tar"])
        expectOK(pl)
        let pi = try w.sh(pod + ["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
        #expect(pi.stdout.contains(String(id.dropFirst(7).prefix(12))), "\(pi)")
        #expect(pi.stdout.contains("busybox:local"), "\(pi)")
        _ = try w.sh(pod + ["system", "reset", "-f"])

        // ctr loads what skopeo writes, OCI and docker-archive
        expectOK(try w.sh(["skopeo", "copy", "oci-archive:\(w.dir)/image.tar", "oci-archive:\(w.dir)/sk-oci.tar:busybox:sk"]))
        expectOK(try w.sh(["skopeo", "copy", "oci-archive:\(w.dir)/image.tar", "docker-archive:\(w.dir)/sk-docker.tar:busybox:skd"]))
        let l1 = try w.ctr(["load", "-i", "\(w.dir)/sk-oci.tar"], root: "\(w.dir)/s2")
        expectOK(l1)
        #expect(l1.stdout.contains("Loaded image: busybox:sk"), "\(l1)")
        let l2 = try w.ctr(["load", "-i", "\(w.dir)/sk-docker.tar"], root: "\(w.dir)/s2")
        expectOK(l2)
        #expect(l2.stdout.contains("Loaded image: busybox:skd"), "\(l2)")
        let ids = try w.ctr(["images", "-q", "--no-trunc"], root: "\(w.dir)/s2")
        #expect(ids.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == id, "both are our image: \(ids)")
        expectOK(try w.ctr(["unpack", "busybox:skd", "\(w.dir)/u-skd"], root: "\(w.dir)/s2"))
        #expect(w.stat("\(w.dir)/u-skd/rootfs/home/user/owned-by-1000")?.st_uid == 1000)
    }

    // MARK: bad input

    /// Make an OCI layout and return the path of its layer blob and the manifest's.
    func layout(_ w: Workspace) throws -> (dir: String, layer: String, manifest: String) {
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/bad", "busybox:local"))
        let idx = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: "\(w.dir)/bad/index.json")!) as! [String: Any]
        let mdig = ((idx["manifests"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        let mpath = "\(w.dir)/bad/blobs/sha256/\(mdig)"
        let m = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: mpath)!) as! [String: Any]
        let ldig = ((m["layers"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        return ("\(w.dir)/bad", "\(w.dir)/bad/blobs/sha256/\(ldig)", mpath)
    }

    @Test func badInputAddsNothing() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let (w, _) = try prepared(who) else { return }
        let before = w.storeSnapshot()

        // a corrupt tarball
        try Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: "\(w.dir)/junk.tar"))
        chmod("\(w.dir)/junk.tar", 0o644)
        expectOneLineError(try w.ctr("import", "--tag", "junk", "\(w.dir)/junk.tar"), mentions: "junk.tar")
        // a truncated gzip
        expectOK(try w.bash("gzip -n -c \(TestEnv.busyboxTar) | head -c 300000 > cut.tar.gz"))
        let cut = try w.ctr("import", "--tag", "cut", "\(w.dir)/cut.tar.gz")
        expectOneLineError(cut, mentions: "cut.tar.gz")
        #expect(cut.stderr.contains("truncated"), "\(cut)")
        // a tar whose second header is damaged
        expectOK(try w.bash("cp \(TestEnv.busyboxTar) broken.tar && printf 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' | dd of=broken.tar bs=1 seek=$((512*3+148)) conv=notrunc 2>/dev/null"))
        expectOneLineError(try w.ctr("import", "--tag", "broken", "\(w.dir)/broken.tar"), mentions: "broken.tar")
        #expect(w.storeSnapshot() == before, "failed imports add nothing")

        let (dir, layer, manifest) = try layout(w)
        // loads go to a fresh store: this one already holds the good blobs, so a load into it
        // would (rightly) never read the bad copies
        let fresh = "\(w.dir)/fresh"
        func load(_ path: String) throws -> RunResult { try w.ctr(["load", "-i", path], root: fresh) }
        // 1. a blob whose content does not match its digest
        let good = try Data(contentsOf: URL(fileURLWithPath: layer))
        var bad = good
        bad[bad.count / 2] ^= 0xff
        try bad.write(to: URL(fileURLWithPath: layer))
        let r1 = try load(dir)
        expectOneLineError(r1, mentions: String(URL(fileURLWithPath: layer).lastPathComponent))
        #expect(r1.stderr.contains("verification") || r1.stderr.contains("hashes to"), "\(r1)")
        // the same as an archive
        expectOK(try w.bash("tar -C bad -cf bad.tar ."))
        expectOneLineError(try load("\(w.dir)/bad.tar"), mentions: String(URL(fileURLWithPath: layer).lastPathComponent))
        // 2. a missing blob
        unlink(layer)
        expectOneLineError(try load(dir), mentions: String(URL(fileURLWithPath: layer).lastPathComponent))
        try good.write(to: URL(fileURLWithPath: layer))
        // 3. an unknown layer media type (the manifest is rewritten with its new digest)
        var m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifest))) as! [String: Any]
        var layers = m["layers"] as! [[String: Any]]
        layers[0]["mediaType"] = "application/vnd.example.unknown"
        m["layers"] = layers
        let mdata = try JSONSerialization.data(withJSONObject: m)
        let newDigest = sha256Hex(mdata)
        try mdata.write(to: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(newDigest)"))
        var idx = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/index.json"))) as! [String: Any]
        var ms = idx["manifests"] as! [[String: Any]]
        ms[0]["digest"] = "sha256:\(newDigest)"
        ms[0]["size"] = mdata.count
        idx["manifests"] = ms
        try JSONSerialization.data(withJSONObject: idx).write(to: URL(fileURLWithPath: "\(dir)/index.json"))
        expectOneLineError(try load(dir), mentions: "application/vnd.example.unknown")
        // 4. not an archive at all
        expectOneLineError(try load("\(w.dir)/junk.tar"), mentions: "junk.tar")
        #expect(w.storeSnapshot() == before)
        let added = ["blobs/sha256", "layers/sha256", "ingest"].flatMap { (try? FileManager.default.contentsOfDirectory(atPath: "\(fresh)/\($0)")) ?? [] }
        #expect(added.isEmpty, "failed loads add nothing: \(added)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(fresh)/layers")) ?? []).filter { $0 != "sha256" }.isEmpty)
    }

    @Test func corruptLayerContentWithMatchingDigestAddsNothing() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let (w, _) = try prepared(who) else { return }
        // an OCI layout whose layer is a broken tar but whose digests are all consistent
        let (dir, layer, manifest) = try layout(w)
        expectOK(try w.bash("head -c 100000 \(TestEnv.busyboxTar) | gzip -n > \(layer).new"))
        let newLayer = try Data(contentsOf: URL(fileURLWithPath: "\(layer).new"))
        unlink("\(layer).new")
        let lhex = sha256Hex(newLayer)
        try newLayer.write(to: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(lhex)"))
        var m = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifest))) as! [String: Any]
        var layers = m["layers"] as! [[String: Any]]
        layers[0]["digest"] = "sha256:\(lhex)"
        layers[0]["size"] = newLayer.count
        m["layers"] = layers
        let mdata = try JSONSerialization.data(withJSONObject: m)
        let mhex = sha256Hex(mdata)
        try mdata.write(to: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(mhex)"))
        let idx: [String: Any] = ["schemaVersion": 2, "manifests": [["mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                                      "digest": "sha256:\(mhex)", "size": mdata.count,
                                                                      "annotations": ["io.containerd.image.name": "docker.io/library/cut:1"]]]]
        try JSONSerialization.data(withJSONObject: idx).write(to: URL(fileURLWithPath: "\(dir)/index.json"))
        let other = "\(w.dir)/fresh"
        let r = try w.ctr(["load", "-i", dir], root: other)
        expectOneLineError(r, mentions: lhex)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "\(other)/blobs/sha256")) ?? []
        let leftLayers = (try? FileManager.default.contentsOfDirectory(atPath: "\(other)/layers")) ?? []
        #expect(left.isEmpty, "no blob committed: \(left)")
        #expect(leftLayers.filter { $0 != "sha256" }.isEmpty && ((try? FileManager.default.contentsOfDirectory(atPath: "\(other)/layers/sha256")) ?? []).isEmpty)
        let imgs = try w.ctr(["images", "-q"], root: other)
        #expect(imgs.stdout.isEmpty)
    }

    // MARK: crashes and concurrency

    @Test func killedLoadLeavesAStorePruneCleans() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let (w, _) = try prepared(who) else { return }
        // a big image so the load is still running when it is killed
        expectOK(try w.bash("mkdir big && head -c 300000000 /dev/urandom > big/blob && for i in $(seq 1 2000); do echo $i > big/f$i; done"))
        expectOK(try w.ctr("import", "--tag", "big", "\(w.dir)/big"))
        expectOK(try w.ctr("save", "-o", "\(w.dir)/big.tar", "big"))
        let other = "\(w.dir)/victim"
        expectOK(try w.ctr(["import", "--tag", "small", TestEnv.busyboxTar], root: other))
        var killedWhileWriting = false
        for attempt in 0..<5 {
            let script = """
            CTR_ROOT=\(other) \(TestEnv.binary) load -i big.tar >/dev/null 2>&1 &
            pid=$!
            for i in $(seq 1 400); do
              if [ -n "$(ls -A \(other)/ingest 2>/dev/null)" ]; then sleep 0.\(attempt + 1); kill -9 $pid; echo killed; exit 0; fi
              sleep 0.005
            done
            wait $pid; echo finished
            """
            let r = try w.bash(script)
            if r.stdout.contains("killed") { killedWhileWriting = true; break }
        }
        #expect(killedWhileWriting, "the load was killed mid-way")
        let imgs = try w.ctr(["images"], root: other)
        expectOK(imgs)
        #expect(imgs.stdout.contains("small"), "the store still reads: \(imgs)")
        let debris = (try? FileManager.default.contentsOfDirectory(atPath: "\(other)/ingest")) ?? []
        #expect(!debris.isEmpty, "the killed load left debris in ingest/")
        let p = try w.ctr(["prune"], root: other)
        expectOK(p)
        #expect(p.stdout.hasPrefix("Total reclaimed space: "), "\(p)")
        #expect(!p.stdout.contains(": 0B"), "prune freed space: \(p)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(other)/ingest")) ?? []).isEmpty)
        let tmps = ((try? FileManager.default.contentsOfDirectory(atPath: "\(other)/layers")) ?? []).filter { $0.hasPrefix(".tmp") }
        #expect(tmps.isEmpty)
        // the image that was there is intact, and the big one loads now
        expectOK(try w.ctr(["unpack", "small", "\(w.dir)/u-small"], root: other))
        let again = try w.ctr(["load", "-i", "\(w.dir)/big.tar"], root: other)
        expectOK(again)
        #expect(again.stdout.contains("Loaded image: big:latest"))
    }

    @Test func concurrentWritersDoNotCorruptTheStore() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard let (w, _) = try prepared(who) else { return }
        expectOK(try w.ctr("save", "-o", "\(w.dir)/image.tar", "busybox:local"))
        expectOK(try w.bash("mkdir d && tar -C d -xf \(TestEnv.busyboxTar) && echo x > d/x"))
        let other = "\(w.dir)/shared"
        // eight writers (imports, loads, tags) and prunes at once on one store
        let script = """
        export CTR_ROOT=\(other)
        C=\(TestEnv.binary)
        for i in 1 2 3 4; do
          ( $C import --tag imp$i \(TestEnv.busyboxTar) >/dev/null || echo FAIL import $i ) &
          ( $C load -i image.tar >/dev/null && $C tag busybox:local copy$i || echo FAIL load $i ) &
        done
        ( $C import --tag dir d >/dev/null || echo FAIL dir ) &
        ( sleep 0.2; $C prune >/dev/null || echo FAIL prune ) &
        wait
        """
        let r = try w.bash(script)
        #expect(!r.stdout.contains("FAIL"), "\(r)")
        let imgs = try w.ctr(["images", "--format", "json"], root: other)
        expectOK(imgs)
        let list = (try JSONSerialization.jsonObject(with: Data(imgs.stdout.utf8)) as? [[String: Any]]) ?? []
        let names = Set(list.compactMap { $0["reference"] as? String })
        for want in ["imp1", "imp2", "imp3", "imp4", "copy1", "copy2", "copy3", "copy4", "dir", "busybox:local"] {
            let full = want.contains(":") ? "docker.io/library/\(want)" : "docker.io/library/\(want):latest"
            #expect(names.contains(full), "\(want) missing from \(names)")
        }
        // one unpacked layer per diff-id, shared: the busybox layer (imported four times,
        // loaded four times) and the directory's
        let layers = (try? FileManager.default.contentsOfDirectory(atPath: "\(other)/layers/sha256")) ?? []
        #expect(layers.count == 2, "\(layers)")
        // every image is whole after a final prune
        expectOK(try w.ctr(["prune"], root: other))
        for n in ["imp3", "copy2", "dir"] {
            expectOK(try w.ctr(["unpack", n, "\(w.dir)/u-\(n)"], root: other), n)
        }
    }
}

func sha256Hex(_ d: Data) -> String {
    let out = try? Command("/usr/bin/sha256sum").run(input: Array(d))
    return String((out?.stdoutText ?? "").prefix(64))
}
