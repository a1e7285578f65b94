// Test support for the layer tests: a small ustar/pax writer for crafting arbitrary (also
// malicious) tar streams byte by byte, compression through the system gzip/zstd, scratch
// directories, and thin wrappers over the file system calls the assertions need.
import CSysShims
import Errors
import Foundation
import HostOS
@testable import Layers

// MARK: - Tar entries

/// One tar entry, written exactly as given: names are not cleaned, link targets are not
/// checked, so a test can describe hostile input.
struct TarEntry: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case file, hardlink, symlink, char, block, dir, fifo

        var typeflag: UInt8 {
            switch self {
            case .file: return UInt8(ascii: "0")
            case .hardlink: return UInt8(ascii: "1")
            case .symlink: return UInt8(ascii: "2")
            case .char: return UInt8(ascii: "3")
            case .block: return UInt8(ascii: "4")
            case .dir: return UInt8(ascii: "5")
            case .fifo: return UInt8(ascii: "6")
            }
        }
    }

    var name: String
    var kind: Kind
    var mode: UInt32
    var uid: UInt32 = 0
    var gid: UInt32 = 0
    var mtime: Int64 = 1_600_000_000
    var linkname: String = ""
    var content: [UInt8] = []
    var devmajor: UInt32 = 0
    var devminor: UInt32 = 0
    /// Extra pax records (in order), e.g. ("SCHILY.xattr.user.x", value). Records for names
    /// and link targets longer than the ustar fields are added automatically.
    var pax: [PaxRecord] = []
    /// Overrides the header's size field (for entries with a sparse map or lying sizes).
    var sizeOverride: Int? = nil

    var description: String { name }

    static func file(_ name: String, _ text: String = "", mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
                     mtime: Int64 = 1_600_000_000) -> TarEntry {
        TarEntry(name: name, kind: .file, mode: mode, uid: uid, gid: gid, mtime: mtime, content: Array(text.utf8))
    }

    static func file(_ name: String, bytes: [UInt8], mode: UInt32 = 0o644) -> TarEntry {
        TarEntry(name: name, kind: .file, mode: mode, content: bytes)
    }

    static func dir(_ name: String, mode: UInt32 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0,
                    mtime: Int64 = 1_600_000_000) -> TarEntry {
        TarEntry(name: name, kind: .dir, mode: mode, uid: uid, gid: gid, mtime: mtime)
    }

    static func symlink(_ name: String, to target: String, uid: UInt32 = 0, gid: UInt32 = 0) -> TarEntry {
        TarEntry(name: name, kind: .symlink, mode: 0o777, uid: uid, gid: gid, linkname: target)
    }

    static func hardlink(_ name: String, to target: String) -> TarEntry {
        TarEntry(name: name, kind: .hardlink, mode: 0o644, linkname: target)
    }

    static func char(_ name: String, major: UInt32, minor: UInt32, mode: UInt32 = 0o666) -> TarEntry {
        TarEntry(name: name, kind: .char, mode: mode, devmajor: major, devminor: minor)
    }

    static func block(_ name: String, major: UInt32, minor: UInt32, mode: UInt32 = 0o660) -> TarEntry {
        TarEntry(name: name, kind: .block, mode: mode, devmajor: major, devminor: minor)
    }

    static func fifo(_ name: String, mode: UInt32 = 0o644) -> TarEntry {
        TarEntry(name: name, kind: .fifo, mode: mode)
    }

    /// The entry with an extended attribute (pax SCHILY.xattr.NAME).
    func xattr(_ name: String, _ value: [UInt8]) -> TarEntry {
        var e = self
        e.pax.append(PaxRecord("SCHILY.xattr." + name, value))
        return e
    }

    func xattr(_ name: String, _ value: String) -> TarEntry { xattr(name, Array(value.utf8)) }
}

struct PaxRecord: Sendable {
    var key: String
    var value: [UInt8]
    init(_ key: String, _ value: [UInt8]) {
        self.key = key
        self.value = value
    }
    init(_ key: String, _ value: String) { self.init(key, Array(value.utf8)) }

    /// "<len> <key>=<value>\n", where len counts the whole record including itself.
    var encoded: [UInt8] {
        let body = key.utf8.count + value.count + 3 // ' ', '=', '\n'
        var len = body + 1
        while String(len).utf8.count + body != len { len = body + String(len).utf8.count }
        return Array("\(len) \(key)=".utf8) + value + [0x0a]
    }
}

// MARK: - Writing tar streams

enum TarBuilder {
    static let block = 512

    /// The tar bytes and the offset of each entry's own (ustar) header, for corrupting.
    struct Output {
        var bytes: [UInt8]
        var headerOffsets: [Int]
    }

    /// A tar stream: each entry (preceded by a pax header when it needs one), then two zero
    /// blocks; `recordSize` > 0 pads the whole stream to a multiple of it (tar's 10240).
    static func build(_ entries: [TarEntry], recordSize: Int = 0) -> Output {
        var out: [UInt8] = []
        var offsets: [Int] = []
        for e in entries {
            var records = e.pax
            let nameBytes = Array(e.name.utf8)
            let linkBytes = Array(e.linkname.utf8)
            if nameBytes.count > 100 { records.insert(PaxRecord("path", nameBytes), at: 0) }
            if linkBytes.count > 100 { records.insert(PaxRecord("linkpath", linkBytes), at: 0) }
            if e.uid > 0o7777777 { records.append(PaxRecord("uid", String(e.uid))) }
            if e.gid > 0o7777777 { records.append(PaxRecord("gid", String(e.gid))) }
            if !records.isEmpty {
                let data = records.flatMap(\.encoded)
                let base = nameBytes.split(separator: UInt8(ascii: "/")).last.map(Array.init) ?? []
                let paxName = Array("PaxHeaders.0/".utf8) + base.prefix(80)
                out += header(name: paxName, mode: 0o644, uid: 0, gid: 0, size: data.count, mtime: e.mtime,
                              typeflag: UInt8(ascii: "x"), linkname: [], devmajor: 0, devminor: 0)
                out += padded(data)
            }
            offsets.append(out.count)
            let size = e.sizeOverride ?? (e.kind == .file ? e.content.count : 0)
            out += header(name: Array(nameBytes.prefix(100)), mode: e.mode, uid: min(e.uid, 0o7777777),
                          gid: min(e.gid, 0o7777777), size: size, mtime: e.mtime, typeflag: e.kind.typeflag,
                          linkname: Array(linkBytes.prefix(100)), devmajor: e.devmajor, devminor: e.devminor)
            out += padded(e.content)
        }
        out += [UInt8](repeating: 0, count: 2 * block)
        if recordSize > 0, out.count % recordSize != 0 {
            out += [UInt8](repeating: 0, count: recordSize - out.count % recordSize)
        }
        return Output(bytes: out, headerOffsets: offsets)
    }

    static func bytes(_ entries: [TarEntry], recordSize: Int = 0) -> [UInt8] {
        build(entries, recordSize: recordSize).bytes
    }

    static func padded(_ data: [UInt8]) -> [UInt8] {
        let rem = data.count % block
        return rem == 0 ? data : data + [UInt8](repeating: 0, count: block - rem)
    }

    /// `value` in octal, zero-padded to `width - 1` digits and NUL-terminated.
    static func octal(_ value: UInt64, width: Int) -> [UInt8] {
        var s = String(value, radix: 8)
        precondition(s.count <= width - 1, "\(value) does not fit a \(width)-byte tar field")
        s = String(repeating: "0", count: width - 1 - s.count) + s
        return Array(s.utf8) + [0]
    }

    static func header(name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, size: Int, mtime: Int64,
                       typeflag: UInt8, linkname: [UInt8], devmajor: UInt32, devminor: UInt32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        func put(_ bytes: [UInt8], at offset: Int, max: Int) {
            for (i, b) in bytes.prefix(max).enumerated() { h[offset + i] = b }
        }
        put(name, at: 0, max: 100)
        put(octal(UInt64(mode), width: 8), at: 100, max: 8)
        put(octal(UInt64(uid), width: 8), at: 108, max: 8)
        put(octal(UInt64(gid), width: 8), at: 116, max: 8)
        put(octal(UInt64(size), width: 12), at: 124, max: 12)
        put(octal(UInt64(max(mtime, 0)), width: 12), at: 136, max: 12)
        put([UInt8](repeating: 0x20, count: 8), at: 148, max: 8) // checksum placeholder: spaces
        h[156] = typeflag
        put(linkname, at: 157, max: 100)
        put(Array("ustar\0".utf8), at: 257, max: 6)
        put(Array("00".utf8), at: 263, max: 2)
        put(octal(UInt64(devmajor), width: 8), at: 329, max: 8)
        put(octal(UInt64(devminor), width: 8), at: 337, max: 8)
        put(checksumField(h), at: 148, max: 8)
        return h
    }

    /// Six octal digits, NUL, space: the sum of the header's bytes with the field as spaces.
    static func checksumField(_ h: [UInt8]) -> [UInt8] {
        let sum = h.reduce(0) { $0 + UInt64($1) }
        return octal(sum, width: 7) + [0x20]
    }

    /// A pax "GNU.sparse" 1.0 entry: `segments` (offset, bytes) of data in a file of
    /// `realSize` bytes; the rest are holes.
    static func sparseFile(_ name: String, realSize: Int, segments: [(offset: Int, data: [UInt8])],
                           mode: UInt32 = 0o644) -> TarEntry {
        var map = "\(segments.count + 1)\n"
        for s in segments { map += "\(s.offset)\n\(s.data.count)\n" }
        map += "\(realSize)\n0\n"
        let mapBlock = padded(Array(map.utf8))
        let data = mapBlock + segments.flatMap(\.data)
        var e = TarEntry(name: "GNUSparseFile.0/" + name, kind: .file, mode: mode, content: data)
        e.pax = [PaxRecord("GNU.sparse.major", "1"), PaxRecord("GNU.sparse.minor", "0"),
                 PaxRecord("GNU.sparse.name", name), PaxRecord("GNU.sparse.realsize", String(realSize))]
        return e
    }
}

// MARK: - Compression through the system tools

enum Tools {
    static func find(_ name: String) -> String? { Command.find(name) }

    static var haveZstd: Bool { find("zstd") != nil }

    /// Run `tool args`, stdout to `stdoutPath` (or captured). Returns (status, captured stdout).
    @discardableResult
    static func run(_ tool: String, _ args: [String], stdoutTo stdoutPath: String? = nil) throws -> (Int32, String) {
        guard let exe = find(tool) else { throw CtrError.internal("\(tool) not found") }
        guard let stdoutPath else {
            let out = try Command(exe, args).run()
            return (out.status, out.stdoutText)
        }
        let fd = open(stdoutPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CtrError.internal("cannot create \(stdoutPath)") }
        defer { close(fd) }
        return (try Command(exe, args, fds: [-1, fd, -1]).spawn().wait().code, "")
    }

    static func gzip(_ input: String, to output: String) throws {
        let (status, _) = try run("gzip", ["-n", "-c", input], stdoutTo: output)
        if status != 0 { throw CtrError.internal("gzip failed: \(status)") }
    }

    static func zstd(_ input: String, to output: String) throws {
        let (status, _) = try run("zstd", ["-q", "-c", input], stdoutTo: output)
        if status != 0 { throw CtrError.internal("zstd failed: \(status)") }
    }

    /// Entry names of a (compressed) tar, as GNU tar lists them.
    static func tarList(_ blob: String) throws -> [String] {
        let (status, out) = try run("tar", ["-tf", blob])
        if status != 0 { throw CtrError.internal("tar -tf \(blob) failed: \(status)") }
        return out.split(separator: "\n").map(String.init)
    }
}

// MARK: - Scratch directories

/// A fresh directory under /var/tmp (a real disk file system: xattrs, devices, holes).
final class Scratch: @unchecked Sendable {
    let path: String

    init() {
        var template = Array("/var/tmp/ctr-layertest-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: p)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ rel: String) -> String { "\(path)/\(rel)" }

    /// Create a directory (and parents) under the scratch dir.
    @discardableResult
    func dir(_ rel: String) -> String {
        let p = sub(rel)
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// Write a tar to a file, optionally compressed; returns the blob's path.
    func blob(_ tar: [UInt8], _ compression: Compression = .none, name: String = "layer") throws -> String {
        let tarPath = sub("\(name).tar")
        try Data(tar).write(to: URL(fileURLWithPath: tarPath))
        switch compression {
        case .none:
            return tarPath
        case .gzip:
            try Tools.gzip(tarPath, to: tarPath + ".gz")
            return tarPath + ".gz"
        case .zstd:
            try Tools.zstd(tarPath, to: tarPath + ".zst")
            return tarPath + ".zst"
        }
    }

    func blob(_ entries: [TarEntry], _ compression: Compression = .none, name: String = "layer") throws -> String {
        try blob(TarBuilder.bytes(entries), compression, name: name)
    }
}

/// Run `body` with a scratch directory that is removed afterwards.
func withScratch<T>(_ body: (Scratch) throws -> T) rethrows -> T {
    let s = Scratch()
    defer { s.remove() }
    return try body(s)
}

// MARK: - File system helpers

enum FS {
    static func lstat(_ p: String) -> stat? {
        var st = stat()
        return Glibc.lstat(p, &st) == 0 ? st : nil
    }

    static func exists(_ p: String) -> Bool { lstat(p) != nil }

    static func type(_ p: String) -> mode_t? { lstat(p).map { $0.st_mode & S_IFMT } }
    static func isDir(_ p: String) -> Bool { type(p) == S_IFDIR }
    static func isFile(_ p: String) -> Bool { type(p) == S_IFREG }
    static func isSymlink(_ p: String) -> Bool { type(p) == S_IFLNK }

    /// "uid:gid" of `p` (not following a final symlink).
    static func owner(_ p: String) -> String? { lstat(p).map { "\($0.st_uid):\($0.st_gid)" } }

    static func perm(_ p: String) -> mode_t? { lstat(p).map { $0.st_mode & 0o7777 } }

    static func read(_ p: String) -> [UInt8]? {
        FileManager.default.contents(atPath: p).map { [UInt8]($0) }
    }

    static func text(_ p: String) -> String? {
        guard isFile(p) else { return nil }
        return read(p).map { String(decoding: $0, as: UTF8.self) }
    }

    static func write(_ p: String, _ text: String, mode: mode_t = 0o644) {
        write(p, bytes: Array(text.utf8), mode: mode)
    }

    static func write(_ p: String, bytes: [UInt8], mode: mode_t = 0o644) {
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode)
        precondition(fd >= 0, "open \(p): \(String(cString: strerror(errno)))")
        bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                precondition(n > 0)
                off += n
            }
        }
        fchmod(fd, mode)
        close(fd)
    }

    static func mkdir(_ p: String, mode: mode_t = 0o755) {
        precondition(Glibc.mkdir(p, 0o700) == 0, "mkdir \(p): \(String(cString: strerror(errno)))")
        chmod(p, mode)
    }

    static func symlink(_ p: String, to target: String) {
        precondition(Glibc.symlink(target, p) == 0, "symlink \(p): \(String(cString: strerror(errno)))")
    }

    static func hardlink(_ p: String, to existing: String) {
        precondition(Glibc.link(existing, p) == 0, "link \(p): \(String(cString: strerror(errno)))")
    }

    static func readlink(_ p: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = Glibc.readlink(p, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func lchown(_ p: String, _ uid: uid_t, _ gid: gid_t) {
        precondition(Glibc.lchown(p, uid, gid) == 0, "lchown \(p): \(String(cString: strerror(errno)))")
    }

    static func chmod(_ p: String, _ mode: mode_t) {
        precondition(Glibc.chmod(p, mode) == 0, "chmod \(p): \(String(cString: strerror(errno)))")
    }

    /// Set atime and mtime (whole seconds) without following a final symlink.
    static func setMtime(_ p: String, _ seconds: Int) {
        var ts = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        precondition(utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW) == 0,
                     "utimensat \(p): \(String(cString: strerror(errno)))")
    }

    static func mtime(_ p: String) -> Int? { lstat(p).map { Int($0.st_mtim.tv_sec) } }

    static func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major), mi = UInt64(minor)
        return dev_t((mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xff) << 12) | ((ma & ~0xfff) << 32))
    }

    static func devNumbers(_ d: dev_t) -> (major: UInt32, minor: UInt32) {
        let d = UInt64(d)
        let major = ((d >> 8) & 0xfff) | ((d >> 32) & ~0xfff)
        let minor = (d & 0xff) | ((d >> 12) & ~0xff)
        return (UInt32(truncatingIfNeeded: major), UInt32(truncatingIfNeeded: minor))
    }

    static func mknod(_ p: String, type: mode_t, mode: mode_t, major: UInt32 = 0, minor: UInt32 = 0) -> Bool {
        Glibc.mknod(p, type | mode, makedev(major, minor)) == 0
    }

    /// Is `p` an overlay whiteout: a 0:0 character device?
    static func isWhiteout(_ p: String) -> Bool {
        guard let st = lstat(p) else { return false }
        return st.st_mode & S_IFMT == S_IFCHR && st.st_rdev == 0
    }

    static func getxattr(_ p: String, _ name: String) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = csys_lgetxattr(p, name, &buf, buf.count)
        return n < 0 ? nil : Array(buf.prefix(n))
    }

    @discardableResult
    static func setxattr(_ p: String, _ name: String, _ value: [UInt8]) -> Bool {
        csys_lsetxattr(p, name, value, value.count) == 0
    }

    /// Sorted names in a directory (no "." and "..").
    static func list(_ p: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: p)) ?? []).sorted()
    }

    static func inode(_ p: String) -> ino_t? { lstat(p)?.st_ino }
}

// MARK: - Applying

let rootOps = LayerOps(mapping: .root)

/// The message of a layer error, or a description of anything else thrown.
func errorMessage(_ error: any Error) -> String {
    if let e = error as? CtrError, e.code == .system { return e.message }
    return String(describing: error)
}

/// Apply each layer in turn (uncompressed blobs) to `root`. Returns the error message of the
/// first failing layer, or nil when all applied.
func applyLayers(_ layers: [[TarEntry]], to root: String, tree: TreeKind, in scratch: Scratch,
                 ops: LayerOps = rootOps) -> String? {
    for (i, layer) in layers.enumerated() {
        do {
            let blob = try scratch.blob(layer, name: "layer\(i)")
            _ = try ops.apply(blob: blob, to: root, tree: tree)
        } catch {
            return errorMessage(error)
        }
    }
    return nil
}

/// Read a whole file as Data (for hashing).
func fileData(_ p: String) -> Data { FileManager.default.contents(atPath: p) ?? Data() }

// MARK: - Acting as an unprivileged user (this thread only)

/// Runs `body` on the calling thread with file system uid/gid `uid`/`gid`. Changing the fsuid
/// away from 0 clears CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID
/// and CAP_MKNOD from the thread's effective set (capabilities(7)), so file operations see
/// what a user without privileges sees, while other threads (other tests) stay root. The body
/// must not suspend. Returns nil (after printing why) when this is not possible here.
enum Unprivileged {
    private typealias IDFn = @convention(c) (UInt32) -> Int32

    private static func fn(_ name: String) -> IDFn? {
        guard let h = dlopen(nil, RTLD_NOW), let p = dlsym(h, name) else { return nil }
        return unsafeBitCast(p, to: IDFn.self)
    }

    static func run<T>(uid: UInt32, gid: UInt32, _ body: () throws -> T) rethrows -> T? {
        guard getuid() == 0, let setfsuid = fn("setfsuid"), let setfsgid = fn("setfsgid") else {
            print("skipping: acting as another user needs root and setfsuid")
            return nil
        }
        _ = setfsgid(gid)
        _ = setfsuid(uid)
        defer {
            _ = setfsuid(0)
            _ = setfsgid(0)
        }
        // setfsuid(-1) changes nothing and returns the current fsuid.
        guard setfsuid(UInt32.max) == Int32(bitPattern: uid), setfsgid(UInt32.max) == Int32(bitPattern: gid) else {
            print("skipping: setfsuid did not take effect")
            return nil
        }
        return try body()
    }
}
