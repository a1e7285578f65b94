import Foundation
import Testing

/// The fuse-overlayfs root: where the kernel refuses overlayfs (here: an image of more layers
/// than the kernel stacks) and when CTR_OVERLAY=fuse asks for it, rootless and as root.
@Suite(.serialized) struct FuseOverlayTests {
    static let modes: [Who] = [.rootless, .root]

    /// A workspace with busybox:local, or nil (and why) when this user cannot use fuse here.
    func prepared(_ who: Who) throws -> Workspace? {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return nil }
        guard TestEnv.have("fuse-overlayfs") else { print("skip \(who): fuse-overlayfs is not installed; \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        let fuse = try w.bash("test -r /dev/fuse -a -w /dev/fuse")
        guard fuse.status == 0 else {
            print("skip \(who): /dev/fuse is not readable and writable by this user (scripts/setup.sh makes it 0666, as Debian's udev rule does)")
            return nil
        }
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", "--change", #"CMD ["sh"]"#, TestEnv.busyboxTar]))
        return w
    }

    static let fuse = ["CTR_OVERLAY": "fuse"]

    static func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let v = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return v.count == 2 && (v[0], v[1]) >= (major, minor)
    }

    /// fuse-overlayfs processes serving this workspace's store.
    func daemons(_ w: Workspace) throws -> [String] {
        let r = try Workspace.exec("/usr/bin/pgrep", ["-a", "-f", "fuse-overlayfs .*\(w.dir)/"])
        return r.lines
    }

    func waitNoDaemons(_ w: Workspace) throws -> [String] {
        for _ in 0..<100 {
            let d = try daemons(w)
            if d.isEmpty { return d }
            usleep(20_000)
        }
        return try daemons(w)
    }

    @Test(arguments: modes)
    func forcedRootServesTheContainer(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "sh", "-c", """
            grep ' / ' /proc/mounts | cut -d' ' -f1-3
            stat -c %u:%g /home/user/owned-by-1000
            echo new > /etc/motd && cat /etc/motd
            mkdir /data && chown 1000:1000 /data && stat -c %u /data
            rm /bin/ls && test ! -e /bin/ls && echo removed
            echo $(busybox ls /proc/self/fd)
            exit 3
            """], env: Self.fuse)
        #expect(r.status == 3, "the command's status passes through: \(r)")
        #expect(r.lines == ["fuse-overlayfs / fuse.fuse-overlayfs", "1000:1000", "new", "1000", "removed", "0 1 2 3"],
                "no fd beyond stdio (3 is ls's own): \(r)")
        // a user other than root writes where it may, and is refused where it may not
        let user = try w.ctrHome(["run", "--rm", "--network", "none", "-u", "1000", "busybox:local", "sh", "-c",
                                  "touch /home/user/mine && stat -c %u /home/user/mine; touch /etc/x 2>/dev/null || echo denied"], env: Self.fuse)
        #expect(user.lines == ["1000", "denied"], "\(user)")
    }

    /// A daemon that fails says why in ctr's one line; one that never answers is given up on.
    /// Neither leaves a container or a process behind.
    @Test(arguments: modes)
    func daemonFailures(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("""
            mkdir -p bad hang
            printf '#!/bin/sh\\necho "no lower dir here (fake)" >&2\\nexit 1\\n' > bad/fuse-overlayfs
            printf '#!/bin/sh\\n[ "$1" = --version ] && echo "fuse-overlayfs: version 1.10" && exit 0\\nexec sleep 300\\n' > hang/fuse-overlayfs
            chmod +x bad/fuse-overlayfs hang/fuse-overlayfs
            """))
        let path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        let bad = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "true"],
                                env: ["CTR_OVERLAY": "fuse", "PATH": "\(w.dir)/bad:\(path)"])
        expectOneLineError(bad, mentions: "no lower dir here (fake)")
        let hang = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "true"],
                                 env: ["CTR_OVERLAY": "fuse", "CTR_FUSE_TIMEOUT": "2", "PATH": "\(w.dir)/hang:\(path)"])
        expectOneLineError(hang, mentions: "did not answer within 2 s")
        let left = try Workspace.exec("/usr/bin/pgrep", ["-f", "\(w.dir)/hang/fuse-overlayfs|sleep 300"])
        #expect(left.stdout.isEmpty, "nothing left running: \(left)")
        #expect(try w.ctrHome(["ps", "-aq"]).stdout.isEmpty)
        let dirs = try w.bash("ls \(w.store)/containers 2>/dev/null | wc -l")
        #expect(dirs.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "no container state left: \(dirs)")
    }

    @Test(arguments: modes)
    func forcedRootDetachedLifecycle(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let id = try w.ctrHome(["run", "-d", "--name", "f1", "--network", "none", "busybox:local", "sh", "-c", "echo up; exec sleep 60"], env: Self.fuse)
        #expect(id.status == 0, "\(id)")
        #expect(try daemons(w).count == 1, "one daemon for the container")
        // exec joins the container; a user by name is found although the host cannot read the root
        let ex = try w.ctrHome(["exec", "-u", "user", "f1", "sh", "-c", "id -u; grep ' / ' /proc/mounts | cut -d' ' -f3"])
        #expect(ex.lines == ["1000", "fuse.fuse-overlayfs"], "\(ex)")
        let ps = try w.ctrHome(["ps"])
        #expect(ps.stdout.contains("f1") && ps.stdout.contains("Up"), "\(ps)")
        expectOK(try w.ctrHome(["rm", "-f", "f1"]))
        #expect(try waitNoDaemons(w).isEmpty, "the daemon exits with its container")
        #expect(!(try w.ctrHome(["ps", "-a"]).stdout.contains("f1")))
    }

    /// The kernel stacks at most 500 layers: a 510-layer image runs through the fallback, and
    /// with the fallback off the error says why.
    @Test(arguments: modes)
    func kernelRefusalFallsBack(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let script = """
            import hashlib, io, json, os, sys, tarfile
            out, n, base = "many", 510, sys.argv[1]
            os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
            def put(data):
                d = hashlib.sha256(data).hexdigest()
                open(f"{out}/blobs/sha256/{d}", "wb").write(data)
                return "sha256:" + d, len(data)
            layers, diffs = [], []
            def add(tar):
                d, s = put(tar)
                layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}); diffs.append(d)
            add(open(base, "rb").read())
            for i in range(n):
                raw = io.BytesIO()
                with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
                    data = f"layer {i}\\n".encode()
                    ti = tarfile.TarInfo(f"layers/{i}"); ti.size = len(data); ti.mtime = 1700000000
                    t.addfile(ti, io.BytesIO(data))
                add(raw.getvalue())
            cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diffs}}
            cd, cn = put(json.dumps(cfg).encode())
            m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": layers}
            md, mn = put(json.dumps(m).encode())
            json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                       "size": mn, "annotations": {"org.opencontainers.image.ref.name": "many:latest"}}]}, open(f"{out}/index.json", "w"))
            open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
            """
        expectOK(try w.bash("cat > mk.py <<'EOF'\n\(script)\nEOF\npython3 mk.py \(TestEnv.busyboxTar)"))
        expectOK(try w.ctrHome(["load", "-i", "many"]))
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "many", "sh", "-c",
                               "ls /layers | wc -l; cat /layers/0 /layers/509; grep ' / ' /proc/mounts | cut -d' ' -f3"])
        #expect(r.status == 0, "\(r)")
        #expect(r.lines.map { $0.trimmingCharacters(in: .whitespaces) } == ["510", "layer 0", "layer 509", "fuse.fuse-overlayfs"], "\(r)")
        let off = try w.ctrHome(["run", "--rm", "--network", "none", "many", "true"], env: ["CTR_OVERLAY": "kernel"])
        expectOneLineError(off, mentions: "at most 500 layers")
        // an image the kernel takes still gets the kernel's overlay (rootless: from 5.11)
        let small = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "sh", "-c", "grep ' / ' /proc/mounts | cut -d' ' -f3"])
        if who == .root || Self.kernelAtLeast(5, 11) {
            #expect(small.stdout == "overlay\n", "\(small)")
        } else {
            #expect(small.stdout == "fuse.fuse-overlayfs\n", "\(small)")
        }
    }

    /// RUN on a fuse-overlayfs root: its upper dir (fuse-overlayfs marks opaque dirs its own
    /// way) becomes a layer that the kernel's overlay shows as the step left it.
    @Test(arguments: modes)
    func buildOnFuseRoot(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.bash("""
            mkdir ctx && printf 'FROM busybox:local\\nRUN rm -rf /home && mkdir /home && touch /home/new && rm /bin/ls && mkdir /o && chown 1000 /o\\n' > ctx/Dockerfile
            """))
        let b = try w.ctrHome(["build", "-q", "-t", "fb:1", "ctx"], env: Self.fuse)
        #expect(b.status == 0, "\(b)")
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "fb:1", "sh", "-c", "ls -A /home; test -e /bin/ls || echo no-ls; stat -c %u /o"],
                              env: ["CTR_OVERLAY": "kernel"])
        #expect(r.lines == ["new", "no-ls", "1000"], "\(r)")
    }
}
