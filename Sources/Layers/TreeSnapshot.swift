import CSysShims
import Errors
import Foundation
import HostOS

/// The entries of a directory tree with their metadata (see csys_snapshot.c): taken before and
/// after a command ran in the tree, their difference is the command's layer. The chroot
/// isolation level of `ctr build` works this way, where no overlay upper dir can be had.
public final class TreeSnapshot: @unchecked Sendable {
    let raw: OpaquePointer
    public let root: String

    /// `skip`: paths relative to the root left out with all they hold ("proc", "etc/hosts").
    public init(root: String, skip: [String]) throws {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw CtrError.errno("snapshot", "cannot open \(root)") }
        defer { close(fd) }
        let cs = skip.map { strdup($0) }
        defer { cs.forEach { free($0) } }
        var err = csys_error()
        let p: OpaquePointer? = cs.map { UnsafePointer($0) }.withUnsafeBufferPointer { buf in
            csys_snapshot_take(fd, buf.baseAddress, Int32(buf.count), &err)
        }
        guard let p else { throw CtrError(err, fallback: "cannot read the tree \(root)") }
        raw = p
        self.root = root
    }

    deinit { csys_snapshot_free(raw) }

    public var count: Int { Int(csys_snapshot_count(raw)) }
}

extension LayerOps {
    /// The layer of what changed from `before` to `after` (snapshots of the same tree):
    /// changed and new entries as they are now, whiteouts for what is gone. Returns its digests
    /// and the number of entries changed (0: nothing changed).
    public func createLayer(changedFrom before: TreeSnapshot, to after: TreeSnapshot, output: String,
                            compression: Compression = .gzip, clampMtime: Int64? = nil) throws -> (LayerDigests, changes: Int) {
        var err = csys_error()
        var list: UnsafeMutablePointer<csys_change>?
        let n = csys_snapshot_diff(before.raw, after.raw, &list, &err)
        if n < 0 { throw CtrError(err, fallback: "cannot compare the tree \(after.root)") }
        defer { csys_changes_free(list, n) }
        try Self.loadArchive()
        let rootFD = open(after.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw CtrError.errno("snapshot", "cannot open \(after.root)") }
        defer { close(rootFD) }
        let outFD = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard outFD >= 0 else { throw CtrError.errno("write", "cannot create \(output)") }
        defer { close(outFD) }
        var c = csys_create()
        c.root_fd = rootFD
        c.out_fd = outFD
        c.tree = TreeKind.plain.c
        c.compression = compression.c
        c.clamp_mtime = clampMtime ?? -1
        let failed = output.withCString { name -> Bool in
            c.out_name = name
            defer { c.out_name = nil }
            return csys_layer_create_changes(&c, list, Int(n)) != 0
        }
        if failed {
            throw CtrError(c.error, fallback: "creating the layer failed")
        }
        if fsync(outFD) != 0 { throw CtrError.errno("fsync", "cannot sync \(output)") }
        return (LayerDigests(digest: digest32(&c.digest), diffID: digest32(&c.diff_id), size: Int64(c.size),
                             tarSize: Int64(c.tar_size), compression: compression), Int(n))
    }
}
