import CSysShims
import Errors
import Foundation

/// One entry of a layer made from files (COPY/ADD, `ctr append --add`).
public struct FileEntry: Sendable {
    public enum Kind: Sendable { case file(hostPath: String), bytes(Data), dir, symlink(String), hardlink(String) }
    public var path: String          // in the image, without the leading "/"
    public var kind: Kind
    public var mode: UInt32
    public var uid: Int64
    public var gid: Int64
    public var mtime: Int64
    public var size: UInt64
    /// The source file's device and inode when it has other hard links: the entries that
    /// share one are written as hard links of the first (as Docker keeps them).
    public var inode: Inode? = nil

    public struct Inode: Hashable, Sendable {
        public var dev: UInt64
        public var ino: UInt64
        public init(dev: UInt64, ino: UInt64) { self.dev = dev; self.ino = ino }
    }

    public init(path: String, kind: Kind, mode: UInt32, uid: Int64, gid: Int64, mtime: Int64, size: UInt64, inode: Inode? = nil) {
        (self.path, self.kind, self.mode, self.uid, self.gid, self.mtime, self.size, self.inode) = (path, kind, mode, uid, gid, mtime, size, inode)
    }

    public var isDir: Bool { if case .dir = kind { return true } else { return false } }

    /// One entry per path, the last writer winning, as copying the sources in turn leaves
    /// them (`COPY a "" b /d/` names a and b twice; two archives that ADD unpacks may hold the
    /// same paths). A tar layer must not hold a path twice (the image spec forbids it, podman
    /// refuses such an image). What a later non-directory replaces goes with its contents, and
    /// a later entry under an earlier non-directory replaces that.
    public static func lastWriterWins(_ entries: [FileEntry]) -> [FileEntry] {
        var at: [String: Int] = [:]
        var kept: [FileEntry?] = []
        kept.reserveCapacity(entries.count)
        for e in entries {
            // an earlier file or link where this one needs a directory goes
            var parent = e.path
            while let slash = parent.lastIndex(of: "/") {
                parent = String(parent[..<slash])
                if let i = at[parent], let p = kept[i], !p.isDir { kept[i] = nil; at[parent] = nil }
            }
            if let i = at[e.path], let old = kept[i] {
                kept[i] = nil
                if old.isDir && !e.isDir {
                    let prefix = e.path + "/"
                    for (j, k) in kept.enumerated() where k?.path.hasPrefix(prefix) == true {
                        at[k!.path] = nil
                        kept[j] = nil
                    }
                }
            }
            at[e.path] = kept.count
            kept.append(e)
        }
        return kept.compactMap { $0 }
    }

    /// Files that share a source inode become hard links of the first of them in path order
    /// (the order the layer is written in). Returns the entries in path order.
    public static func linkingHardLinks(_ entries: [FileEntry]) -> [FileEntry] {
        var sorted = entries.sorted { $0.path < $1.path }
        var first: [Inode: String] = [:]
        for i in sorted.indices {
            guard let ino = sorted[i].inode, case .file = sorted[i].kind else { continue }
            if let target = first[ino] {
                sorted[i].kind = .hardlink(target)
                sorted[i].size = 0
            } else {
                first[ino] = sorted[i].path
            }
        }
        return sorted
    }
}

/// Writes layers from `FileEntry` lists: the one tar writer of COPY/ADD and `ctr append`.
public enum LayerWriter {
    /// A plain tar of `entries`, in the order given, at `path` (mode 0600). mtimes are
    /// clamped to `clampMtime` (SOURCE_DATE_EPOCH); `.file` entries are read from the fd `open`
    /// gives (negative: errno says why).
    public static func tar(_ entries: [FileEntry], to path: String, clampMtime: Int64?,
                           open openFile: (String) -> Int32 = { Glibc.open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CtrError.errno("open", "cannot create \(path)") }
        var err = csys_error()
        guard let w = csys_tar_writer_open(fd, &err) else { close(fd); throw CtrError(err) }
        var ok = true
        var message = ""
        for e in entries {
            var src: Int32 = -1
            var te = csys_tar_entry()
            te.mode = e.mode
            te.uid = e.uid
            te.gid = e.gid
            te.mtime = clampMtime.map { min($0, e.mtime) } ?? e.mtime
            te.size = e.size
            var data = Data()
            var link = ""
            switch e.kind {
            case .dir: te.type = CChar(UInt8(ascii: "d"))
            case .symlink(let t): te.type = CChar(UInt8(ascii: "l")); link = t
            case .hardlink(let t): te.type = CChar(UInt8(ascii: "h")); link = t
            case .bytes(let d): te.type = CChar(UInt8(ascii: "f")); data = d
            case .file(let p):
                te.type = CChar(UInt8(ascii: "f"))
                src = openFile(p)
                if src < 0 { ok = false; message = "cannot read \(p): \(String(cString: strerror(errno)))"; break }
            }
            if !ok { break }
            let rc: Int32 = e.path.withCString { name in
                link.withCString { ln in
                    te.name = name
                    te.linkname = ln
                    if case .bytes = e.kind {
                        return data.withUnsafeBytes { raw in
                            te.data = raw.baseAddress  // nil for empty content: nothing is read
                            return csys_tar_add_entry(w, &te, -1)
                        }
                    }
                    return csys_tar_add_entry(w, &te, src)
                }
            }
            if src >= 0 { close(src) }
            if rc != 0 { ok = false; message = CtrError(csys_tar_writer_error(w).pointee).message; break }
        }
        let closed = csys_tar_writer_close(w, ok ? 1 : 0)
        close(fd)
        if !ok || closed != 0 { unlink(path); throw CtrError.invalid(message.isEmpty ? "cannot write the layer" : message) }
    }
}
