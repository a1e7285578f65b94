import CSysShims
import Errors
import Foundation
import Layers

/// What RUN --mount=type=bind shows of the build context: what COPY sees, nothing more. A
/// file .dockerignore excludes is not in the context (as in BuildKit, where it never leaves
/// the client), so no mount may show it: a mount of a directory that holds excluded files
/// shows a view of the context instead, made once per build of hard links (copies where the
/// kernel refuses a link) in the build's scratch dir and removed with it. The same walk that
/// COPY uses decides what the view holds.
///
/// A rootless `rw` mount is an overlay on the context; copying a file up to write it keeps its
/// owner, which fails (EOVERFLOW) when the owner or group has no id in the build's user
/// namespace (a file of yours whose group is root). Such files are copies in the view,
/// owned by you (the caller), so the step can write them.
extension BuildRun {
    /// Whether the owner or group of `st` has no id in the build's user namespace.
    func idsUnmapped(_ st: stat) -> Bool {
        let m = b.store.ops.mapping
        return m.containerUID(st.st_uid) == nil || m.containerGID(st.st_gid) == nil
    }

    /// A context path a mount may not name: .dockerignore excludes it (a directory with
    /// something a `!` pattern keeps is there, with only that in it).
    func excludedFromContext(_ rel: String, isDir: Bool) -> Bool {
        !rel.isEmpty && ignore.isExcluded(rel) && !(isDir && ignore.hasExceptions && ignore.mayContainIncluded(dir: rel))
    }

    /// The directory to mount for the context directory `r` (`dir`: its entry; `entries`: what
    /// the walk found below it; `hidden`: the walk left something out): the context's own
    /// when the mount would show it as it is, else the view's.
    func contextMountSource(_ r: String, _ dir: LayeredTree.Entry, entries: [FileEntry], hidden: Bool, rw: Bool) throws -> String {
        var unmapped = false
        if rw && b.store.ops.mapping != .root {
            unmapped = entries.contains { x in
                var st = stat()
                return lstat("\(dir.hostPath)/\(x.path)", &st) == 0 && idsUnmapped(st)
            }
        }
        if !hidden && !unmapped { return dir.hostPath }
        let view = try contextView()
        let path = r.isEmpty ? view : "\(view)/\(r)"
        guard access(path, F_OK) == 0 else { throw CtrError.build("\(r) is not in the build context (.dockerignore excludes everything in it)") }
        return path
    }

    /// The view of the whole context, made on first use and reused by every later step.
    func contextView() throws -> String {
        if let v = contextViewDir { return v }
        var entries: [FileEntry] = []
        try walk(LayeredTree(plain: context), "", into: "", fromContext: true, chown: nil, chmod: nil, &entries)
        let view = "\(tmpRoot)/context"
        guard mkdir(view, 0o700) == 0 else {
            throw CtrError.build("cannot create \(view): \(String(cString: strerror(errno)))")
        }
        let src = open(context, O_PATH | O_DIRECTORY | O_CLOEXEC)
        let dst = open(view, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        defer {
            if src >= 0 { close(src) }
            if dst >= 0 { close(dst) }
        }
        guard src >= 0, dst >= 0 else { throw CtrError.build("cannot open \(src < 0 ? context : view): \(String(cString: strerror(errno)))") }
        func add(_ rel: String, copy: Bool) throws {
            var err = csys_error()
            if csys_view_add(src, dst, rel, copy ? 1 : 0, &err) != 0 { throw CtrError.build("the build context: \(CtrError(err).message)") }
        }
        var dirs: [String] = []
        var made = Set<String>()
        for e in entries {
            // parents the walk does not give: an excluded dir holding what a `!` pattern keeps
            var parent = ""
            for c in e.path.split(separator: "/").dropLast() {
                parent = parent.isEmpty ? String(c) : parent + "/" + c
                if made.insert(parent).inserted {
                    try add(parent, copy: false)
                    dirs.append(parent)
                }
            }
            switch e.kind {
            case .dir:
                if made.insert(e.path).inserted {
                    try add(e.path, copy: false)
                    dirs.append(e.path)
                }
            case .file(let p):
                var st = stat()
                try add(e.path, copy: lstat(p, &st) == 0 && idsUnmapped(st))
            case .symlink, .hardlink:
                // (the context walk gives files; a hard link of another is still its own path here)
                try add(e.path, copy: false)
            case .bytes:
                continue
            }
        }
        // modes and times once the contents are in, deepest first (a 0555 dir takes nothing)
        for d in dirs.reversed() + [""] {
            var err = csys_error()
            if csys_view_finish_dir(src, dst, d, &err) != 0 { throw CtrError.build("the build context: \(CtrError(err).message)") }
        }
        contextViewDir = view
        return view
    }
}
