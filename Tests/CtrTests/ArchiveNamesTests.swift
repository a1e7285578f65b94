import Foundation
import Testing

/// Names in OCI layouts and archives (issue 11, point 10): two saved images that share a tag
/// stay reachable by umoci, skopeo and podman; a layout entry named only by a tag loads
/// without a name (as docker and containerd load it), never as `latest:latest`; a load that
/// moves a name says so.
@Suite(.serialized) struct ArchiveNamesTests {
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        for (name, label) in [("a:1", "a"), ("b:1", "b"), ("c:2", "c")] {
            expectOK(try w.ctr("import", "--tag", name, "--change", "LABEL which=\(label)", TestEnv.busyboxTar))
        }
        return w
    }

    func label(_ r: RunResult) -> String? {
        guard let cfg = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let c = cfg["config"] as? [String: Any], let l = c["Labels"] as? [String: String] else { return nil }
        return l["which"]
    }

    @Test func twoImagesSharingATagStayReachable() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        expectOK(try w.ctr("save", "-o", "\(w.dir)/ab.tar", "a:1", "b:1", "c:2"))
        expectOK(try w.ctr("save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "a:1", "b:1", "c:2"))
        // each entry keeps its full name; where a tag is shared the ref.name is the full name,
        // a tag of one image stays the bare tag (as docker writes it)
        let index = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(w.dir)/layout/index.json"))) as? [String: Any])
        let refs = ((index["manifests"] as? [[String: Any]]) ?? []).compactMap { ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] }
        #expect(refs.sorted() == ["2", "docker.io/library/a:1", "docker.io/library/b:1"], "\(refs)")

        guard TestEnv.have("skopeo"), TestEnv.have("umoci") else { print("skip the peer checks: skopeo or umoci missing: \(TestEnv.setupHint)"); return }
        for (ref, want) in [("docker.io/library/a:1", "a"), ("docker.io/library/b:1", "b"), ("2", "c")] {
            let s = try w.sh(["skopeo", "inspect", "--config", "oci-archive:\(w.dir)/ab.tar:\(ref)"])
            expectOK(s, "skopeo \(ref)")
            #expect(label(s) == want, "skopeo oci-archive:…:\(ref): \(s)")
            let d = try w.sh(["skopeo", "inspect", "--config", "oci:\(w.dir)/layout:\(ref)"])
            #expect(label(d) == want, "skopeo oci:…:\(ref): \(d)")
        }
        let ls = try w.sh(["umoci", "ls", "--layout", "\(w.dir)/layout"])
        expectOK(ls)
        #expect(ls.lines.sorted() == ["2", "docker.io/library/a:1", "docker.io/library/b:1"], "\(ls)")
        let u = try w.sh(["umoci", "unpack", "--rootless", "--image", "\(w.dir)/layout:docker.io/library/b:1", "\(w.dir)/ub"])
        expectOK(u, "umoci unpack b")
        if TestEnv.amRoot && TestEnv.have("podman") {
            let pm = "\(w.dir)/podman"
            let base = ["--root", "\(pm)/root", "--runroot", "\(pm)/run", "--storage-driver", "vfs"]
            let p = try Workspace.exec("/usr/bin/podman", base + ["pull", "oci-archive:\(w.dir)/ab.tar:docker.io/library/b:1"])
            #expect(p.status == 0, "podman pull: \(p)")
            let i = try Workspace.exec("/usr/bin/podman", base + ["image", "inspect", "--format", "{{.Config.Labels.which}}", p.lines.last ?? ""])
            #expect(i.stdout == "b\n", "\(i)")
        } else {
            print("skip the podman check: it needs root and podman")
        }
        // and ctr reads its own archive back with every name
        let other = "\(w.dir)/other"
        let l = try w.ctr(["load", "-i", "\(w.dir)/ab.tar"], root: other)
        expectOK(l)
        #expect(Set(l.lines) == ["Loaded image: a:1", "Loaded image: b:1", "Loaded image: c:2"], "\(l)")
    }

    /// skopeo (and umoci) name layout entries by a tag alone; docker and containerd load such
    /// an entry without a name. It used to become `latest:latest`, and a second load of
    /// another such layout moved that name silently.
    @Test func aBareTagLoadsWithoutAName() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        guard TestEnv.have("skopeo") else { print("skip: skopeo missing: \(TestEnv.setupHint)"); return }
        for (image, dir) in [("a:1", "la"), ("b:1", "lb")] {
            expectOK(try w.ctr("save", "-o", "\(w.dir)/\(dir).tar", image))
            expectOK(try w.sh(["skopeo", "copy", "-q", "oci-archive:\(w.dir)/\(dir).tar", "oci:\(w.dir)/\(dir):latest"]))
        }
        let other = "\(w.dir)/other"
        for dir in ["la", "lb"] {
            let l = try w.ctr(["load", "-i", "\(w.dir)/\(dir)"], root: other)
            expectOK(l)
            #expect(l.stdout.hasPrefix("Loaded image ID: sha256:"), "\(l)")
            #expect(l.stderr.contains("only by the tag \"latest\"") && l.stderr.contains("without a name"), "\(l)")
        }
        let imgs = try w.ctr(["images", "--format", "{{.Repository}}:{{.Tag}}"], root: other)
        expectOK(imgs)
        #expect(!imgs.stdout.contains("latest"), "\(imgs)")
        #expect(imgs.lines.count == 2, "both images are there, unnamed: \(imgs)")
    }

    /// A load that moves a name from one image to another says so on stderr, as docker does.
    @Test func aLoadThatMovesANameSaysSo() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        expectOK(try w.ctr("save", "-o", "\(w.dir)/a.tar", "a:1"))
        let other = "\(w.dir)/other"
        expectOK(try w.ctr(["import", "--tag", "a:1", TestEnv.busyboxTar], root: other))
        let l = try w.ctr(["load", "-i", "\(w.dir)/a.tar"], root: other)
        expectOK(l)
        #expect(l.stdout == "Loaded image: a:1\n", "\(l)")
        #expect(l.stderr.contains("a:1 named image sha256:") && l.stderr.contains("it names the loaded image"), "\(l)")
    }
}
