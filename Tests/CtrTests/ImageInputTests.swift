import Foundation
import Testing

/// Input ctr refuses whole (issue 11, point 9): Docker schema 1 manifests (pulled, or in a
/// layout), a schemaVersion other than 2, a ref.name that is not a name (`../x`); and an
/// import onto a full disk says which file it could not write. Each with one line naming the
/// culprit, and nothing added to the store.
@Suite(.serialized) struct ImageInputTests {
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        return w
    }

    @Test func aSchema1ManifestIsRefusedOnPull() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        guard TestRegistry.available, TestEnv.have("skopeo"), let reg = TestRegistry.schema1 else {
            print("skip: \(TestRegistry.skipReason) (and skopeo)"); return
        }
        // a real registry serving a signed schema 1 manifest, pushed by skopeo
        expectOK(try w.ctrHome(["save", "-o", "\(w.dir)/bb.tar", "busybox:local"]))
        let ref = "\(reg.addr)/old/busybox:v2s1"
        // skopeo's auth file in the workspace's runtime dir: without XDG_RUNTIME_DIR it reads
        // /run/containers/UID/auth.json, which a root-only /run/containers (root podman) refuses
        expectOK(try w.sh(["skopeo", "copy", "-q", "--format", "v2s1", "--dest-tls-verify=false", "oci-archive:\(w.dir)/bb.tar", "docker://\(ref)"],
                          env: ["XDG_RUNTIME_DIR": "\(w.dir)/run"]))
        let before = w.storeSnapshot()
        let r = try w.ctrHome(["pull", ref])
        expectOneLineError(r, mentions: "schema 1")
        #expect(r.stderr.contains("old/busybox:v2s1"), "\(r)")
        #expect(w.storeSnapshot() == before, "nothing was stored")
    }

    /// An OCI layout (dir and archive) whose manifest or index says schemaVersion 1, or whose
    /// ref.name is a path: refused whole, the entry named.
    @Test func layoutsWithABadSchemaOrRefNameAreRefused() throws {
        guard let w = try prepared(Who.rootless.available ? .rootless : .root) else { return }
        expectOK(try w.ctrHome(["save", "--format", "oci-dir", "-o", "\(w.dir)/good", "busybox:local"]))

        func variant(_ name: String, manifest: ((inout [String: Any]) -> Void)? = nil, index: ((inout [String: Any]) -> Void)? = nil) throws -> String {
            let dir = "\(w.dir)/\(name)"
            expectOK(try w.bash("cp -r good \(name)"))
            let indexPath = "\(dir)/index.json"
            var idx = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as? [String: Any])
            if let manifest {
                var entries = idx["manifests"] as! [[String: Any]]
                let old = (entries[0]["digest"] as! String).dropFirst(7)
                var m = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(old)"))) as? [String: Any])
                manifest(&m)
                let data = try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys])
                let hex = sha256Hex(data)
                try data.write(to: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(hex)"))
                entries[0]["digest"] = "sha256:\(hex)"
                entries[0]["size"] = data.count
                idx["manifests"] = entries
            }
            index?(&idx)
            try JSONSerialization.data(withJSONObject: idx, options: [.sortedKeys]).write(to: URL(fileURLWithPath: indexPath))
            // and as an oci-archive
            expectOK(try w.bash("tar -C \(name) -cf \(name).tar ."))
            return dir
        }
        let cases: [(String, String, [String])] = [
            (try variant("m1", manifest: { $0["schemaVersion"] = 1 }), "schemaVersion 1", []),
            (try variant("i1", index: { $0["schemaVersion"] = 1 }), "schemaVersion 1", ["index.json"]),
            (try variant("dotdot", index: { idx in
                var e = idx["manifests"] as! [[String: Any]]
                e[0]["annotations"] = ["org.opencontainers.image.ref.name": "../../evil"]
                idx["manifests"] = e
            }), "\"../../evil\"", ["entry 1", "ref.name"]),
            (try variant("badfull", index: { idx in
                var e = idx["manifests"] as! [[String: Any]]
                e[0]["annotations"] = ["io.containerd.image.name": "Not/A/Name:1", "org.opencontainers.image.ref.name": "1"]
                idx["manifests"] = e
            }), "\"Not/A/Name:1\"", ["entry 1"]),
        ]
        let before = w.storeSnapshot()
        for (dir, culprit, more) in cases {
            for input in [dir, dir + ".tar"] {
                let r = try w.ctrHome(["load", "-i", input])
                expectOneLineError(r, mentions: culprit)
                #expect(r.stderr.contains(input), "names the input: \(r)")
                for m in more { #expect(r.stderr.contains(m), "\(m): \(r)") }
            }
        }
        // a docker-archive whose RepoTags holds a path, not a name
        expectOK(try w.ctrHome(["save", "--format", "docker-archive", "-o", "\(w.dir)/d.tar", "busybox:local"]))
        expectOK(try w.bash("mkdir d && tar -C d -xf d.tar && sed -i 's,\"busybox:local\",\"../../evil:1\",' d/manifest.json && tar -C d -cf d2.tar ."))
        let d = try w.ctrHome(["load", "-i", "\(w.dir)/d2.tar"])
        expectOneLineError(d, mentions: "\"../../evil:1\"")
        #expect(w.storeSnapshot() == before, "nothing was stored")
        // the untouched layout still loads
        expectOK(try w.ctrHome(["load", "-i", "\(w.dir)/good"]))
    }

    /// On a full disk, import names the file it could not write (the store's), and leaves
    /// nothing behind: a small tmpfs as the store, once full while the layer blob is written
    /// and once while it is unpacked.
    @Test(arguments: [Who.rootless, Who.root])
    func importOnAFullDiskNamesTheFile(_ who: Who) throws {
        guard TestEnv.amRoot else { print("skip: mounting a small tmpfs needs root"); return }
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        let uid = who.user.flatMap { TestEnv.uid(of: $0) } ?? 0
        let gid = who.user.flatMap { getpwnam($0)?.pointee.pw_gid } ?? 0
        // busybox.tar is 2 MiB: its gzip blob (about 1 MiB) does not fit in 600k; in 1500k the
        // blob fits and the unpacked files do not
        for size in ["600k", "1500k"] {
            let mnt = "\(w.dir)/fs-\(size)"
            try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
            let m = try Workspace.exec("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),uid=\(uid),gid=\(gid),mode=0700", "tmpfs", mnt])
            guard m.status == 0 else { print("skip: cannot mount a tmpfs: \(m.stderr)"); return }
            defer { _ = try? Workspace.exec("/bin/umount", [mnt]) }
            let store = "\(mnt)/store"
            expectOK(try w.ctr(["images"], root: store))
            let r = try w.ctr(["import", "--tag", "full", TestEnv.busyboxTar], root: store)
            expectOneLineError(r, mentions: "No space left on device")
            #expect(r.stderr.contains(store), "the error names where it could not write: \(r)")
            let left = try Workspace.exec("/usr/bin/find", [store, "-mindepth", "2", "-not", "-path", "*/blobs/sha256", "-not", "-path", "*/layers/sha256"])
            #expect(left.stdout.isEmpty, "nothing half-written stays (\(size)): \(left.stdout)")
        }
    }
}
