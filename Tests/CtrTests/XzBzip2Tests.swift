import Foundation
import Testing

/// xz and bzip2 tarballs (`ctr import`, ADD) are decompressed by ctr itself (libarchive's
/// filters), not by the xz or bzip2 programs: with those programs made unusable, both still work.
@Suite struct XzBzip2Tests {
    /// The programs an earlier ctr ran; each is covered by /dev/null (not executable) in a
    /// private mount namespace.
    static let programs = ["xz", "unxz", "xzcat", "lzma", "bzip2", "bunzip2", "bzcat"]

    /// Run `argv` as the workspace's user (with HOME, XDG_RUNTIME_DIR and CTR_ROOT of the
    /// workspace, PATH without the usual sbin dirs ctr adds itself) with the programs hidden.
    func withoutPrograms(_ w: Workspace, _ argv: [String]) throws -> RunResult {
        var env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=\(w.home)",
                   "XDG_RUNTIME_DIR=\(w.dir)/run", "CTR_ROOT=\(w.store)"]
        var inner = ["/usr/bin/env", "-i"]
        if let u = w.who.user {
            env.append("USER=\(u)")
            inner = ["/usr/sbin/runuser", "-u", u, "--"] + inner
        }
        let hide = Self.programs.map { "for d in /usr/bin /bin /usr/local/bin; do [ -e $d/\($0) ] && mount --bind /dev/null $d/\($0); done" }
            .joined(separator: "; ")
        let script = "\(hide); for p in \(Self.programs.joined(separator: " ")); do command -v $p >/dev/null && [ -x \"$(command -v $p)\" ] && { echo \"$p is still usable\" >&2; exit 99; }; done; cd \"$0\" && exec \"$@\""
        return try Workspace.exec("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script, w.dir] + inner + env + argv)
    }

    @Test(arguments: [Who.rootless, .root])
    func importAndAddWithNoDecompressorProgram(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        guard TestEnv.amRoot else { print("skip \(who): hiding the xz and bzip2 programs needs a mount namespace made as root"); return }
        guard TestEnv.have("xz"), TestEnv.have("bzip2") else { print("skip \(who): xz and bzip2 make the fixtures (\(TestEnv.setupHint))"); return }
        let w = try Workspace(who)
        try w.makeHome()
        // the fixtures, made with the programs while they are there
        expectOK(try w.bash("""
            set -e
            xz -c \(TestEnv.busyboxTar) > bb.tar.xz
            bzip2 -c \(TestEnv.busyboxTar) > bb.tar.bz2
            mkdir -p ctx/pkg/in && echo packed > ctx/pkg/in/f.txt
            tar -C ctx/pkg -cf - in | xz > ctx/p.tar.xz
            tar -C ctx/pkg -cf - in | bzip2 > ctx/p.tar.bz2
            head -c 20000 bb.tar.xz > cut.tar.xz
            printf 'FROM bz:1\\nADD p.tar.xz /xz/\\nADD p.tar.bz2 /bz2/\\n' > ctx/Dockerfile
            """))
        let ctr = TestEnv.binary
        expectOK(try withoutPrograms(w, [ctr, "import", "-q", "bb.tar.xz", "xz:1"]), "import .tar.xz")
        expectOK(try withoutPrograms(w, [ctr, "import", "-q", "bb.tar.bz2", "bz:1"]), "import .tar.bz2")
        // both are the busybox tar: the same layer
        let layers = try w.ctrHome(["inspect", "--format", "{{json .RootFS.Layers}}", "xz:1", "bz:1"])
        expectOK(layers)
        #expect(layers.lines.count == 2 && layers.lines[0] == layers.lines[1], "\(layers)")
        // ADD unpacks both at the destination
        expectOK(try withoutPrograms(w, [ctr, "build", "-q", "-t", "added:1", "\(w.dir)/ctx"]), "build with ADD")
        expectOK(try withoutPrograms(w, [ctr, "unpack", "added:1", "out"]), "unpack")
        let files = try w.bash("cat out/rootfs/xz/in/f.txt out/rootfs/bz2/in/f.txt && test -x out/rootfs/bin/busybox")
        #expect(files.lines == ["packed", "packed"], "\(files)")
        // a cut xz stream: one line naming the file, nothing left in the store
        let before = w.storeSnapshot()
        let cut = try withoutPrograms(w, [ctr, "import", "-q", "cut.tar.xz", "cut:1"])
        expectOneLineError(cut, mentions: "cut.tar.xz")
        #expect(cut.stderr.contains("xz"), "\(cut)")
        #expect(w.storeSnapshot() == before)
    }
}
