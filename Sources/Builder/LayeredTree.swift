import CSysShims
import Foundation
import struct HostOS.IDRange
import enum HostOS.IDMapping
import enum Layers.TreeKind

/// A read-only view of a root made of unpacked layer dirs (topmost first, overlay form:
/// whiteouts are 0:0 character devices, opaque dirs carry an overlay "opaque" xattr), or of a
/// plain directory (the build context). Paths are relative ("a/b"), cleaned by the caller.
struct LayeredTree {
    let dirs: [String]          // topmost first
    let overlayForm: Bool
    /// For what this user may not read (layers of a rootless build); nil: plain access only.
    var opener: PrivilegedOpener?

    init(layers: [String], opener: PrivilegedOpener? = nil) { dirs = layers; overlayForm = true; self.opener = opener }
    init(plain dir: String, opener: PrivilegedOpener? = nil) { dirs = [dir]; overlayForm = false; self.opener = opener }

    /// lstat, through the opener when this user may not look.
    func lst(_ path: String, _ st: inout stat) -> Bool {
        if Glibc.lstat(path, &st) == 0 { return true }
        if errno == EACCES, let opener { return opener.lstat(path, &st) }
        return false
    }

    func readlink(_ path: String) -> String? {
        if let t = try? FileManager.default.destinationOfSymbolicLink(atPath: path) { return t }
        return opener?.readlink(path)
    }

    struct Entry {
        var hostPath: String
        var st: stat
        var isDir: Bool { (st.st_mode & S_IFMT) == S_IFDIR }
        var isSymlink: Bool { (st.st_mode & S_IFMT) == S_IFLNK }
        var isRegular: Bool { (st.st_mode & S_IFMT) == S_IFREG }
    }

    static func isWhiteout(_ st: stat, path: String) -> Bool { TreeKind.isWhiteout(st, path: path) }

    func isOpaque(_ path: String) -> Bool {
        var v = [UInt8](repeating: 0, count: 4)
        for name in ["user.overlay.opaque", "trusted.overlay.opaque"] {
            if csys_lgetxattr(path, name, &v, 4) > 0 && v[0] == UInt8(ascii: "y") { return true }
            if errno == EACCES, let opener, opener.xattr(path, name)?.first == UInt8(ascii: "y") { return true }
        }
        return false
    }

    /// The entry at a path (not following a final symlink), or nil.
    func lookup(_ rel: String) -> Entry? {
        let comps = rel.split(separator: "/").map(String.init)
        if comps.isEmpty {
            var st = stat()
            guard let d = dirs.first, lst(d, &st) else { return nil }
            return Entry(hostPath: d, st: st)
        }
        layerLoop: for d in dirs {
            // component by component (a symlink in a layer is never followed on the host); a
            // whiteout hides the lower layers, and so does an opaque dir on the way
            var path = d
            var opaque = false
            for (i, c) in comps.enumerated() {
                path += "/" + c
                var st = stat()
                if !lst(path, &st) {
                    if opaque { return nil }
                    continue layerLoop
                }
                if overlayForm && Self.isWhiteout(st, path: path) { return nil }
                if i == comps.count - 1 { return Entry(hostPath: path, st: st) }
                // a file (or symlink: callers resolve those first) here hides the lower layers' dir
                if (st.st_mode & S_IFMT) != S_IFDIR { return nil }
                if overlayForm && isOpaque(path) { opaque = true }
            }
        }
        return nil
    }

    /// Resolve symlinks inside the root (never leaving it): the cleaned relative path.
    func resolve(_ rel: String, followFinal: Bool = true, depth: Int = 0) -> String? {
        if depth > 40 { return nil }
        var done: [String] = []
        let comps = rel.split(separator: "/").map(String.init)
        for (i, c) in comps.enumerated() {
            if c == "." || c.isEmpty { continue }
            if c == ".." { if !done.isEmpty { done.removeLast() }; continue }
            let candidate = (done + [c]).joined(separator: "/")
            guard let e = lookup(candidate) else {
                done.append(c)
                continue
            }
            let isLast = i == comps.count - 1
            if e.isSymlink && (!isLast || followFinal) {
                guard let target = readlink(e.hostPath) else { return nil }
                let base = target.hasPrefix("/") ? "" : done.joined(separator: "/")
                let rest = comps[(i + 1)...].joined(separator: "/")
                let joined = [base, target, rest].filter { !$0.isEmpty }.joined(separator: "/")
                return resolve(joined, followFinal: followFinal, depth: depth + 1)
            }
            done.append(c)
        }
        return done.joined(separator: "/")
    }

    /// Names in a directory, merged across layers (whiteouts and opaque dirs honoured), sorted.
    func list(_ rel: String) -> [String] {
        var seen = Set<String>(), hidden = Set<String>()
        let comps = rel.split(separator: "/").map(String.init)
        for d in dirs {
            var path = d
            var ok = true
            for c in comps {
                path += "/" + c
                var st = stat()
                if !lst(path, &st) || (st.st_mode & S_IFMT) != S_IFDIR { ok = false; break }
            }
            guard ok else {
                // a whiteout of the dir itself hides lower layers
                var st = stat()
                if overlayForm && lst(path, &st) && Self.isWhiteout(st, path: path) { break }
                continue
            }
            guard let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? opener?.list(path) else { continue }
            for n in names where !hidden.contains(n) && !seen.contains(n) {
                var st = stat()
                if overlayForm && lst(path + "/" + n, &st) && Self.isWhiteout(st, path: path + "/" + n) { hidden.insert(n); continue }
                if overlayForm && n.hasPrefix(".wh.") { continue }
                seen.insert(n)
            }
            if overlayForm && isOpaque(path) { break }
        }
        return seen.sorted()
    }
}

extension LayeredTree {
    /// A text file of the tree (`/etc/passwd`), symlinks resolved inside it; nil when it is not
    /// a regular file there.
    func text(_ path: String) -> String? {
        guard let r = resolve(String(path.drop { $0 == "/" })), let e = lookup(r), e.isRegular else { return nil }
        return try? String(contentsOfFile: e.hostPath, encoding: .utf8)
    }
}

/// Files of an image read from its unpacked layers (topmost first), as the build reads them:
/// whiteouts hide, symlinks resolve inside the image. Nothing is run.
public enum ImageFiles {
    public static func text(_ path: String, layers: [String]) -> String? {
        LayeredTree(layers: layers).text(path)
    }
}
