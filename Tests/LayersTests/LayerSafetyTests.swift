// Malicious layers (in the spirit of umoci's and docker's breakout tests): every case is
// applied with both tree kinds into a fresh root that has a sentinel directory and file next
// to it. Whatever the layer says, nothing outside the root may change: either the apply
// fails with a message naming the entry, or what it did is confined to the root (and the
// test asserts where it landed).
import Foundation
import HostOS
import Testing
@testable import Layers

/// The paths of one safety run:
///
///     <scratch>/host/sfile          sentinel file ("sentinel", 0640, mtime 1000000000)
///     <scratch>/host/sdir/keep      sentinel directory with one file
///     <scratch>/deep/er/root        the root the layer is applied to
///
/// From the root, "../../.." is <scratch>, so "../../../host/..." names the sentinels when
/// resolved on the host, and "<root>/host/..." when resolved inside the root.
struct SafetyEnv: Sendable {
    let scratch: String
    var host: String { "\(scratch)/host" }
    var sdir: String { "\(host)/sdir" }
    var sfile: String { "\(host)/sfile" }
    var root: String { "\(scratch)/deep/er/root" }
    /// `p` resolved inside the root.
    func inRoot(_ p: String) -> String { p.hasPrefix("/") ? root + p : "\(root)/\(p)" }

    static let sentinelText = "sentinel"
    static let sentinelMode: mode_t = 0o640
    static let sentinelMtime = 1_000_000_000
}

/// What applying a case must do with one tree kind.
enum Outcome: Sendable {
    /// The apply succeeds; the closure checks where the effect landed inside the root.
    case confined(@Sendable (SafetyEnv) -> Void)
    /// The apply fails (possibly in a later layer); the message contains every string.
    case fails([String])
}

struct SafetyCase: Sendable, CustomTestStringConvertible {
    let name: String
    let layers: @Sendable (SafetyEnv) -> [[TarEntry]]
    let plain: Outcome
    let overlay: Outcome
    var testDescription: String { name }

    init(_ name: String, plain: Outcome, overlay: Outcome, layers: @escaping @Sendable (SafetyEnv) -> [[TarEntry]]) {
        self.name = name
        self.layers = layers
        self.plain = plain
        self.overlay = overlay
    }

    init(_ name: String, both: Outcome, layers: @escaping @Sendable (SafetyEnv) -> [[TarEntry]]) {
        self.init(name, plain: both, overlay: both, layers: layers)
    }

    func outcome(_ tree: TreeKind) -> Outcome { tree == .plain ? plain : overlay }
}

/// Everything observable about one path outside the root.
private struct NodeState: Equatable, CustomStringConvertible {
    var mode: mode_t, uid: uid_t, gid: gid_t, size: Int, ino: ino_t, nlink: Int
    var mtime: Int, mtimeNsec: Int
    var contentHash: String?
    var linkTarget: String?
    var xattrOpaque: [UInt8]?
    var description: String { "mode \(String(mode, radix: 8)) size \(size) nlink \(nlink) mtime \(mtime)" }
}

/// A snapshot of the scratch dir, the root's own subtree excluded.
private func snapshotOutside(_ env: SafetyEnv) -> [String: NodeState] {
    var out: [String: NodeState] = [:]
    func visit(_ p: String) {
        if p == env.root { return }
        guard let st = FS.lstat(p) else { return }
        var n = NodeState(mode: st.st_mode, uid: st.st_uid, gid: st.st_gid, size: Int(st.st_size), ino: st.st_ino,
                          nlink: Int(st.st_nlink), mtime: Int(st.st_mtim.tv_sec), mtimeNsec: Int(st.st_mtim.tv_nsec))
        switch st.st_mode & S_IFMT {
        case S_IFREG: n.contentHash = Digest.sha256(fileData(p)).encoded
        case S_IFLNK: n.linkTarget = FS.readlink(p)
        default: break
        }
        n.xattrOpaque = FS.getxattr(p, "user.overlay.opaque")
        out[p] = n
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in FS.list(p) { visit("\(p)/\(name)") }
        }
    }
    visit(env.scratch)
    return out
}

private func setUpSentinels(_ env: SafetyEnv) {
    FS.mkdir(env.host)
    FS.mkdir(env.sdir)
    FS.write("\(env.sdir)/keep", "keep me")
    FS.write(env.sfile, SafetyEnv.sentinelText, mode: SafetyEnv.sentinelMode)
    FS.setMtime(env.sfile, SafetyEnv.sentinelMtime)
    FS.setMtime(env.sdir, SafetyEnv.sentinelMtime)
    try! FileManager.default.createDirectory(atPath: env.root, withIntermediateDirectories: true)
}

// MARK: - The cases

/// `count` path components of `name` ("a/a/a…").
private func deepPath(_ component: String, _ count: Int) -> String {
    Array(repeating: component, count: count).joined(separator: "/")
}

private let long200a = String(repeating: "a", count: 200)
private let long200b = String(repeating: "b", count: 200)
private let long200c = String(repeating: "c", count: 200)

let safetyCases: [SafetyCase] = [
    // --- names that climb or are absolute
    SafetyCase("../../escape regular file", both: .confined { env in
        #expect(FS.text(env.inRoot("escape")) == "x")
        #expect(!FS.exists("\(env.scratch)/deep/escape"))
    }) { _ in [[.file("../../escape", "x")]] },

    SafetyCase("../../../host/sdir/evil regular file", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
    }) { _ in [[.file("../../../host/sdir/evil", "x")]] },

    SafetyCase("absolute /abs/file", both: .confined { env in
        #expect(FS.text(env.inRoot("abs/file")) == "abs")
    }) { _ in [[.file("/abs/file", "abs")]] },

    SafetyCase("absolute name equal to the sentinel file's host path", both: .confined { env in
        #expect(FS.text(env.inRoot(env.sfile)) == "pwned")
    }) { env in [[.file(env.sfile, "pwned")]] },

    SafetyCase("dot-dot in the middle: a/../../../../host/sdir/evil", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
    }) { _ in [[.file("a/../../../../host/sdir/evil", "x")]] },

    SafetyCase("a file named .. is ignored", both: .confined { env in
        #expect(FS.list(env.root) == [])
    }) { _ in [[.file("..", "x"), .file("a/../..", "y"), .file(".", "z")]] },

    SafetyCase("root dir entry ../ changes the root, not its parent", both: .confined { env in
        #expect(FS.perm(env.root) == 0o710)
        #expect(FS.mtime(env.root) == 1_234_567_890)
    }) { _ in [[.dir("../", mode: 0o710, mtime: 1_234_567_890)]] },

    // --- symlinked parents
    SafetyCase("absolute symlink to a host dir, then a file through it", both: .fails(["cannot open directory link:", "No such file"])) { env in
        [[.symlink("link", to: env.sdir), .file("link/evil", "x")]]
    },

    SafetyCase("absolute symlink whose target also exists in the root, then a file through it", both: .confined { env in
        #expect(FS.text(env.inRoot(env.sdir + "/evil")) == "x")
        #expect(FS.readlink(env.inRoot("link")) == env.sdir)
    }) { env in [[.dir(env.sdir + "/"), .symlink("link", to: env.sdir), .file("link/evil", "x")]] },

    SafetyCase("relative ../../.. symlink, then a file through it", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
        #expect(FS.readlink(env.inRoot("rel")) == "../../..")
    }) { _ in [[.symlink("rel", to: "../../.."), .file("rel/host/sdir/evil", "x")]] },

    SafetyCase("relative symlink straight at the host sentinel dir, then a file through it",
               both: .fails(["cannot open directory rel:", "No such file"])) { _ in
        [[.symlink("rel", to: "../../../host/sdir"), .file("rel/evil", "x")]]
    },

    SafetyCase("symlink chain a -> b -> host dir, then a file through it", both: .fails(["cannot open directory a:", "No such file"])) { env in
        [[.symlink("b", to: env.sdir), .symlink("a", to: "b"), .file("a/evil", "x")]]
    },

    SafetyCase("symlink chain a -> b -> ../../.., then a file through it", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
    }) { _ in [[.symlink("b", to: "../../.."), .symlink("a", to: "b"), .file("a/host/sdir/evil", "x")]] },

    SafetyCase("symlink loop as a parent", both: .fails(["cannot open directory a:", "symbolic links"])) { _ in
        [[.symlink("a", to: "b"), .symlink("b", to: "a"), .file("a/x", "x")]]
    },

    SafetyCase("a regular file as a parent", both: .fails(["f: a path component is not a directory"])) { _ in
        [[.file("f", "f"), .file("f/x", "x")]]
    },

    SafetyCase("directory replaced by a symlink to the host, then a file under it", both: .fails(["cannot open directory d:", "No such file"])) { env in
        [[.dir("d/"), .file("d/a", "a"), .symlink("d", to: env.sdir), .file("d/evil", "x")]]
    },

    SafetyCase("directory replaced by a ../../.. symlink, then a file under it", both: .confined { env in
        #expect(FS.isSymlink(env.inRoot("d")))
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
        #expect(!FS.exists(env.inRoot("a")))
    }) { _ in [[.dir("d/"), .file("d/a", "a"), .symlink("d", to: "../../.."), .file("d/host/sdir/evil", "x")]] },

    SafetyCase("symlinked parent of a directory entry", both: .confined { env in
        #expect(FS.isDir(env.inRoot("host/sdir/newdir")))
        #expect(FS.perm(env.inRoot("host/sdir/newdir")) == 0o700)
    }) { _ in [[.symlink("up", to: "../../.."), .dir("up/host/sdir/newdir/", mode: 0o700)]] },

    SafetyCase("device and fifo through a symlinked parent", both: .confined { env in
        let st = FS.lstat(env.inRoot("host/sdir/null"))
        #expect(st.map { $0.st_mode & S_IFMT } == S_IFCHR)
        #expect(st.map { FS.devNumbers($0.st_rdev).major } == 1)
        #expect(FS.type(env.inRoot("host/sdir/fifo")) == S_IFIFO)
    }) { _ in
        [[.symlink("up", to: "../../.."), .char("up/host/sdir/null", major: 1, minor: 3), .fifo("up/host/sdir/fifo")]]
    },

    // --- final components are never followed
    SafetyCase("regular file replacing a symlink to the sentinel file", both: .confined { env in
        #expect(FS.text(env.inRoot("victim")) == "pwned")
        #expect(FS.text(env.inRoot("victim2")) == "pwned2")
    }) { env in
        [[.symlink("victim", to: env.sfile), .file("victim", "pwned"),
          .symlink("victim2", to: "../../../host/sfile"), .file("victim2", "pwned2")]]
    },

    SafetyCase("directory entry replacing a symlink to the sentinel dir", both: .confined { env in
        #expect(FS.isDir(env.inRoot("victim")))
        #expect(FS.perm(env.inRoot("victim")) == 0o700)
        #expect(FS.mtime(env.inRoot("victim")) == 42)
    }) { env in [[.symlink("victim", to: env.sdir), .dir("victim/", mode: 0o700, mtime: 42)]] },

    SafetyCase("fifo, device and hardlink entries replacing symlinks to the sentinel file", both: .confined { env in
        #expect(FS.type(env.inRoot("v1")) == S_IFIFO)
        #expect(FS.type(env.inRoot("v2")) == S_IFCHR)
        #expect(FS.isFile(env.inRoot("v3")))
        #expect(FS.inode(env.inRoot("v3")) == FS.inode(env.inRoot("inside")))
    }) { env in
        [[.symlink("v1", to: env.sfile), .fifo("v1"),
          .symlink("v2", to: env.sfile), .char("v2", major: 1, minor: 3),
          .file("inside", "in"), .symlink("v3", to: env.sfile), .hardlink("v3", to: "inside")]]
    },

    // --- hardlinks
    SafetyCase("hardlink to an absolute host path", both: .fails(["hardlink hl", "target not found"])) { env in
        [[.hardlink("hl", to: env.sfile)]]
    },

    SafetyCase("hardlink to an absolute path that exists in the root", both: .confined { env in
        #expect(FS.inode(env.inRoot("hl")) == FS.inode(env.inRoot("ctr-inroot-etc/passwd")))
        #expect(FS.text(env.inRoot("hl")) == "root:x:0:0")
    }) { _ in [[.file("ctr-inroot-etc/passwd", "root:x:0:0"), .hardlink("hl", to: "/ctr-inroot-etc/passwd")]] },

    SafetyCase("hardlink with a ../ target", both: .fails(["hardlink hl", "target not found"])) { _ in
        [[.hardlink("hl", to: "../../../host/sfile")]]
    },

    SafetyCase("hardlink with a ../ target that exists in the root", both: .confined { env in
        #expect(FS.inode(env.inRoot("hl")) == FS.inode(env.inRoot("host/sfile")))
    }) { _ in [[.file("host/sfile", "in root"), .hardlink("hl", to: "../../../host/sfile")]] },

    SafetyCase("hardlink through a symlinked dir to the host", both: .fails(["hardlink hl", "target not found"])) { env in
        [[.symlink("l", to: env.host), .hardlink("hl", to: "l/sfile")]]
    },

    SafetyCase("hardlink to a directory", both: .fails(["hardlink hl", "not permitted"])) { _ in
        [[.dir("d/"), .hardlink("hl", to: "d")]]
    },

    SafetyCase("hardlink to the root", both: .fails(["hardlink hl", "points at the root"])) { _ in [[.hardlink("hl", to: "../")]] },

    SafetyCase("hardlink to a target with more than 1024 components", both: .fails(["hardlink hl", "too deep"])) { _ in
        [[.hardlink("hl", to: deepPath("a", 1100))]]
    },

    SafetyCase("hardlink to a symlink pointing out links the symlink itself", both: .confined { env in
        #expect(FS.isSymlink(env.inRoot("h")))
        #expect(FS.readlink(env.inRoot("h")) == "../../../host/sfile")
        #expect(FS.inode(env.inRoot("h")) == FS.inode(env.inRoot("s")))
    }) { _ in [[.symlink("s", to: "../../../host/sfile"), .hardlink("h", to: "s")]] },

    SafetyCase("hardlinked symlink, then a regular file written to it", both: .confined { env in
        #expect(FS.text(env.inRoot("h")) == "pwned")
        #expect(FS.readlink(env.inRoot("s")) == env.sfile)
    }) { env in [[.symlink("s", to: env.sfile), .hardlink("h", to: "s"), .file("h", "pwned")]] },

    SafetyCase("hardlinked symlink used as a parent stays in the root", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
    }) { _ in [[.symlink("s", to: "../../.."), .hardlink("h", to: "s"), .file("h/host/sdir/evil", "x")]] },

    // --- whiteouts
    SafetyCase("whiteout through an absolute symlinked parent", plain: .confined { env in
        #expect(FS.readlink(env.inRoot("l")) == env.sdir)
    }, overlay: .fails(["cannot open directory l:", "No such file"])) { env in
        [[.symlink("l", to: env.sdir), .file("l/.wh.keep")]]
    },

    SafetyCase("whiteout through a ../../.. symlink removes the copy in the root", plain: .confined { env in
        #expect(!FS.exists(env.inRoot("host/sdir/keep")))
        #expect(FS.isDir(env.inRoot("host/sdir")))
    }, overlay: .confined { env in
        #expect(FS.isWhiteout(env.inRoot("host/sdir/keep")))
    }) { _ in
        [[.file("host/sdir/keep", "lower")], [.symlink("l", to: "../../.."), .file("l/host/sdir/.wh.keep")]]
    },

    SafetyCase("whiteout of the sentinel by an absolute name", plain: .confined { env in
        #expect(!FS.exists(env.inRoot(env.sfile)))
    }, overlay: .confined { env in
        #expect(FS.isWhiteout(env.inRoot(env.sfile)))
    }) { env in [[.file(env.host + "/.wh.sfile")]] },

    SafetyCase("whiteout of .. climbing names", plain: .confined { env in
        #expect(!FS.exists(env.inRoot("host/sdir")))
        #expect(FS.isDir(env.inRoot("host")))
    }, overlay: .confined { env in
        #expect(FS.isWhiteout(env.inRoot("host/sdir")))
    }) { _ in [[.file("host/sdir/keep", "lower")], [.file("../../../host/.wh.sdir")]] },

    SafetyCase("opaque whiteout through an absolute symlinked parent", plain: .confined { env in
        #expect(FS.readlink(env.inRoot("l")) == env.sdir)
    }, overlay: .fails(["cannot open directory l:", "No such file"])) { env in
        [[.symlink("l", to: env.sdir), .file("l/.wh..wh..opq")]]
    },

    SafetyCase("opaque whiteout through a ../../.. symlink acts on the root's copy", plain: .confined { env in
        #expect(FS.isDir(env.inRoot("host/sdir")))
        #expect(FS.list(env.inRoot("host/sdir")) == [])
    }, overlay: .confined { env in
        #expect(FS.getxattr(env.inRoot("host/sdir"), "user.overlay.opaque") == Array("y".utf8))
        #expect(FS.text(env.inRoot("host/sdir/keep")) == "lower")
    }) { _ in
        [[.file("host/sdir/keep", "lower")], [.symlink("l", to: "../../.."), .file("l/host/sdir/.wh..wh..opq")]]
    },

    SafetyCase("invalid whiteout .wh.", both: .fails(["invalid whiteout", ".wh."])) { _ in [[.file(".wh.")]] },
    SafetyCase("invalid whiteout .wh..", both: .fails(["invalid whiteout", ".wh.."])) { _ in [[.file(".wh..")]] },
    SafetyCase("invalid whiteout .wh...", both: .fails(["invalid whiteout", ".wh..."])) { _ in [[.file(".wh...")]] },
    SafetyCase("invalid whiteout d/.wh..", both: .fails(["invalid whiteout", "d/.wh.."])) { _ in
        [[.dir("d/"), .file("d/.wh..")]]
    },

    SafetyCase("overlay xattrs in the layer are not applied", both: .confined { env in
        let d = env.inRoot("d")
        #expect(FS.isDir(d))
        for name in ["trusted.overlay.opaque", "trusted.overlay.redirect", "user.overlay.opaque",
                     "user.overlay.redirect", "user.rootlesscontainers"] {
            #expect(FS.getxattr(d, name) == nil, "\(name) must not come from the layer")
            #expect(FS.getxattr(env.inRoot("f"), name) == nil, "\(name) must not come from the layer")
        }
        #expect(FS.getxattr(d, "user.ok") == Array("1".utf8))
    }) { _ in
        [[.dir("d/").xattr("trusted.overlay.opaque", "y").xattr("trusted.overlay.redirect", "/etc")
            .xattr("user.overlay.opaque", "y").xattr("user.overlay.redirect", "/etc").xattr("user.ok", "1"),
          .file("f", "f").xattr("user.rootlesscontainers", [0x08, 0x01]).xattr("trusted.overlay.origin", "x")]]
    },

    // --- names
    SafetyCase("very long name (pax path, 600 bytes)", both: .confined { env in
        #expect(FS.text(env.inRoot("\(long200a)/\(long200b)/\(long200c)")) == "long")
    }) { _ in [[.file("\(long200a)/\(long200b)/\(long200c)", "long")]] },

    SafetyCase("a name component longer than NAME_MAX", both: .fails(["File name too long"])) { _ in
        [[.file(String(repeating: "n", count: 300), "x")]]
    },

    SafetyCase("a name longer than PATH_MAX", both: .fails(["too long"])) { _ in
        [[.file(deepPath(String(repeating: "p", count: 100), 50), "x")]]
    },

    SafetyCase("a file name with more than 1024 components", both: .fails(["too deep"])) { _ in
        [[.file(deepPath("a", 1100), "deep")]]
    },

    SafetyCase("a directory name with more than 1024 components", both: .fails(["too deep"])) { _ in
        [[.dir(deepPath("a", 1100) + "/", mode: 0o000)]]
    },

    // --- two layers on one root (layer 1 plants, layer 2 writes through)
    SafetyCase("two layers: absolute symlink, then a file through it", both: .fails(["cannot open directory link:", "No such file"])) { env in
        [[.symlink("link", to: env.sdir)], [.file("link/evil", "x")]]
    },

    SafetyCase("two layers: ../../.. symlink, then a file through it", both: .confined { env in
        #expect(FS.text(env.inRoot("host/sdir/evil")) == "x")
    }) { _ in [[.symlink("rel", to: "../../..")], [.file("rel/host/sdir/evil", "x")]] },

    SafetyCase("two layers: symlink to the sentinel file, then a regular file over it", both: .confined { env in
        #expect(FS.text(env.inRoot("victim")) == "pwned")
    }) { env in [[.symlink("victim", to: env.sfile)], [.file("victim", "pwned")]] },

    SafetyCase("two layers: symlink to the sentinel dir, then a directory entry over it", both: .confined { env in
        #expect(FS.isDir(env.inRoot("victim")))
        #expect(FS.perm(env.inRoot("victim")) == 0o777)
    }) { env in [[.symlink("victim", to: env.sdir)], [.dir("victim/", mode: 0o777)]] },

    SafetyCase("two layers: absolute symlink to an in-root dir, then a file through it", both: .confined { env in
        #expect(FS.text(env.inRoot("ctr-inroot-etc/conf")) == "c")
        #expect(FS.isSymlink(env.inRoot("cfg")))
    }) { _ in [[.dir("ctr-inroot-etc/"), .symlink("cfg", to: "/ctr-inroot-etc")], [.file("cfg/conf", "c")]] },

    SafetyCase("two layers: hardlink to a symlink pointing at the host, then a write to it", both: .confined { env in
        #expect(FS.text(env.inRoot("h")) == "pwned")
        #expect(FS.readlink(env.inRoot("s")) == "../../../host/sfile")
    }) { _ in [[.symlink("s", to: "../../../host/sfile"), .hardlink("h", to: "s")], [.file("h", "pwned")]] },
]

@Suite("Layer safety")
struct LayerSafetyTests {
    @Test("removeTree does not follow symlinks or hardlinks out of the tree")
    func removeTreeStaysInside() throws {
        try withScratch { s in
            let env = SafetyEnv(scratch: s.path)
            setUpSentinels(env)
            let before = snapshotOutside(env)
            let r = env.root
            FS.symlink("\(r)/abs", to: env.sdir)
            FS.symlink("\(r)/rel", to: "../../../host")
            FS.hardlink("\(r)/hl", to: env.sfile)
            FS.mkdir("\(r)/locked")
            FS.write("\(r)/locked/big", String(repeating: "x", count: 100_000))
            FS.mkdir("\(r)/locked/inner")
            FS.symlink("\(r)/locked/inner/up", to: env.host) // never "/": a bug here must not hurt the host
            FS.chmod("\(r)/locked/inner", 0o000)
            FS.chmod("\(r)/locked", 0o000)
            let freed = try rootOps.removeTree(r)
            #expect(!FS.exists(r))
            #expect(freed >= 100_000, "freed \(freed) bytes")
            #expect(FS.text(env.sfile) == SafetyEnv.sentinelText)
            #expect(FS.lstat(env.sfile)?.st_nlink == 1)
            #expect(FS.list(env.sdir) == ["keep"])
            #expect(try rootOps.removeTree(r) == 0, "removing what is not there frees nothing")
            var after = snapshotOutside(env)
            after["\(s.path)/deep/er"] = nil // its mtime changed: the root was removed from it
            var expected = before
            expected["\(s.path)/deep/er"] = nil
            #expect(after == expected)
        }
    }

    @Test("malicious layer stays in the root", arguments: safetyCases, [TreeKind.plain, .overlay])
    func maliciousLayer(_ c: SafetyCase, _ tree: TreeKind) throws {
        withScratch { blobs in
            withScratch { s in
                let env = SafetyEnv(scratch: s.path)
                setUpSentinels(env)
                let before = snapshotOutside(env)
                let failure = applyLayers(c.layers(env), to: env.root, tree: tree, in: blobs)

                // The sentinels: content, mode, mtime, link count, and the sentinel dir's entries.
                #expect(FS.text(env.sfile) == SafetyEnv.sentinelText)
                #expect(FS.perm(env.sfile) == SafetyEnv.sentinelMode)
                #expect(FS.mtime(env.sfile) == SafetyEnv.sentinelMtime)
                #expect(FS.lstat(env.sfile)?.st_nlink == 1)
                #expect(FS.list(env.sdir) == ["keep"])
                #expect(FS.text("\(env.sdir)/keep") == "keep me")
                #expect(FS.mtime(env.sdir) == SafetyEnv.sentinelMtime)
                #expect(FS.getxattr(env.sdir, "user.overlay.opaque") == nil)

                // Nothing else outside the root changed: no entry appeared, vanished or changed.
                let after = snapshotOutside(env)
                #expect(Set(after.keys) == Set(before.keys), "entries appeared or vanished outside the root")
                for (p, st) in before where after[p] != nil && after[p] != st {
                    Issue.record("\(p) changed outside the root: \(st) -> \(after[p]!)")
                }

                switch c.outcome(tree) {
                case .confined(let check):
                    #expect(failure == nil, "apply failed: \(failure ?? "")")
                    if failure == nil { check(env) }
                case .fails(let parts):
                    #expect(failure != nil, "apply succeeded; expected an error mentioning \(parts)")
                    if let failure {
                        for part in parts {
                            #expect(failure.contains(part), "error \"\(failure)\" does not mention \"\(part)\"")
                        }
                    }
                }
            }
        }
    }
}
