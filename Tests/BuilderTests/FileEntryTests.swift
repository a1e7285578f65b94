import Testing
@testable import Builder
import Layers

/// One entry per path in a COPY/ADD layer (the last writer wins) and hard links kept
/// (issue 11, point 10).
@Suite struct FileEntryTests {
    func file(_ p: String, _ src: String, inode: UInt64? = nil) -> FileEntry {
        FileEntry(path: p, kind: .file(hostPath: src), mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 1,
                  inode: inode.map { FileEntry.Inode(dev: 1, ino: $0) })
    }
    func dir(_ p: String) -> FileEntry { FileEntry(path: p, kind: .dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0) }

    func describe(_ es: [FileEntry]) -> [String] {
        es.map { e in
            switch e.kind {
            case .file(let s): return "\(e.path)=\(s)"
            case .dir: return "\(e.path)/"
            case .hardlink(let t): return "\(e.path)->\(t)"
            case .symlink(let t): return "\(e.path)@\(t)"
            case .bytes: return "\(e.path)#"
            }
        }
    }

    @Test func lastWriterWins() {
        // the same file twice, a directory replaced by a file (its contents go), a file
        // replaced by a directory with contents
        let out = FileEntry.lastWriterWins([
            file("d/s1", "one"), dir("d/x"), file("d/x/in", "old"), file("d/s1", "again"),
            file("d/x", "file"), file("d/y", "f"), dir("d/y"), file("d/y/z", "new"),
        ])
        #expect(describe(out).sorted() == ["d/s1=again", "d/x=file", "d/y/", "d/y/z=new"])
    }

    @Test func hardLinksOfTheFirstInPathOrder() {
        let out = FileEntry.linkingHardLinks([
            file("b/two", "x", inode: 7), file("a/one", "x", inode: 7), file("c", "y", inode: 8), file("z", "x", inode: 7),
            file("solo", "s"),
        ])
        #expect(describe(out) == ["a/one=x", "b/two->a/one", "c=y", "solo=s", "z->a/one"])
        #expect(out.first { $0.path == "b/two" }?.size == 0)
    }
}
