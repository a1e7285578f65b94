import Errors
import Foundation
import HostOS

/// An image's files outside the store, as a plain tree: `ctr unpack` (DIR/rootfs and
/// DIR/metadata.json) and the files outputs of `ctr build` (BuildKit's local and tar).
/// Every layer blob is checked against its digest and diff-id as it is applied.
public enum ImageUnpack {
    /// The image's files, layer by layer, into the directory `root`. `applying` is called
    /// once, before the first layer is written.
    public static func applyLayers(_ image: ImageInfo, store: Store, to root: String,
                                   applying: () -> Void = {}) throws -> [ApplyReport] {
        applying()
        var reports: [ApplyReport] = []
        for (layer, diffID) in zip(image.manifest.layers, image.config.rootfs.diffIDs) {
            let report: ApplyReport
            do {
                report = try store.ops.apply(blob: store.blobPath(layer.digest), to: root, tree: .plain)
            } catch let e as CtrError where e.code == .system {
                throw CtrError.invalid("layer \(layer.digest): \(e.message)", cause: e)
            }
            try Store.check(report.digests, layer: layer, diffID: diffID)
            reports.append(report)
        }
        return reports
    }

    /// DESTINATION/rootfs (which must not exist yet) and DESTINATION/metadata.json. A layer
    /// that fails leaves no half-unpacked rootfs behind.
    public static func unpack(_ record: ImageRecord, store: Store, to destination: String,
                              applying: () -> Void = {}) throws -> [ApplyReport] {
        let info = try ImageInfo(record, store: store)
        let rootfs = "\(destination)/rootfs"
        if mkdir(destination, 0o755) != 0 && errno != EEXIST {
            throw CtrError.errno("mkdir", "cannot create \(destination)")
        }
        if mkdir(rootfs, 0o755) != 0 {
            if errno == EEXIST { throw CtrError.conflict("\(rootfs) already exists") }
            throw CtrError.errno("mkdir", "cannot create \(rootfs)")
        }
        let reports: [ApplyReport]
        do { reports = try applyLayers(info, store: store, to: rootfs, applying: applying) } catch {
            _ = try? store.ops.removeTree(rootfs)
            throw error
        }
        try Store.writeFile(path: "\(destination)/metadata.json", data: try metadata(info.config), sync: false)
        return reports
    }

    /// metadata.json: {env, user} always, workingDir, entrypoint and cmd when the image sets them.
    public static func metadata(_ config: ImageConfig) throws -> Data {
        let c = config.config
        var meta: [String: Any] = ["env": c?.env ?? [], "user": c?.user ?? ""]
        if let w = c?.workingDir { meta["workingDir"] = w }
        if let e = c?.entrypoint { meta["entrypoint"] = e }
        if let cmd = c?.cmd { meta["cmd"] = cmd }
        let data = try JSONSerialization.data(withJSONObject: meta, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return data + Data("\n".utf8)
    }

    /// The image's files into `directory` (created when missing; what is there stays unless a
    /// layer replaces it): BuildKit's local output.
    public static func files(_ record: ImageRecord, store: Store, to directory: String,
                             applying: () -> Void = {}) throws -> [ApplyReport] {
        let info = try ImageInfo(record, store: store)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try applyLayers(info, store: store, to: directory, applying: applying)
    }

    /// An uncompressed tar of the image's files at `output` (BuildKit's tar output), made from
    /// a tree in `scratch` (a directory the caller removes).
    public static func tar(_ record: ImageRecord, store: Store, to output: String, scratch: String,
                           applying: () -> Void = {}) throws -> [ApplyReport] {
        let reports = try files(record, store: store, to: scratch, applying: applying)
        _ = try store.ops.create(from: scratch, to: output, tree: .plain, compression: .none)
        return reports
    }
}
