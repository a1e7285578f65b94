import CSysShims
import Errors
import Foundation
import HostOS

/// The representation of whiteouts in a directory tree.
public enum TreeKind: Sendable {
    /// A flat root filesystem: whiteouts delete what they name.
    case plain
    /// One layer for overlayfs: whiteouts are 0:0 character devices and opaque xattrs.
    case overlay

    var c: Int32 { self == .plain ? Int32(CSYS_TREE_PLAIN) : Int32(CSYS_TREE_OVERLAY) }

    /// Whether an entry of an overlay-form layer (`st` from lstat of `path`) is a whiteout: a 0:0
    /// character device, or overlayfs's other form (Linux 6.7), an empty file marked by an
    /// `overlay.whiteout` xattr, which the applier writes where mknod is refused.
    public static func isWhiteout(_ st: stat, path: String) -> Bool {
        if (st.st_mode & S_IFMT) == S_IFCHR && st.st_rdev == 0 { return true }
        guard (st.st_mode & S_IFMT) == S_IFREG, st.st_size == 0 else { return false }
        var v: UInt8 = 0
        return csys_lgetxattr(path, "user.overlay.whiteout", &v, 1) >= 0
            || csys_lgetxattr(path, "trusted.overlay.whiteout", &v, 1) >= 0
    }
}

extension Compression {
    var c: Int32 {
        switch self {
        case .none: return Int32(CSYS_COMPRESSION_NONE)
        case .gzip: return Int32(CSYS_COMPRESSION_GZIP)
        case .zstd: return Int32(CSYS_COMPRESSION_ZSTD)
        }
    }

    init(c: Int32) {
        switch c {
        case Int32(CSYS_COMPRESSION_GZIP): self = .gzip
        case Int32(CSYS_COMPRESSION_ZSTD): self = .zstd
        default: self = .none
        }
    }
}

/// What reading a layer found.
public struct LayerDigests: Sendable, Equatable {
    public var digest: Digest       // of the blob as stored
    public var diffID: Digest       // of the uncompressed tar
    public var size: Int64          // blob bytes
    public var tarSize: Int64       // uncompressed bytes
    public var compression: Compression
}

public struct ApplyReport: Sendable {
    public var digests: LayerDigests
    public var entries: Int
    public var skippedDevices: Int
    public var firstSkipped: String?
    public var ignoredXattrs: Int
    /// Device nodes of a plain tree whose group and other permissions were taken away.
    public var restrictedDevices: Int
    public var firstRestricted: String?

    /// What an apply job left in its shared `csys_apply`, or its error when it failed.
    init(_ result: csys_apply, exitCode: Int32) throws {
        var r = result
        if exitCode != 0 { throw CtrError(r.error, fallback: "applying the layer failed (exit \(exitCode))") }
        let skipped = cString(&r.first_skipped)
        digests = LayerDigests(digest: digest32(&r.digest), diffID: digest32(&r.diff_id), size: Int64(r.size),
                               tarSize: Int64(r.tar_size), compression: Compression(c: r.compression))
        entries = Int(r.entries)
        skippedDevices = Int(r.skipped_devices)
        firstSkipped = skipped.isEmpty ? nil : skipped
        ignoredXattrs = Int(r.ignored_xattrs)
        restrictedDevices = Int(r.restricted_devices)
        let restricted = cString(&r.first_restricted)
        firstRestricted = restricted.isEmpty ? nil : restricted
    }
}

func cString<T>(_ tuple: inout T) -> String {
    withUnsafeBytes(of: &tuple) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
}

func digest32<T>(_ tuple: inout T) -> Digest {
    withUnsafeBytes(of: &tuple) { Digest(sha256Bytes: Array($0.prefix(32))) }
}

/// Layer operations, run with the privileges the id mapping gives: in-process as root or
/// as a user without subordinate ids, in a forked user-namespace child for a mapped user.
public struct LayerOps: Sendable {
    public let mapping: IDMapping

    public init(mapping: IDMapping = .current()) {
        self.mapping = mapping
    }

    /// Load libarchive in this (parent) process before a job that uses it forks.
    static func loadArchive() throws {
        var err = csys_error()
        if csys_load_archive(&err) != 0 { throw CtrError(err) }
    }

    /// Run `fn` on the job struct in `box`; `errorField` locates its csys_error.
    /// The settings of a layer written from a tree: with a single id, the files are the user's
    /// own and their image owners are in xattrs.
    func creation(rootFD: Int32, outFD: Int32, tree: TreeKind, compression: Compression, level: Int, clampMtime: Int64?) -> csys_create {
        var c = csys_create()
        c.root_fd = rootFD
        c.out_fd = outFD
        c.tree = tree.c
        c.compression = compression.c
        c.level = Int32(level)
        c.clamp_mtime = clampMtime ?? -1
        if case .single(let uid, let gid) = mapping {
            c.translate_owners = 1
            c.host_uid = uid
            c.host_gid = gid
        }
        return c
    }

    func runJob<T>(_ fn: csys_job_fn, _ box: SharedBox<T>, _ errorField: KeyPath<T, csys_error>, keep: [Int32]) throws -> Int32 {
        let arg = UnsafeMutableRawPointer(box.pointer)
        let err = (arg + MemoryLayout<T>.offset(of: errorField)!).assumingMemoryBound(to: csys_error.self)
        switch mapping {
        case .mapped:
            return try UserNamespace.run(fn, arg: arg, errOut: err, mapping: mapping, keepFDs: keep)
        case .root, .single:
            return fn(arg)
        }
    }

    private func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32 {
        try valueOrErrno("open", "cannot open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Apply the layer blob at `blob` to the directory `root`; `skip`: paths relative to it
    /// the layer leaves alone (at or under them nothing is written or removed).
    public func apply(blob: String, to root: String, tree: TreeKind, skip: [String] = []) throws -> ApplyReport {
        let inFD = try open(blob, O_RDONLY)
        defer { close(inFD) }
        let rootFD = try open(root, O_RDONLY | O_DIRECTORY)
        defer { close(rootFD) }
        return try Self.withCStrings(skip) { skipPtr, n in
            var a = csys_apply()
            a.in_fd = inFD
            a.root_fd = rootFD
            a.tree = tree.c
            a.owners = mapping.isSingle ? Int32(CSYS_OWNERS_XATTR) : Int32(CSYS_OWNERS_CHOWN)
            a.skip = skipPtr
            a.nskip = n
            let box = SharedBox(a)
            try Self.loadArchive()
            let code = try runJob(csys_job_layer_apply, box, \.error, keep: [inFD, rootFD])
            return try ApplyReport(box.pointer.pointee, exitCode: code)
        }
    }

    /// Empty the directory `root` of everything but the `keep` paths (relative to it) and the
    /// directories holding them. Nothing is followed: every mount point under `root` must be
    /// kept. In this process (the container isolation level runs as root without a user
    /// namespace).
    public static func clearTree(_ root: String, keep: [String]) throws {
        let rootFD = try valueOrErrno("open", "cannot open \(root)") { Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(rootFD) }
        var err = csys_error()
        let rc = withCStrings(keep) { p, n in csys_clear_tree(rootFD, "", p, n, &err) }
        if rc != 0 { throw CtrError(err, fallback: "cannot clear \(root)") }
    }

    /// `strings` as a C array of C strings for the body's lifetime.
    static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?, Int32) throws -> R) rethrows -> R {
        let cs: [UnsafePointer<CChar>?] = strings.map { UnsafePointer(strdup($0)) }
        defer { cs.forEach { free(UnsafeMutableRawPointer(mutating: $0)) } }
        return try cs.withUnsafeBufferPointer { try body($0.count == 0 ? nil : $0.baseAddress, Int32($0.count)) }
    }

    /// Start applying the layer that arrives on `inFD` (a pipe, say) to `root`; the job owns
    /// `inFD`. Writers feed the pipe, close it, and `wait()` for the report.
    public func startApply(inFD: Int32, to root: String, tree: TreeKind) throws -> ApplyJob {
        try Self.loadArchive()
        let rootFD = try open(root, O_RDONLY | O_DIRECTORY)
        var a = csys_apply()
        a.in_fd = inFD
        a.root_fd = rootFD
        a.tree = tree.c
        a.owners = mapping.isSingle ? Int32(CSYS_OWNERS_XATTR) : Int32(CSYS_OWNERS_CHOWN)
        let box = SharedBox(a)
        let errp = (UnsafeMutableRawPointer(box.pointer) + MemoryLayout<csys_apply>.offset(of: \.error)!)
            .assumingMemoryBound(to: csys_error.self)
        switch mapping {
        case .mapped:
            do {
                let child = try UserNamespace.start(csys_job_layer_apply, arg: UnsafeMutableRawPointer(box.pointer),
                                                    errOut: errp, mapping: mapping, keepFDs: [inFD, rootFD])
                close(inFD)   // the child has its own copy
                close(rootFD)
                return ApplyJob(box: box, child: child, thread: nil)
            } catch {
                close(inFD)
                close(rootFD)
                throw error
            }
        case .root, .single:
            let done = DispatchSemaphore(value: 0)
            let job = ApplyJob(box: box, child: nil, thread: done)
            let t = Thread {
                job.code = csys_layer_apply(box.pointer) == 0 ? 0 : 1
                close(inFD)
                close(rootFD)
                done.signal()
            }
            t.stackSize = 1 << 20
            t.start()
            return job
        }
    }

    /// Read a layer blob through to check it is a whole tar and compute its digests.
    public static func scan(blob: String) throws -> LayerDigests {
        let fd = try valueOrErrno("open", "cannot open \(blob)") { Glibc.open(blob, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var a = csys_apply()
        a.in_fd = fd
        a.root_fd = -1
        if csys_layer_scan(&a) != 0 { throw CtrError(a.error) }
        return LayerDigests(digest: digest32(&a.digest), diffID: digest32(&a.diff_id), size: Int64(a.size),
                            tarSize: Int64(a.tar_size), compression: Compression(c: a.compression))
    }

    /// Write the tree at `root` as a layer blob at `output`.
    public func create(from root: String, to output: String, tree: TreeKind, compression: Compression = .gzip,
                       level: Int = 0, clampMtime: Int64? = nil) throws -> LayerDigests {
        let rootFD = try open(root, O_RDONLY | O_DIRECTORY)
        defer { close(rootFD) }
        let outFD = try open(output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(outFD) }
        let box = SharedBox(creation(rootFD: rootFD, outFD: outFD, tree: tree, compression: compression, level: level, clampMtime: clampMtime))
        try Self.loadArchive()
        // a failed write names the output (a full disk says where)
        let code = try output.withCString { name in
            box.pointer.pointee.out_name = name
            defer { box.pointer.pointee.out_name = nil }
            return try runJob(csys_job_layer_create, box, \.error, keep: [rootFD, outFD])
        }
        var r = box.pointer.pointee
        if code != 0 { throw CtrError(r.error, fallback: "creating the layer failed (exit \(code))") }
        if fsync(outFD) != 0 { throw CtrError.errno("fsync", "cannot sync \(output)") }
        return LayerDigests(digest: digest32(&r.digest), diffID: digest32(&r.diff_id), size: Int64(r.size),
                            tarSize: Int64(r.tar_size), compression: compression)
    }

    /// Remove a tree that may hold files of subordinate ids. Returns the bytes freed.
    @discardableResult
    public func removeTree(_ path: String) throws -> Int64 {
        // (no URL, and no SharedBox until a child needs one: their first use in a process costs
        // a type lookup of a third of a millisecond, on every `ctr run --rm`)
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let slash = trimmed.lastIndex(of: "/")
        let parent = slash.map { $0 == trimmed.startIndex ? "/" : String(trimmed[..<$0]) } ?? "."
        let name = slash.map { String(trimmed[trimmed.index(after: $0)...]) } ?? trimmed
        guard let dfd = try? open(parent, O_RDONLY | O_DIRECTORY) else { return 0 }
        defer { close(dfd) }
        // as ourselves first (a tree of our own files needs no user namespace, and starting
        // one costs newuidmap and newgidmap); the namespace job for what we may not remove
        // (the C call, not the job struct: its name is a 256-char tuple, whose type Swift
        // makes on first use for a third of a millisecond)
        if mapping != .root {
            var freed: UInt64 = 0
            var err = csys_error()
            if csys_rmtree_count(dfd, name, &freed, &err) == 0 { return Int64(freed) }
        }
        var j = csys_rmtree_job()
        j.dirfd = dfd
        withUnsafeMutableBytes(of: &j.name) { buf in
            let bytes = Array(name.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        let box = SharedBox(j)
        box.pointer.pointee.error = csys_error()
        let code = try runJob(csys_job_rmtree, box, \.error, keep: [dfd])
        if code != 0 { throw CtrError(box.pointer.pointee.error, fallback: "cannot remove \(path)") }
        return Int64(box.pointer.pointee.freed)
    }

    /// Give `path` an owner in container ids (mapped to the host's through the user
    /// namespace) and permission bits.
    public func setOwner(_ path: String, uid: UInt32, gid: UInt32, mode: UInt32) throws {
        let url = URL(fileURLWithPath: path)
        let dfd = try open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        defer { close(dfd) }
        var j = csys_chown_job()
        j.dirfd = dfd
        j.uid = uid
        j.gid = gid
        j.mode = mode
        withUnsafeMutableBytes(of: &j.name) { buf in
            let bytes = Array(url.lastPathComponent.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        let box = SharedBox(j)
        let code = try runJob(csys_job_chown, box, \.error, keep: [dfd])
        if code != 0 { throw CtrError(box.pointer.pointee.error, fallback: "cannot chown \(path)") }
    }

    /// A tar compressed with xz or bzip2 (which layers may not be, but docker's ADD and
    /// import take), decompressed by libarchive's own filters into `output`. False when `input`
    /// is neither (nothing is written); throws when it is one and does not decompress (and
    /// `output` is removed).
    public static func decompressOther(_ input: String, to output: String) throws -> Bool {
        let inFD = try valueOrErrno("open", "cannot open \(input)") { Glibc.open(input, O_RDONLY | O_CLOEXEC) }
        defer { close(inFD) }
        let kind = try valueOrErrno("read", "cannot read \(input)") { csys_xz_bzip2_kind(inFD) }
        if kind == 0 { return false }
        let outFD = try valueOrErrno("open", "cannot create \(output)") { Glibc.open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        var err = csys_error()
        let rc = csys_decompress_xz_bzip2(inFD, outFD, &err)
        close(outFD)
        if rc != 0 {
            unlink(output)
            throw CtrError.invalid("\(input): \(CtrError(err).message)", cause: CtrError(err))
        }
        return true
    }

    /// Decompress (auto-detected) `input` into `output` (nil: hash only).
    public static func decompress(_ input: String, to output: String?) throws -> LayerDigests {
        let inFD = try valueOrErrno("open", "cannot open \(input)") { Glibc.open(input, O_RDONLY | O_CLOEXEC) }
        defer { close(inFD) }
        var outFD: Int32 = -1
        if let output {
            outFD = try valueOrErrno("open", "cannot create \(output)") { Glibc.open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        }
        defer { if outFD >= 0 { close(outFD) } }
        var d = csys_decompress()
        d.in_fd = inFD
        d.out_fd = outFD
        let rc = withOptionalCString(output) { name in
            d.out_name = name
            return csys_decompress_copy(&d)
        }
        d.out_name = nil
        if rc != 0 { throw CtrError(d.error) }
        return LayerDigests(digest: digest32(&d.digest), diffID: digest32(&d.diff_id), size: Int64(d.size),
                            tarSize: Int64(d.tar_size), compression: Compression(c: d.compression))
    }

    /// A layer tarball (plain, gzip or zstd) made ready to be a blob at `output`: gzip and zstd
    /// as they are, a plain tar gzipped. The blob written is checked against what the scan of
    /// `source` found, so a file changed while it was read is refused. Errors are the scan's.
    public static func stageTarball(_ source: String, to output: String) throws -> (layer: Descriptor, diffID: Digest) {
        let scanned = try scan(blob: source)
        switch scanned.compression {
        case .gzip, .zstd:
            try FileCopy.copy(source, to: output)
            let layer = Descriptor(mediaType: scanned.compression == .gzip ? .ociLayerGzip : .ociLayerZstd,
                                   digest: scanned.digest, size: scanned.size)
            try Store.verifyFile(output, layer)
            return (layer, scanned.diffID)
        case .none:
            let d = try compress(source, to: output, compression: .gzip)
            if d.diffID != scanned.diffID { throw CtrError.invalid("\(source) changed while it was read") }
            return (Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size), scanned.diffID)
        }
    }

    /// Compress `input` (a tar) into `output`.
    public static func compress(_ input: String, to output: String, compression: Compression, level: Int = 0) throws -> LayerDigests {
        let inFD = try valueOrErrno("open", "cannot open \(input)") { Glibc.open(input, O_RDONLY | O_CLOEXEC) }
        defer { close(inFD) }
        let outFD = try valueOrErrno("open", "cannot create \(output)") { Glibc.open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(outFD) }
        var c = csys_compress()
        c.in_fd = inFD
        c.out_fd = outFD
        c.compression = compression.c
        c.level = Int32(level)
        let rc = output.withCString { name in
            c.out_name = name
            return csys_compress_copy(&c)
        }
        c.out_name = nil
        if rc != 0 { throw CtrError(c.error) }
        return LayerDigests(digest: digest32(&c.digest), diffID: digest32(&c.diff_id), size: Int64(c.size),
                            tarSize: Int64(c.tar_size), compression: compression)
    }
}

/// A layer being applied in the background (a user-namespace child or a thread).
public final class ApplyJob: @unchecked Sendable {
    let box: SharedBox<csys_apply>
    let child: UserNamespace.Child?
    let thread: DispatchSemaphore?
    var code: Int32 = 0

    init(box: SharedBox<csys_apply>, child: UserNamespace.Child?, thread: DispatchSemaphore?) {
        self.box = box
        self.child = child
        self.thread = thread
    }

    public func wait() throws -> ApplyReport {
        if let child { code = try child.wait() }
        if let thread { thread.wait() }
        return try ApplyReport(box.pointer.pointee, exitCode: code)
    }

    /// Stop a child early (its input will not come).
    public func cancel() { child?.kill() }
}

extension IDMapping {
    var isSingle: Bool { if case .single = self { return true } else { return false } }
}
