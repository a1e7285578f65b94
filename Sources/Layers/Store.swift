import CSysShims
import Errors
import Foundation
import HostOS

/// A named image in the store: a name and the manifest it points at.
public struct ImageRecord: Sendable, Hashable {
    public var name: Reference?
    public var descriptor: Descriptor

    public init(name: Reference?, descriptor: Descriptor) {
        self.name = name
        self.descriptor = descriptor
    }
}

/// The image store: a directory that is itself an OCI image layout.
///
///     ROOT/oci-layout, index.json       names → manifests (annotation org.opencontainers.image.ref.name)
///     ROOT/blobs/sha256/HEX             content, only ever renamed in after fsync and verification
///     ROOT/ingest/                      partial writes; cleared by prune
///     ROOT/layers/sha256/HEX/           unpacked layers (overlay form), one per diff-id
///     ROOT/layers/.tmp-*                partial unpacks; cleared by prune
///     ROOT/gc.lock                      shared by every writer, exclusive for prune/rmi
///     ROOT/index.lock                   serialises updates of index.json
public final class Store: @unchecked Sendable {
    public static let refNameAnnotation = "org.opencontainers.image.ref.name"

    public let root: String
    public let ops: LayerOps

    public init(root: String, mapping: IDMapping = .current()) throws {
        self.root = root
        self.ops = LayerOps(mapping: mapping)
        if access(root, F_OK) != 0 {
            do {
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw CtrError.system("store", "cannot create the store directory \(root): \(error.localizedDescription)")
            }
        }
        for dir in [root, "\(root)/blobs", "\(root)/blobs/sha256", "\(root)/ingest", "\(root)/layers", "\(root)/layers/sha256"] {
            if mkdir(dir, 0o700) != 0 && Glibc.errno != EEXIST {
                throw CtrError.errno("store", "cannot create the store directory \(dir)")
            }
        }
        let layout = "\(root)/oci-layout"
        if access(layout, F_OK) != 0 {
            try Self.atomicWrite(path: layout, data: Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        }
    }

    /// The default store: $CTR_ROOT, else /var/lib/ctr for root, else $XDG_DATA_HOME/ctr or
    /// ~/.local/share/ctr.
    public static func defaultRoot(environment env: [String: String]? = nil) -> String {
        // getenv, not ProcessInfo's dictionary of everything: this runs on every start-up
        let get = { (k: String) -> String? in env.map { $0[k] } ?? getenv(k).map { String(cString: $0) } }
        if let r = get("CTR_ROOT"), !r.isEmpty { return r }
        if getuid() == 0 { return "/var/lib/ctr" }
        if let x = get("XDG_DATA_HOME"), !x.isEmpty { return "\(x)/ctr" }
        let home = get("HOME") ?? NSHomeDirectory()
        return "\(home)/.local/share/ctr"
    }

    // MARK: locks

    public enum LockKind { case shared, exclusive }

    /// Hold the named lock file while `body` runs.
    public func withLock<T>(_ name: String, _ kind: LockKind, _ body: () throws -> T) throws -> T {
        let fd = try valueOrErrno("lock", "cannot open \(root)/\(name)") { open("\(root)/\(name)", O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        defer { close(fd) }
        try valueOrErrno("lock", "cannot lock \(root)/\(name)") { flock(fd, kind == .shared ? LOCK_SH : LOCK_EX) }
        return try body()
    }

    /// Writers hold the gc lock shared, so prune (exclusive) never removes what they are adding.
    /// Nested calls (and `holdForWriting`) in one process share one lock.
    public func writing<T>(_ body: () throws -> T) throws -> T {
        let hold = try holdForWriting()
        defer { hold.release() }
        return try body()
    }

    /// Hold the gc lock shared until `release()` (or the hold's end): for a writer whose blobs
    /// and layers stay unreferenced across several steps (a build until its image is named,
    /// a run until its container's record names the image). Holds of one process on one store
    /// share a single lock, so nesting never waits on a prune that is waiting for this process.
    public func holdForWriting() throws -> WriteHold {
        try GCHolds.acquire(root)
        return WriteHold(root: root)
    }

    /// A shared hold of the gc lock (see `holdForWriting`).
    public final class WriteHold: @unchecked Sendable {
        let root: String
        private var held = true
        private let lock = NSLock()

        init(root: String) { self.root = root }

        public func release() {
            lock.lock()
            defer { lock.unlock() }
            guard held else { return }
            held = false
            GCHolds.release(root)
        }

        deinit { release() }
    }

    // MARK: blobs

    public func blobPath(_ d: Digest) -> String { "\(root)/blobs/\(d.algorithm)/\(d.encoded)" }

    public func hasBlob(_ d: Digest) -> Bool { access(blobPath(d), F_OK) == 0 }

    /// Read a blob, checking its digest (manifests and configs are small).
    public func readBlob(_ d: Digest) throws -> Data {
        guard let data = FileManager.default.contents(atPath: blobPath(d)) else {
            throw CtrError.notFound("blob \(d) is missing from the store \(root)")
        }
        let actual = Digest.sha256(data)
        if actual != d { throw CtrError.invalid("blob \(d) in the store is corrupt (its content hashes to \(actual))") }
        return data
    }

    /// A new file in the ingest dir; remove it or `commit` it.
    public func ingestPath() -> String {
        "\(root)/ingest/\(UUID().uuidString.lowercased())"
    }

    /// Move a written and verified file into blobs under `digest`: fsync, then rename.
    public func commit(file: String, as digest: Digest) throws {
        let fd = try valueOrErrno("fsync", "cannot open \(file)") { open(file, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        try valueOrErrno("fsync", "cannot sync \(file)") { fsync(fd) }
        try valueOrErrno("commit", "cannot move \(file) into the store") { rename(file, blobPath(digest)) }
    }

    /// Hash a file and check it against a descriptor (digest and size).
    public static func verifyFile(_ path: String, _ expected: Descriptor) throws {
        let fd = try valueOrErrno("open", "cannot open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        let hashed = Digest.sha256(fd: fd)
        close(fd)
        guard let (d, size) = hashed else { throw CtrError.errno("read", "cannot read \(path)") }
        if d != expected.digest {
            throw CtrError.invalid("blob \(expected.digest) failed verification: its content hashes to \(d)")
        }
        if Int64(size) != expected.size {
            throw CtrError.invalid("blob \(expected.digest) has \(size) bytes, its descriptor says \(expected.size)")
        }
    }

    /// Store bytes as a blob; returns its descriptor.
    @discardableResult
    public func putBlob(_ data: Data, mediaType: MediaType) throws -> Descriptor {
        let d = Digest.sha256(data)
        if !hasBlob(d) {
            let tmp = ingestPath()
            try Self.writeFile(path: tmp, data: data, sync: true)
            try valueOrErrno("commit", "cannot move \(tmp) into the store") { rename(tmp, blobPath(d)) }
        }
        return Descriptor(mediaType: mediaType, digest: d, size: Int64(data.count))
    }

    /// Store an encodable value with canonical JSON.
    @discardableResult
    public func putJSON<T: Encodable>(_ value: T, mediaType: MediaType) throws -> Descriptor {
        try putBlob(CanonicalJSON.encode(value), mediaType: mediaType)
    }

    /// Store an image's config and its OCI manifest over `layers` (blobs already stored).
    public func putImage(config: ImageConfig, layers: [Descriptor]) throws -> (manifest: Descriptor, config: Descriptor) {
        let configDesc = try putJSON(config, mediaType: .ociConfig)
        let manifest = try putJSON(Manifest(mediaType: .ociManifest, config: configDesc, layers: layers), mediaType: .ociManifest)
        return (manifest, configDesc)
    }

    // MARK: index

    private var indexPath: String { "\(root)/index.json" }

    /// The store's index (names → manifests). A missing index is empty.
    public func index() throws -> Index {
        guard let data = FileManager.default.contents(atPath: indexPath) else { return Index(manifests: []) }
        return try CanonicalJSON.decode(Index.self, from: data, what: "store index \(indexPath)")
    }

    public func images() throws -> [ImageRecord] {
        try index().manifests.map { desc in
            let name = desc.annotations?[Self.refNameAnnotation].flatMap { try? Reference(parsing: $0) }
            var plain = desc
            plain.annotations = nil
            return ImageRecord(name: name, descriptor: plain)
        }
    }

    /// Read-modify-write the index under its lock, written atomically.
    public func updateIndex(_ body: (inout [ImageRecord]) throws -> Void) throws {
        try withLock("index.lock", .exclusive) {
            var records = try images()
            try body(&records)
            var manifests: [Descriptor] = []
            for r in records {
                var d = r.descriptor
                if let n = r.name { d.annotations = [Self.refNameAnnotation: n.string] }
                manifests.append(d)
            }
            try Self.atomicWrite(path: indexPath, data: CanonicalJSON.encode(Index(manifests: manifests)))
        }
    }

    /// Point `name` at `descriptor` (replacing what it pointed at).
    public func setName(_ name: Reference, to descriptor: Descriptor) throws {
        try updateIndex { records in
            records.removeAll { $0.name == name }
            records.append(ImageRecord(name: name, descriptor: descriptor))
            records.sort { ($0.name?.string ?? "") < ($1.name?.string ?? "") }
        }
    }

    /// Find an image by name (`busybox:local`), full or short image id, or manifest digest.
    public func resolve(_ s: String) throws -> ImageRecord {
        let records = try images()
        if let ref = try? Reference(parsing: s) {
            if let digest = ref.digest {
                if let r = records.first(where: { $0.descriptor.digest == digest && ($0.name?.name == ref.name) }) {
                    return r
                }
                if let r = records.first(where: { $0.descriptor.digest == digest }) { return r }
            } else if let r = records.first(where: { $0.name == ref }) {
                return r
            }
        }
        // an image id (config digest) or manifest digest, whole or a unique prefix
        var hex = s.hasPrefix("sha256:") ? String(s.dropFirst(7)) : s
        hex = hex.lowercased()
        if hex.count >= 3, hex.allSatisfy({ $0.isHexDigit }) {
            var found: [ImageRecord] = []
            for r in records {
                if r.descriptor.digest.encoded.hasPrefix(hex) { found.append(r); continue }
                if let id = try? imageID(r), id.encoded.hasPrefix(hex) { found.append(r) }
            }
            let distinct = Set(found.map { $0.descriptor.digest })
            if distinct.count == 1 { return found[0] }
            if distinct.count > 1 { throw CtrError.conflict("\(s): more than one image matches; use more of the id") }
        }
        throw CtrError.notFound("\(s): image not known (see `ctr images`)")
    }

    // MARK: reading images

    public func manifest(_ desc: Descriptor) throws -> Manifest {
        let data = try readBlob(desc.digest)
        if desc.mediaType.isIndex {
            throw CtrError.invalid("\(desc.digest) is an image index, not a manifest")
        }
        return try CanonicalJSON.decode(Manifest.self, from: data, what: "manifest \(desc.digest)")
    }

    public func config(_ manifest: Manifest) throws -> ImageConfig {
        try CanonicalJSON.decode(ImageConfig.self, from: readBlob(manifest.config.digest),
                                 what: "image config \(manifest.config.digest)")
    }

    /// The image id: the digest of its config, as Docker shows it.
    public func imageID(_ r: ImageRecord) throws -> Digest {
        try manifest(r.descriptor).config.digest
    }

    // MARK: unpacked layers

    public func layerPath(_ diffID: Digest) -> String { "\(root)/layers/\(diffID.algorithm)/\(diffID.encoded)" }

    /// The unpacked (overlay form) directory of a layer, unpacking it once if needed.
    @discardableResult
    public func unpackedLayer(_ layer: Descriptor, diffID: Digest) throws -> String {
        let final = layerPath(diffID)
        if access(final, F_OK) == 0 { return final }
        let tmp = try unpackLayer(blob: blobPath(layer.digest), layer: layer, diffID: diffID).path
        try installLayer(tmp, diffID: diffID)
        return final
    }

    /// An image's layers, unpacked, topmost first (overlay lowerdir order).
    public func unpackedLayers(_ manifest: Manifest, _ config: ImageConfig) throws -> [String] {
        try unpackedLayers(manifest.layers, diffIDs: config.rootfs.diffIDs)
    }

    /// Layers (bottom first, as a manifest lists them), unpacked, topmost first. A layer that
    /// comes twice (two steps that changed nothing, the same COPY twice) is listed once, at its
    /// topmost place: overlayfs refuses a lower dir given twice (ELOOP), and the lower copy adds
    /// nothing the upper one does not cover.
    public func unpackedLayers(_ layers: [Descriptor], diffIDs: [Digest]) throws -> [String] {
        var dirs: [String] = []
        for (layer, diffID) in zip(layers, diffIDs) { dirs.append(try unpackedLayer(layer, diffID: diffID)) }
        var seen = Set<String>()
        return dirs.reversed().filter { seen.insert($0).inserted }
    }

    /// Unpack a layer blob into a new layers/.tmp-* directory, checking the blob's digest and
    /// size and its diff-id. The caller installs it with `installLayer` or removes it.
    public func unpackLayer(blob: String, layer: Descriptor, diffID: Digest) throws -> (path: String, report: ApplyReport) {
        let tmp = "\(root)/layers/.tmp-\(UUID().uuidString.lowercased())"
        try valueOrErrno("mkdir", "cannot create \(tmp)") { mkdir(tmp, 0o755) }
        do {
            let report = try ops.apply(blob: blob, to: tmp, tree: .overlay)
            try Self.check(report.digests, layer: layer, diffID: diffID)
            return (tmp, report)
        } catch let e as CtrError where e.code == .system {
            _ = try? ops.removeTree(tmp)
            // a full disk names where the layer was going, not only the file in it
            let full = e.errno == ENOSPC || e.errno == EDQUOT
            throw CtrError(full ? .system : .invalidInput, "layer \(layer.digest): \(e.message)\(full ? " (unpacking into the store at \(root))" : "")", errno: e.errno, cause: e)
        } catch {
            _ = try? ops.removeTree(tmp)
            throw error
        }
    }

    /// Check what reading a layer found against its descriptor and diff-id.
    public static func check(_ d: LayerDigests, layer: Descriptor, diffID: Digest) throws {
        if d.digest != layer.digest {
            throw CtrError.invalid("layer \(layer.digest) failed verification: its content hashes to \(d.digest)")
        }
        if d.size != layer.size {
            throw CtrError.invalid("layer \(layer.digest) has \(d.size) bytes, its descriptor says \(layer.size)")
        }
        if d.diffID != diffID {
            throw CtrError.invalid("layer \(layer.digest): its uncompressed content hashes to \(d.diffID), the image config says \(diffID)")
        }
    }

    /// Move an unpacked layer into place (another process may have won the race).
    public func installLayer(_ tmp: String, diffID: Digest) throws {
        let final = layerPath(diffID)
        if rename(tmp, final) != 0 {
            let e = Glibc.errno
            _ = try? ops.removeTree(tmp)
            if e != EEXIST && e != ENOTEMPTY {
                throw CtrError.system("rename", errno: e, "cannot move the unpacked layer into \(final)")
            }
        }
    }

    // MARK: garbage collection

    public struct PruneReport: Sendable {
        public var blobs = 0
        public var layers = 0
        public var partial = 0
        public var bytes: Int64 = 0
    }

    /// Remove every blob and unpacked layer that no named image references, and anything
    /// a crashed writer left in ingest/ or layers/.tmp-*. Writers hold the gc lock shared while
    /// what they add is unreferenced; prune waits for them (`waiting` is called first when it
    /// has to).
    public func prune(waiting: (() -> Void)? = nil) throws -> PruneReport {
        try prune(keeping: { [] }, waiting: waiting)
    }

    /// The same, keeping also the blobs (layer blobs: their unpacked layers too, by diff-id)
    /// that `extra` names, asked under the exclusive lock (a build cache's entries).
    public func prune(keeping extra: () throws -> [(blob: Digest, diffID: Digest)], waiting: (() -> Void)? = nil) throws -> PruneReport {
        if GCHolds.isHeld(root) {
            throw CtrError.internal("prune: this process is writing to the store \(root) (it would wait for itself)")
        }
        let fd = try valueOrErrno("lock", "cannot open \(root)/gc.lock") { open("\(root)/gc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard Glibc.errno == EWOULDBLOCK else { throw CtrError.errno("lock", "cannot lock \(root)/gc.lock") }
            waiting?()
            try valueOrErrno("lock", "cannot lock \(root)/gc.lock") { flock(fd, LOCK_EX) }
        }
        return try sweep(extra: try extra())
    }

    /// Under the exclusive gc lock: mark from the index and the containers, sweep the rest.
    private func sweep(extra: [(blob: Digest, diffID: Digest)]) throws -> PruneReport {
        var keepBlobs = Set<Digest>(extra.map(\.blob))
        var keepLayers = Set<Digest>(extra.map(\.diffID))
        func mark(_ desc: Descriptor) {
            guard keepBlobs.insert(desc.digest).inserted else { return }
            guard let data = try? readBlob(desc.digest) else { return }
            if desc.mediaType.isIndex, let idx = try? CanonicalJSON.decode(Index.self, from: data, what: "index") {
                idx.manifests.forEach(mark)
            } else if let m = try? CanonicalJSON.decode(Manifest.self, from: data, what: "manifest") {
                keepBlobs.insert(m.config.digest)
                m.layers.forEach { keepBlobs.insert($0.digest) }
                if let cfg = try? config(m) { cfg.rootfs.diffIDs.forEach { keepLayers.insert($0) } }
            }
        }
        try images().forEach { mark($0.descriptor) }
        // images that containers run on (the "manifest" of ROOT/containers/ID/container.json;
        // a file "manifest" there in containers of earlier versions), named or not
        for id in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/containers")) ?? [] {
            var digest: String?
            if let data = FileManager.default.contents(atPath: "\(root)/containers/\(id)/container.json"),
               let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                digest = obj["manifest"] as? String
            } else if let s = try? String(contentsOfFile: "\(root)/containers/\(id)/manifest", encoding: .utf8) {
                digest = s.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard let digest, let d = try? Digest(parsing: digest) else { continue }
            mark(Descriptor(mediaType: .ociManifest, digest: d, size: 0))
        }

        var report = PruneReport()
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: "\(root)/ingest")) ?? [] {
            var freed: UInt64 = 0
            var err = csys_error()
            let dfd = open("\(root)/ingest", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 {
                _ = csys_rmtree_count(dfd, name, &freed, &err)
                close(dfd)
            }
            report.bytes += Int64(freed)
            report.partial += 1
        }
        for name in (try? fm.contentsOfDirectory(atPath: "\(root)/blobs/sha256")) ?? [] {
            guard let d = try? Digest(parsing: "sha256:\(name)"), keepBlobs.contains(d) else {
                let p = "\(root)/blobs/sha256/\(name)"
                report.bytes += Self.fileSize(p)
                unlink(p)
                report.blobs += 1
                continue
            }
        }
        // --rm containers whose removal was cut short (see Runtime.removeSoon)
        for name in (try? fm.contentsOfDirectory(atPath: "\(root)/containers")) ?? [] where name.hasPrefix(".removing-") {
            report.bytes += try ops.removeTree("\(root)/containers/\(name)")
            report.partial += 1
        }
        for name in (try? fm.contentsOfDirectory(atPath: "\(root)/layers")) ?? [] where name.hasPrefix(".tmp-") {
            report.bytes += try ops.removeTree("\(root)/layers/\(name)")
            report.partial += 1
        }
        for name in (try? fm.contentsOfDirectory(atPath: "\(root)/layers/sha256")) ?? [] {
            if let d = try? Digest(parsing: "sha256:\(name)"), keepLayers.contains(d) { continue }
            report.bytes += try ops.removeTree("\(root)/layers/sha256/\(name)")
            report.layers += 1
        }
        return report
    }

    // MARK: files

    static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return lstat(path, &st) == 0 ? Int64(st.st_blocks) * 512 : 0
    }

    public static func writeFile(path: String, data: Data, sync: Bool, mode: mode_t = 0o644) throws {
        let fd = try valueOrErrno("write", "cannot create \(path)") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
        defer { close(fd) }
        try data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if Glibc.errno == EINTR { continue }
                    throw CtrError.errno("write", "cannot write \(path)")
                }
                off += n
            }
        }
        if sync { try valueOrErrno("fsync", "cannot sync \(path)") { fsync(fd) } }
    }

    /// Write a file so readers see the old or the new content, never a mix.
    /// Replace `path` at once (readers see the old or the new file). `durable`: also survive a
    /// crash (fsync the file and its directory); state that dies with a crash anyway (a
    /// container's record) skips that, which is milliseconds per write on a disk.
    public static func atomicWrite(path: String, data: Data, durable: Bool = true) throws {
        let tmp = "\(path).tmp-\(getpid())-\(UUID().uuidString.prefix(8))"
        do {
            try writeFile(path: tmp, data: data, sync: durable)
            try valueOrErrno("rename", "cannot replace \(path)") { rename(tmp, path) }
        } catch {
            unlink(tmp)
            throw error
        }
        guard durable else { return }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}

/// The gc locks this process holds shared, one per store: a count of holds and the locked fd.
/// A nested hold only counts, so it never queues behind a prune that waits for this process.
enum GCHolds {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var held: [String: (fd: Int32, count: Int)] = [:]

    static func acquire(_ root: String) throws {
        lock.lock()
        defer { lock.unlock() }
        if var h = held[root] {
            h.count += 1
            held[root] = h
            return
        }
        let fd = try valueOrErrno("lock", "cannot open \(root)/gc.lock") { open("\(root)/gc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        do {
            try valueOrErrno("lock", "cannot lock \(root)/gc.lock") { flock(fd, LOCK_SH) }
        } catch {
            close(fd)
            throw error
        }
        held[root] = (fd, 1)
    }

    static func release(_ root: String) {
        lock.lock()
        defer { lock.unlock() }
        guard var h = held[root] else { return }
        h.count -= 1
        if h.count > 0 { held[root] = h; return }
        close(h.fd)
        held[root] = nil
    }

    static func isHeld(_ root: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return held[root] != nil
    }
}
