import CSysShims
import Errors
import Foundation
import HostOS

/// `ctr pull`: resolve, verify, and download → verify → decompress → apply in one streaming
/// pass per layer, several layers at once; the image ends up named and ready to run.
public enum ImagePull {
    public struct Result: Sendable {
        /// What the reference resolved to (an index digest when the registry has one).
        public var digest: Digest
        public var manifest: Descriptor
        public var imageID: Digest
        public var name: Reference
        public var downloaded: Int
        public var reused: Int
        public var reports: [ApplyReport]
        /// The name stood for this image before the pull (docker's "Image is up to date").
        public var upToDate = false
    }

    /// `unpack` false: the layers are fetched and verified but not unpacked (`ctr append`'s
    /// base needs only the blobs, and no user namespace).
    public static func run(_ ref: Reference, store: Store, access: RegistryAccess, platform: Platform = .current,
                           progress: TransferProgress? = nil, parallel: Int = 3, unpack: Bool = true) throws -> Result {
        let before = try? store.resolve(ref.string).descriptor.digest
        let sources = try access.pullSources(ref)
        var lastError: Error?
        for (i, src) in sources.enumerated() {
            do {
                var result = try pull(ref, from: src.client, as: src.ref, store: store, platform: platform,
                                      progress: progress, parallel: parallel, unpack: unpack)
                result.upToDate = before == result.manifest.digest
                return result
            } catch {
                lastError = error
                if csys_stop_signal() != 0 { break }
                if i + 1 < sources.count {
                    progress?.state("mirror", "\(src.mirror ? "mirror " : "")\(src.ref.string) failed (\(error)); trying the next source")
                }
            }
        }
        throw lastError ?? CtrError.internal("no registry to pull \(ref.string) from")
    }

    static func pull(_ name: Reference, from client: RegistryClient, as ref: Reference, store: Store, platform: Platform,
                     progress: TransferProgress?, parallel: Int, unpack: Bool = true) throws -> Result {
        let repo = ref.repository
        let tagOrDigest = ref.digest?.string ?? ref.tag ?? "latest"
        let (namedData, named) = try client.manifest(repo: repo, reference: tagOrDigest, expected: ref.digest)
        let resolved = named.digest
        let (desc, data, manifest, configData, config) = try ImageCopy.checkedImage(
            name.string, named, namedData, platform: platform, platformHint: "; use --platform",
            readManifest: { try client.manifest(repo: repo, reference: $0.digest.string, expected: $0.digest) },
            readConfig: { try client.smallBlob(repo: repo, $0) }, fail: { CtrError.invalid($0) })

        return try store.writing {
            let staging = PullStaging(store: store)
            do {
                let configTmp = store.ingestPath()
                try Store.writeFile(path: configTmp, data: configData, sync: true)
                staging.addBlob(manifest.config.digest, configTmp)

                var seen = Set<Digest>()
                var work: [LayerWork] = []
                var reused = 0
                for (layer, diffID) in zip(manifest.layers, config.rootfs.diffIDs) {
                    guard seen.insert(layer.digest).inserted else { continue }
                    let haveBlob = store.hasBlob(layer.digest)
                    let haveDir = access(store.layerPath(diffID), F_OK) == 0 || !unpack
                    if haveBlob && haveDir {
                        progress?.item(layer.digest.short, total: layer.size, counter: nil)
                        progress?.state(layer.digest.short, "exists")
                        reused += 1
                        continue
                    }
                    work.append(LayerWork(layer: layer, diffID: diffID, unpack: !haveDir, counter: Counter()))
                    progress?.item(layer.digest.short, total: layer.size, counter: work.last!.counter.pointer)
                    progress?.state(layer.digest.short, "waiting")
                }
                // the biggest first: the last layer to finish decides when the pull is done
                work.sort { $0.layer.size > $1.layer.size }
                try parallelEach(work, width: parallel) { w in
                    try fetchLayer(w, client: client, repo: repo, store: store, staging: staging, progress: progress)
                }
                try staging.commit()
                try store.putBlob(data, mediaType: desc.mediaType)
                let plain = Descriptor(mediaType: desc.mediaType, digest: desc.digest, size: desc.size)
                try store.setName(name, to: plain)
                store.recordSource(ref: ref, blobs: [manifest.config.digest] + manifest.layers.map(\.digest))
                return Result(digest: resolved, manifest: plain, imageID: manifest.config.digest, name: name,
                              downloaded: work.count, reused: reused, reports: staging.reports)
            } catch {
                staging.abort()
                throw error
            }
        }
    }

    struct LayerWork: Sendable {
        var layer: Descriptor
        var diffID: Digest
        var unpack: Bool
        var counter: Counter
    }

    /// The error for a layer that could not be unpacked (bad gzip, a broken tar). Most often the
    /// registry sent other bytes than the digest names, so the rest of the blob is fetched and
    /// the whole is hashed: a mismatch is reported as such; a blob that matches its digest was
    /// published broken, and the unpack error says how.
    static func contentError(_ e: CtrError, _ w: LayerWork, blobFD: Int32, blobPath: String, client: RegistryClient,
                             repo: String) -> Error {
        let unpackError = CtrError.invalid("layer \(w.layer.digest): \(e.message)", cause: e)
        if csys_stop_signal() != 0 { return unpackError }
        let have = lseek(blobFD, 0, SEEK_END)
        guard have >= 0, Int64(have) <= w.layer.size else { return unpackError }
        if Int64(have) < w.layer.size {
            do { try client.downloadBlob(repo: repo, w.layer, to: [blobFD], verifyDigest: false, from: UInt64(have)) } catch {
                return unpackError
            }
        }
        let fd = open(blobPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return unpackError }
        defer { close(fd) }
        guard let (actual, size) = Digest.sha256(fd: fd) else { return unpackError }
        if actual != w.layer.digest || size != UInt64(w.layer.size) {
            return CtrError.invalid("\(client.endpoint.registry): blob \(w.layer.digest) failed verification: what the registry sent hashes to \(actual) (\(size) bytes); nothing was stored")
        }
        return CtrError.invalid("layer \(w.layer.digest): \(e.message) (the blob matches its digest: the image was published with this layer broken)", cause: e)
    }

    /// Download one layer into ingest while a layer job unpacks it from a pipe.
    static func fetchLayer(_ w: LayerWork, client: RegistryClient, repo: String, store: Store, staging: PullStaging,
                           progress: TransferProgress?) throws {
        let id = w.layer.digest.short
        progress?.state(id, "downloading")
        let blobTmp = store.ingestPath()
        let blobFD = try valueOrErrno("open", "cannot create \(blobTmp)") { open(blobTmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        staging.addTemp(blobTmp)
        defer { close(blobFD) }
        do {
            if w.unpack {
                let tmpDir = "\(store.root)/layers/.tmp-\(UUID().uuidString.lowercased())"
                try valueOrErrno("mkdir", "cannot create \(tmpDir)") { mkdir(tmpDir, 0o755) }
                staging.addLayer(tmpDir, w.diffID)
                var p: [Int32] = [0, 0]
                try valueOrErrno("pipe", "cannot make a pipe") { csys_pipe_cloexec(&p) }
                let job: ApplyJob
                do {
                    job = try store.ops.startApply(inFD: p[0], to: tmpDir, tree: .overlay)
                } catch {
                    close(p[1])
                    throw error
                }
                var downloadError: Error?
                do {
                    // the layer job hashes what it reads; Store.check compares below
                    try client.downloadBlob(repo: repo, w.layer, to: [blobFD, p[1]], progress: w.counter.pointer, verifyDigest: false)
                } catch {
                    downloadError = error
                }
                close(p[1])
                let report: ApplyReport
                do {
                    // a failed write into the pipe: the layer job stopped reading, and its error says why
                    if let downloadError, (downloadError as? CtrError)?.transport?.kind != .write {
                        job.cancel()
                        _ = try? job.wait()
                        throw downloadError
                    }
                    report = try job.wait()
                } catch let e as CtrError where e.code == .system {
                    throw contentError(e, w, blobFD: blobFD, blobPath: blobTmp, client: client, repo: repo)
                }
                if let downloadError { throw downloadError }
                try Store.check(report.digests, layer: w.layer, diffID: w.diffID)
                staging.addReport(report)
            } else {
                // the layer is unpacked already (the same content came compressed differently)
                try client.downloadBlob(repo: repo, w.layer, to: [blobFD], progress: w.counter.pointer)
                do {
                    try Store.check(LayerOps.scan(blob: blobTmp), layer: w.layer, diffID: w.diffID)
                } catch let e as CtrError where e.code == .system {
                    throw CtrError.invalid("layer \(w.layer.digest): \(e.message)", cause: e)
                }
            }
            try valueOrErrno("fsync", "cannot sync \(blobTmp)") { fsync(blobFD) }
            staging.addBlob(w.layer.digest, blobTmp)
            progress?.state(id, "done")
        } catch {
            progress?.state(id, "failed")
            throw error
        }
    }
}

/// What a pull has written but not yet made visible; commit renames it all in, abort removes it.
final class PullStaging: @unchecked Sendable {
    let store: Store
    private let lock = NSLock()
    private var blobs: [(Digest, String)] = []
    private var temps: [String] = []
    private var layers: [(String, Digest)] = []
    private(set) var reports: [ApplyReport] = []

    init(store: Store) { self.store = store }

    func addTemp(_ p: String) { lock.lock(); temps.append(p); lock.unlock() }
    func addBlob(_ d: Digest, _ p: String) { lock.lock(); blobs.append((d, p)); temps.append(p); lock.unlock() }
    func addLayer(_ p: String, _ d: Digest) { lock.lock(); layers.append((p, d)); lock.unlock() }
    func addReport(_ r: ApplyReport) { lock.lock(); reports.append(r); lock.unlock() }

    func commit() throws {
        for (d, p) in blobs where !store.hasBlob(d) { try store.commit(file: p, as: d) }
        for (p, d) in layers { try store.installLayer(p, diffID: d) }
        layers.removeAll()
        abort() // leftovers: temps already moved are gone; the rest is removed
    }

    func abort() {
        for p in temps { unlink(p) }
        temps.removeAll()
        for (p, _) in layers { _ = try? store.ops.removeTree(p) }
        layers.removeAll()
    }
}

extension Store {
    /// Remember which repositories hold a blob, for cross-repository mounts when pushing.
    public func recordSource(ref: Reference, blobs: [Digest]) {
        let repo = "\(ref.registry)/\(ref.repository)"
        _ = try? withLock("sources.lock", .exclusive) {
            let path = "\(root)/blob-sources.json"
            var map = (FileManager.default.contents(atPath: path)).flatMap { try? JSONDecoder().decode([String: [String]].self, from: $0) } ?? [:]
            for b in blobs {
                var list = map[b.string] ?? []
                if !list.contains(repo) { list.append(repo) }
                map[b.string] = Array(list.suffix(8))
            }
            try Store.atomicWrite(path: path, data: CanonicalJSON.encode(map))
        }
    }

    /// Repositories (registry/repo) known to hold a blob.
    public func sources(of blob: Digest) -> [String] {
        let path = "\(root)/blob-sources.json"
        let map = (FileManager.default.contents(atPath: path)).flatMap { try? JSONDecoder().decode([String: [String]].self, from: $0) } ?? [:]
        return map[blob.string] ?? []
    }
}
