import Foundation
import HostOS

/// `ctr push`: blobs the registry lacks are mounted from another repository of the same
/// registry when ctr knows one that has them, else uploaded (in one PUT, or in chunks for big
/// blobs); then the manifest.
public enum ImagePush {
    public struct Result: Sendable {
        public var digest: Digest
        public var size: Int64
        public var uploaded: Int
        public var mounted: Int
        public var existing: Int
    }

    public static func run(_ image: ImageRecord, to dest: Reference, store: Store, access: RegistryAccess,
                           progress: TransferProgress? = nil, parallel: Int = 3, chunkSize: Int64? = nil) throws -> Result {
        let (client, target) = try access.pushTarget(dest)
        let repo = target.repository
        let manifestData = try store.readBlob(image.descriptor.digest)
        let manifest = try CanonicalJSON.decode(Manifest.self, from: manifestData, what: "manifest \(image.descriptor.digest)")
        let blobs = [manifest.config] + manifest.layers
        let stats = PushStats()
        var seen = Set<Digest>()
        let unique = blobs.filter { seen.insert($0.digest).inserted }
        var counters: [Digest: Counter] = [:]
        for b in unique {
            let c = Counter()
            counters[b.digest] = c
            progress?.item(b.digest.short, total: b.size, counter: c.pointer)
            progress?.state(b.digest.short, "waiting")
        }
        let work = unique.map { ($0, counters[$0.digest]!) }
        try parallelEach(work, width: parallel) { (blob, counter) in
            let id = blob.digest.short
            do {
                if try client.blobExists(repo: repo, blob.digest) {
                    progress?.state(id, "exists")
                    stats.add(existing: 1)
                    return
                }
                var location: String?
                // a repository of the same registry that has it: mount instead of upload
                let prefix = "\(target.registry)/"
                for src in store.sources(of: blob.digest) where src.hasPrefix(prefix) {
                    let from = String(src.dropFirst(prefix.count))
                    guard from != repo else { continue }
                    switch try client.mountBlob(repo: repo, blob.digest, from: from) {
                    case .mounted:
                        progress?.state(id, "mounted")
                        stats.add(mounted: 1)
                        return
                    case .upload(let loc):
                        location = loc
                    }
                    break
                }
                progress?.state(id, "uploading")
                let loc = try location ?? client.startUpload(repo: repo)
                let file = store.blobPath(blob.digest)
                let chunk = chunkSize ?? Self.defaultChunk
                if blob.size > chunk {
                    try client.uploadChunked(repo: repo, location: loc, file: file, blob, chunkSize: chunk)
                } else {
                    try client.uploadMonolithic(repo: repo, location: loc, file: file, blob)
                }
                counter.pointer.pointee = UInt64(blob.size)
                progress?.state(id, "done")
                stats.add(uploaded: 1)
            } catch {
                progress?.state(id, "failed")
                throw error
            }
        }
        let reference = target.digest?.string ?? target.tag ?? "latest"
        let digest = try client.putManifest(repo: repo, reference: reference, data: manifestData, mediaType: image.descriptor.mediaType)
        store.recordSource(ref: target, blobs: blobs.map(\.digest))
        return Result(digest: digest, size: Int64(manifestData.count), uploaded: stats.uploaded, mounted: stats.mounted,
                      existing: stats.existing)
    }

    /// Blobs above this go up in PATCH chunks of this size; below, in one PUT.
    public static let defaultChunk: Int64 = 256 << 20
}

final class PushStats: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var uploaded = 0, mounted = 0, existing = 0
    func add(uploaded u: Int = 0, mounted m: Int = 0, existing e: Int = 0) {
        lock.lock()
        uploaded += u
        mounted += m
        existing += e
        lock.unlock()
    }
}
