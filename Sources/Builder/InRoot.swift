import CSysShims
import Errors
import Foundation
import HostOS

/// Writes into a stage's tree from outside it (the chroot and container levels): every path is
/// resolved inside the tree (openat2 RESOLVE_IN_ROOT), so a symlink the image ships, or one a
/// RUN step leaves (`ln -s / /run`), cannot point a write or an unlink at the host's files.
struct InRoot: ~Copyable {
    let root: String
    let fd: Int32

    init(_ root: String) throws {
        self.root = root
        fd = try valueOrErrno("open", "cannot open \(root)") { open(root, O_PATH | O_DIRECTORY | O_CLOEXEC) }
    }

    deinit { close(fd) }

    private static func split(_ rel: String) -> (dir: String, base: String) {
        let parts = rel.split(separator: "/").map(String.init)
        return (parts.dropLast().joined(separator: "/"), parts.last ?? "")
    }

    /// The directory `rel` (resolved in the root), made with its parents where missing.
    /// The caller closes the fd.
    func directory(_ rel: String, create: Bool) throws -> Int32 {
        var created: [String] = []
        return try directory(rel, create: create, created: &created)
    }

    /// As above; `created` gets the dirs made, outermost first.
    func directory(_ rel: String, create: Bool, created: inout [String]) throws -> Int32 {
        var fd = try valueOrErrno("open", "cannot open \(root)") { csys_openat2_in_root(self.fd, "/", O_PATH | O_DIRECTORY, 0) }
        var sofar = ""
        for comp in rel.split(separator: "/") where comp != "." {
            sofar += "/" + comp
            var next = csys_openat2_in_root(self.fd, sofar, O_PATH | O_DIRECTORY, 0)
            if next < 0 && errno == ENOENT && create && comp != ".." {
                if mkdirat(fd, String(comp), 0o755) == 0 {
                    created.append(String(sofar.dropFirst()))
                } else if errno != EEXIST {
                    let e = errno
                    close(fd)
                    throw CtrError.system("mkdir", errno: e, "cannot create \(sofar) in \(root)")
                }
                next = csys_openat2_in_root(self.fd, sofar, O_PATH | O_DIRECTORY, 0)
            }
            let e = errno
            close(fd)
            guard next >= 0 else { throw CtrError.system("open", errno: e, "cannot open \(sofar) in \(root)") }
            fd = next
        }
        return fd
    }

    /// Whether `rel` is there (resolved in the root) and of `type` (S_IFDIR, S_IFREG, …).
    func exists(_ rel: String, type: mode_t? = nil) -> Bool {
        let fd = csys_openat2_in_root(self.fd, rel, O_PATH, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        return type.map { (st.st_mode & S_IFMT) == $0 } ?? true
    }

    /// Replace the file `rel` by `data` (a new inode: a hard link elsewhere in the tree keeps
    /// its content). What is there in its place, a symlink included, goes; a directory stays,
    /// and so does the error.
    func writeFile(_ rel: String, _ data: Data, mode: mode_t = 0o644) throws {
        var created: [String] = []
        try writeFile(rel, data, mode: mode, created: &created)
    }

    /// As above; `created` gets the dirs made for it, outermost first.
    func writeFile(_ rel: String, _ data: Data, mode: mode_t = 0o644, created: inout [String]) throws {
        let (dir, base) = Self.split(rel)
        let dfd = try directory(dir, create: true, created: &created)
        defer { close(dfd) }
        let tmp = ".ctr-\(getpid())-\(base)"
        unlinkat(dfd, tmp, 0)
        let fd = try valueOrErrno("write", "cannot create \(rel) in \(root)") {
            openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        var ok = true
        data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; return }
                off += n
            }
        }
        let e = errno
        fchmod(fd, mode)
        close(fd)
        guard ok, renameat(dfd, tmp, dfd, base) == 0 else {
            let err = ok ? errno : e
            unlinkat(dfd, tmp, 0)
            throw CtrError.system("write", errno: err, "cannot write \(rel) in \(root)")
        }
    }

    /// Remove the file `rel` (not a directory); gone already is fine.
    func remove(_ rel: String) {
        let (dir, base) = Self.split(rel)
        guard let dfd = try? directory(dir, create: false) else { return }
        unlinkat(dfd, base, 0)
        close(dfd)
    }

    /// Remove the directory `rel` if it is empty.
    func removeEmptyDirectory(_ rel: String) {
        let (dir, base) = Self.split(rel)
        guard let dfd = try? directory(dir, create: false) else { return }
        unlinkat(dfd, base, AT_REMOVEDIR)
        close(dfd)
    }

    /// A character device `rel`, mode 0666, or an empty file where mknod is refused. Something
    /// already there stays.
    func device(_ rel: String, major: UInt32, minor: UInt32, mknod allowed: Bool) throws {
        let (dir, base) = Self.split(rel)
        let dfd = try directory(dir, create: true)
        defer { close(dfd) }
        var st = stat()
        if fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 { return }
        if allowed && mknodat(dfd, base, S_IFCHR | 0o666, dev_t((UInt64(major) << 8) | UInt64(minor))) == 0 {
            fchmodat(dfd, base, 0o666, 0)
            return
        }
        let fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
        if fd >= 0 { fchmod(fd, 0o666); close(fd) }
    }
}
