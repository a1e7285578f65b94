import Errors
import Foundation
import HostOS

/// `ctr import`: a directory or a tarball (plain, gzip, zstd) becomes a one-layer image.
public enum ImageImport {
    public struct Result: Sendable {
        public var image: CopiedImage
        public var imageID: Digest
        public var reports: [ApplyReport]
    }

    /// Times for created/history: SOURCE_DATE_EPOCH when set, else now.
    public static func timestamp(environment env: [String: String] = ProcessInfo.processInfo.environment) -> (String, Int64?) {
        let epoch = env["SOURCE_DATE_EPOCH"].flatMap { Int64($0) }
        return (created(epoch: epoch), epoch)
    }

    /// The created time of an image made now: `epoch` (SOURCE_DATE_EPOCH) when given.
    public static func created(epoch: Int64?) -> String {
        if let epoch { return rfc3339(Date(timeIntervalSince1970: TimeInterval(epoch)), fractional: false) }
        return rfc3339(Date(), fractional: true)
    }

    public static func rfc3339(_ d: Date, fractional: Bool) -> String {
        // by hand: ISO8601DateFormatter costs milliseconds to set up, and this is on ctr run's path
        let t = d.timeIntervalSince1970
        var secs = time_t(t.rounded(.down))
        var ms = Int(((t - Double(secs)) * 1000).rounded())
        if ms == 1000 { secs += 1; ms = 0 }
        var tm = tm()
        gmtime_r(&secs, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var s = "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))"
        if fractional { s += "." + String(String(ms + 1000).dropFirst()) }
        return s + "Z"
    }

    /// `names`: every name the image gets (none: it is known by its id).
    public static func run(source: String, store: Store, names: [Reference], changes: [String], message: String?,
                           platform: Platform = .current) throws -> Result {
        var containerConfig = ContainerConfig()
        for c in changes { try ConfigChange.apply(c, to: &containerConfig) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else {
            throw CtrError.notFound("\(source): no such file or directory")
        }
        let (created, epoch) = timestamp()
        // an xz or bzip2 tarball, as docker and podman import take it: decompressed first
        let given = (source as NSString).lastPathComponent
        // everything written into ingest/ and the store is unreferenced until the image is
        // named: the gc lock is held shared from the first file on
        return try store.writing {
            var source = source
            let plain = store.ingestPath()
            defer { unlink(plain) }
            if !isDir.boolValue, try LayerOps.decompressOther(source, to: plain) { source = plain }
            let tmp = store.ingestPath()
            var layer: Descriptor
            var diffID: Digest
            do {
                if isDir.boolValue {
                    let d = try store.ops.create(from: source, to: tmp, tree: .plain, compression: .gzip, clampMtime: epoch)
                    layer = Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)
                    diffID = d.diffID
                } else {
                    do {
                        (layer, diffID) = try LayerOps.stageTarball(source, to: tmp)
                    } catch let e as CtrError where e.code == .system {
                        throw CtrError.invalid("\(source): \(e.message)", cause: e)
                    }
                }
            } catch {
                unlink(tmp)
                throw error
            }
            let config = ImageConfig(
                created: created, architecture: platform.architecture, os: platform.os, variant: platform.variant,
                config: containerConfig, rootfs: RootFS(diffIDs: [diffID]),
                history: [History(created: created, createdBy: "ctr import", comment: message ?? "imported from \(given)")])
            let configData = try CanonicalJSON.encode(config)
            let configTmp = store.ingestPath()
            try Store.writeFile(path: configTmp, data: configData, sync: false)
            let configDesc = Descriptor(mediaType: .ociConfig, digest: Digest.sha256(configData), size: Int64(configData.count))
            let manifest = Manifest(mediaType: .ociManifest, config: configDesc, layers: [layer])
            let manifestData = try CanonicalJSON.encode(manifest)
            let manifestDesc = Descriptor(mediaType: .ociManifest, digest: Digest.sha256(manifestData), size: Int64(manifestData.count))

            let sink = StoreSink(store)
            defer { unlink(tmp); unlink(configTmp) }
            try sink.putBlob(layer, from: BlobFile(path: tmp, verified: true, movable: true))
            try sink.putBlob(configDesc, from: BlobFile(path: configTmp, verified: true, movable: true))
            let image = CopiedImage(names: names, descriptor: manifestDesc, manifestData: manifestData,
                                    manifest: manifest, config: config)
            try sink.putImage(image)
            try sink.finish()
            return Result(image: image, imageID: configDesc.digest, reports: sink.reports)
        }
    }
}
