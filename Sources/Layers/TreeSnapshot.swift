import CSysShims
import Errors
import Foundation
import HostOS

/// The entries of a directory tree with their metadata (see csys_snapshot.c), taken before a
/// command runs in the tree: the difference from the tree as the command leaves it is the
/// command's layer. The chroot isolation level of `ctr build` works this way, where no overlay
/// upper dir can be had. Taken and compared where the tree's owners are what the image has
/// them (in the user namespace that wrote it, for a rootless user with subordinate ids), so
/// the snapshot lives in a file, not in this process's memory.
public final class TreeSnapshot: @unchecked Sendable {
    public let root: String
    public let skip: [String]
    /// A memfd holding the snapshot.
    let fd: Int32
    /// How many entries the tree had.
    public let count: Int

    init(root: String, skip: [String], fd: Int32, count: Int) {
        self.root = root
        self.skip = skip
        self.fd = fd
        self.count = count
    }

    deinit { close(fd) }
}

extension LayerOps {
    /// A job over `root` with the skipped paths ("proc", "etc/hosts": left out with all they
    /// hold) as C strings for the job's lifetime.
    private func withSnapshotJob<R>(root: String, skip: [String], snapFD: Int32,
                                    _ body: (SharedBox<csys_snapshot_job>, Int32) throws -> R) throws -> R {
        let rootFD = try valueOrErrno("snapshot", "cannot open \(root)") { Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(rootFD) }
        let cs: [UnsafePointer<CChar>?] = skip.map { UnsafePointer(strdup($0)) }
        defer { cs.forEach { free(UnsafeMutableRawPointer(mutating: $0)) } }
        return try cs.withUnsafeBufferPointer { buf in
            var j = csys_snapshot_job()
            j.root_fd = rootFD
            j.skip = buf.baseAddress
            j.nskip = Int32(buf.count)
            j.snap_fd = snapFD
            return try body(SharedBox(j), rootFD)
        }
    }

    /// Take a snapshot of the tree at `root`; `skip`: paths relative to it left out with all
    /// they hold.
    public func snapshot(root: String, skip: [String]) throws -> TreeSnapshot {
        let fd = try valueOrErrno("snapshot", "cannot make a memory file for the snapshot of \(root)") {
            csys_snapshot_file()
        }
        do {
            let count = try withSnapshotJob(root: root, skip: skip, snapFD: fd) { box, rootFD in
                let code = try runJob(csys_snapshot_job_save, box, \.error, keep: [rootFD, fd])
                if code != 0 { throw CtrError(box.pointer.pointee.error, fallback: "cannot read the tree \(root)") }
                return box.pointer.pointee.entries
            }
            return TreeSnapshot(root: root, skip: skip, fd: fd, count: count)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The layer of what changed in the tree since `before`: changed and new entries as they
    /// are now, whiteouts for what is gone. Returns its digests and the number of entries
    /// (0: nothing changed).
    public func createLayer(changedSince before: TreeSnapshot, output: String,
                            compression: Compression = .gzip, clampMtime: Int64? = nil) throws -> (LayerDigests, changes: Int) {
        try Self.loadArchive()
        let outFD = try valueOrErrno("write", "cannot create \(output)") { Glibc.open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(outFD) }
        let (c, n) = try withSnapshotJob(root: before.root, skip: before.skip, snapFD: before.fd) { box, rootFD in
            box.pointer.pointee.create = creation(rootFD: rootFD, outFD: outFD, tree: .plain, compression: compression,
                                                  level: 0, clampMtime: clampMtime)
            // a failed write names the output (a full disk says where)
            let code = try output.withCString { name in
                box.pointer.pointee.create.out_name = name
                defer { box.pointer.pointee.create.out_name = nil }
                return try runJob(csys_snapshot_job_layer, box, \.error, keep: [rootFD, outFD, before.fd])
            }
            if code != 0 { throw CtrError(box.pointer.pointee.error, fallback: "cannot make the layer of \(before.root)") }
            return (box.pointer.pointee.create, box.pointer.pointee.entries)
        }
        if fsync(outFD) != 0 { throw CtrError.errno("fsync", "cannot sync \(output)") }
        var digest = c.digest, diffID = c.diff_id
        return (LayerDigests(digest: digest32(&digest), diffID: digest32(&diffID), size: Int64(c.size),
                             tarSize: Int64(c.tar_size), compression: compression), n)
    }
}
