import Foundation
import Testing

/// gzip without ISA-L: where libisal.so.2 is missing (it is the one codec ctr still loads from
/// the system, and CI images rarely have it), gzip layers are read and written through zlib.
/// ISA-L is hidden for real: libisal.so.2 is covered by /dev/null in a private mount namespace,
/// so ctr's dlopen of it fails as it would in an image without the package. Everything but
/// push and pull runs with libcurl.so.4 hidden too: only registry commands need it.
@Suite struct GzipFallbackTests {
    /// The files a library resolves to in the loader's cache (symlinks followed).
    static func files(of soname: String) -> [String] {
        guard let r = try? Workspace.exec("/sbin/ldconfig", ["-p"]) else { return [] }
        var out: Set<String> = []
        for line in r.stdout.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("\(soname) ") {
            guard let path = line.components(separatedBy: "=> ").last, let real = realpath(path, nil) else { continue }
            out.insert(String(cString: real))
            free(real)
        }
        return out.sorted()
    }
    static let isalFiles = files(of: "libisal.so.2")
    static let curlFiles = files(of: "libcurl.so.4")

    /// Run ctr as the workspace's user (its HOME, runtime dir and store, or `root`) with
    /// libisal.so.2 hidden, and libcurl.so.4 unless `curl`.
    func withoutISAL(_ w: Workspace, _ args: [String], root: String? = nil, curl: Bool = false) throws -> RunResult {
        var env = ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8", "HOME=\(w.home)",
                   "XDG_RUNTIME_DIR=\(w.dir)/run", "CTR_ROOT=\(root ?? w.store)", "SOURCE_DATE_EPOCH=1700000000"]
        var inner = ["/usr/bin/env", "-i"]
        if let u = w.who.user {
            env.append("USER=\(u)")
            inner = ["/usr/sbin/runuser", "-u", u, "--"] + inner
        }
        let hidden = Self.isalFiles + (curl ? [] : Self.curlFiles)
        let hide = hidden.map { "mount --bind /dev/null '\($0)' && if head -c 4 '\($0)' | grep -q ELF; then echo '\($0) is still readable' >&2; exit 99; fi" }
            .joined(separator: " && ")
        let script = "\(hide) && cd \"$0\" && exec \"$@\""
        return try Workspace.exec("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script, w.dir] + inner + env + [TestEnv.binary] + args)
    }

    func layers(_ w: Workspace, _ ref: String, root: String? = nil, format: String = "{{json .Layers}}") throws -> String {
        let r = try w.ctrHome(["inspect", "--format", format, ref], root: root)
        expectOK(r, "inspect \(ref)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(arguments: [Who.rootless, .root])
    func gzipThroughZlibWhereISALIsMissing(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        guard TestEnv.amRoot else { print("skip \(who): hiding libisal.so.2 needs a mount namespace made as root"); return }
        guard !Self.isalFiles.isEmpty else { print("skip \(who): libisal.so.2 is not installed, so there is no ISA-L to compare zlib with (\(TestEnv.setupHint))"); return }
        let w = try Workspace(who)
        try w.makeHome()
        let epoch = ["SOURCE_DATE_EPOCH": "1700000000"]
        // gzip tarballs: one member, two members (as pigz or a concatenation makes), a cut one
        let made = try w.bash("""
            set -e
            gzip -c \(TestEnv.busyboxTar) > bb.tar.gz
            head -c 1048576 \(TestEnv.busyboxTar) | gzip > multi.tar.gz
            tail -c +1048577 \(TestEnv.busyboxTar) | gzip >> multi.tar.gz
            head -c 300000 bb.tar.gz > cut.tar.gz
            mkdir -p ctx/pkg/in && echo packed > ctx/pkg/in/f.txt
            tar -C ctx/pkg -cf - in | gzip > ctx/p.tar.gz
            printf 'FROM gz:1\\nADD p.tar.gz /x/\\nRUN echo ran > /ran\\n' > ctx/Dockerfile
            sha256sum < \(TestEnv.busyboxTar) | cut -d' ' -f1
            """)
        expectOK(made)
        let diffID = "sha256:" + made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        // reading gzip: one member and two, each the busybox tar (its diff-id)
        expectOK(try withoutISAL(w, ["import", "-q", "bb.tar.gz", "gz:1"]), "import .tar.gz without ISA-L")
        expectOK(try withoutISAL(w, ["import", "-q", "multi.tar.gz", "mm:1"]), "import a two-member .tar.gz without ISA-L")
        #expect(try layers(w, "gz:1", format: "{{json .RootFS.Layers}}") == "[\"\(diffID)\"]")
        #expect(try layers(w, "mm:1", format: "{{json .RootFS.Layers}}") == "[\"\(diffID)\"]")
        // a cut stream: one line naming the file and the cut, nothing left in the store
        let before = w.storeSnapshot()
        let cut = try withoutISAL(w, ["import", "-q", "cut.tar.gz", "cut:1"])
        expectOneLineError(cut, mentions: "cut.tar.gz")
        #expect(cut.stderr.contains("gzip") && cut.stderr.contains("truncated"), "\(cut)")
        #expect(w.storeSnapshot() == before)

        // writing gzip: the same tree makes the same image (diff-id, image id) either way, but
        // zlib's bytes are not ISA-L's; CTR_NO_ISAL=1 (the test hook) takes the same path
        expectOK(try withoutISAL(w, ["import", "-q", TestEnv.busyboxTar, "z:1"], root: "\(w.dir)/z"))
        expectOK(try w.ctrHome(["import", "-q", TestEnv.busyboxTar, "i:1"], env: epoch, root: "\(w.dir)/i"))
        expectOK(try w.ctrHome(["import", "-q", TestEnv.busyboxTar, "n:1"], env: epoch.merging(["CTR_NO_ISAL": "1"]) { $1 }, root: "\(w.dir)/n"))
        let zLayers = try layers(w, "z:1", root: "\(w.dir)/z"), iLayers = try layers(w, "i:1", root: "\(w.dir)/i")
        #expect(zLayers != iLayers, "the layer without ISA-L should be zlib's bytes: \(zLayers)")
        #expect(try layers(w, "n:1", root: "\(w.dir)/n") == zLayers)
        #expect(try layers(w, "z:1", root: "\(w.dir)/z", format: "{{.Id}} {{json .RootFS.Layers}}")
                == layers(w, "i:1", root: "\(w.dir)/i", format: "{{.Id}} {{json .RootFS.Layers}}"))

        // archives round-trip between the two: zlib's layers read with ISA-L and the reverse
        expectOK(try withoutISAL(w, ["save", "-o", "\(w.dir)/z.tar", "z:1"], root: "\(w.dir)/z"))
        expectOK(try w.ctrHome(["load", "-i", "\(w.dir)/z.tar"], root: "\(w.dir)/zi"))
        expectOK(try w.ctrHome(["unpack", "z:1", "\(w.dir)/u1"], root: "\(w.dir)/zi"))
        expectOK(try w.ctrHome(["save", "-o", "\(w.dir)/i.tar", "i:1"], root: "\(w.dir)/i"))
        expectOK(try withoutISAL(w, ["load", "-i", "\(w.dir)/i.tar"], root: "\(w.dir)/iz"))
        expectOK(try withoutISAL(w, ["unpack", "i:1", "\(w.dir)/u2"], root: "\(w.dir)/iz"))
        expectOK(try w.bash("test -x u1/rootfs/bin/busybox && test -x u2/rootfs/bin/busybox && cmp u1/rootfs/bin/busybox u2/rootfs/bin/busybox"))

        // a build without ISA-L: ADD of a .tar.gz, a RUN step committed as a zlib layer
        expectOK(try withoutISAL(w, ["build", "-q", "-t", "built:1", "\(w.dir)/ctx"]), "build without ISA-L")
        expectOK(try w.ctrHome(["unpack", "built:1", "\(w.dir)/u3"]))
        let files = try w.bash("cat u3/rootfs/x/in/f.txt u3/rootfs/ran")
        #expect(files.lines == ["packed", "ran"], "\(files)")

        // a registry: push zlib's layers and pull them with ISA-L, push ISA-L's and pull them without
        guard TestRegistry.available, let reg = TestRegistry.plain else { print("skip \(who) registry part: \(TestRegistry.skipReason)"); return }
        let base = "\(reg.addr)/gz\(UUID().uuidString.prefix(8).lowercased())/busybox"
        expectOK(try withoutISAL(w, ["push", "-q", "z:1", "\(base):zlib"], root: "\(w.dir)/z", curl: true))
        expectOK(try w.ctrHome(["pull", "-q", "\(base):zlib"], root: "\(w.dir)/pull-i"))
        expectOK(try w.ctrHome(["push", "-q", "i:1", "\(base):isal"], root: "\(w.dir)/i"))
        expectOK(try withoutISAL(w, ["pull", "-q", "\(base):isal"], root: "\(w.dir)/pull-z", curl: true))
        #expect(try layers(w, "\(base):zlib", root: "\(w.dir)/pull-i") == zLayers)
        #expect(try layers(w, "\(base):isal", root: "\(w.dir)/pull-z") == iLayers)
        let ran = try withoutISAL(w, ["run", "--rm", "--network", "none", "\(base):isal", "echo", "pulled"], root: "\(w.dir)/pull-z")
        expectOK(ran)
        #expect(ran.stdout == "pulled\n", "\(ran)")
        // and without libcurl, a pull says which package it needs, in one line
        expectOneLineError(try withoutISAL(w, ["pull", "-q", "\(base):zlib"], root: "\(w.dir)/nocurl"), mentions: "libcurl4")
    }
}
