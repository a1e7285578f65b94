import Foundation

/// An image of the store read whole: its record, manifest and config (decoded, and the bytes
/// as stored).
public struct ImageInfo {
    public var record: ImageRecord
    public var manifest: Manifest
    public var config: ImageConfig
    public var configData: Data
    public var manifestData: Data
    /// The config and the layers as stored (compressed), as `docker images` counts them.
    public var size: Int64 { manifest.config.size + manifest.layers.reduce(0) { $0 + $1.size } }
    /// The image id: the config's digest.
    public var id: Digest { manifest.config.digest }

    public init(_ r: ImageRecord, store: Store) throws {
        record = r
        manifestData = try store.readBlob(r.descriptor.digest)
        manifest = try CanonicalJSON.decode(Manifest.self, from: manifestData, what: "manifest \(r.descriptor.digest)")
        configData = try store.readBlob(manifest.config.digest)
        config = try CanonicalJSON.decode(ImageConfig.self, from: configData, what: "image config \(manifest.config.digest)")
    }
}

/// `ctr images`: the store's images, or one repository's.
public struct ImageListing {
    public var images: [ImageInfo] = []
    /// Images whose manifest or config could not be read, named, with why.
    public var unreadable: [(image: String, error: any Error)] = []

    /// `repository` as `docker images` takes it: REPOSITORY or REPOSITORY:TAG (no default tag).
    public init(_ store: Store, repository: String? = nil) throws {
        var wanted: (name: String, tag: String?)?
        if let repository {
            let ref = try Reference(parsing: repository, defaultTag: false)
            wanted = (ref.name, ref.tag)
        }
        for r in try store.images() {
            if let wanted, r.name?.name != wanted.name || (wanted.tag != nil && r.name?.tag != wanted.tag) { continue }
            do { images.append(try ImageInfo(r, store: store)) } catch {
                unreadable.append((r.name?.string ?? r.descriptor.digest.string, error))
            }
        }
    }

    /// The image ids, each once, in listing order (`ctr images -q`).
    public var ids: [Digest] {
        var seen = Set<Digest>()
        return images.map(\.id).filter { seen.insert($0).inserted }
    }
}

/// `ctr inspect`: docker's shape of an image (Id, RepoTags, RepoDigests, Config, RootFS, …)
/// plus the manifest and config as stored.
public enum ImageInspection {
    /// The documents of the images found, in order, and the errors of those not found (docker
    /// shows the first and reports the others after them).
    public static func inspect(_ images: [String], store: Store) throws -> (documents: [[String: Any]], missing: [any Error]) {
        var out: [[String: Any]] = []
        var missing: [any Error] = []
        let records = try store.images()
        for s in images {
            let r: ImageRecord
            do { r = try store.locate(s) } catch { missing.append(error); continue }
            out.append(try document(ImageInfo(r, store: store), records: records))
        }
        return (out, missing)
    }

    /// One image's document; `records` (the store's index) give its other names.
    public static func document(_ i: ImageInfo, records: [ImageRecord]) throws -> [String: Any] {
        let r = i.record
        let named = records.filter { $0.descriptor.digest == r.descriptor.digest }.compactMap(\.name)
        var repoDigests: [String] = []
        for n in named where !repoDigests.contains("\(n.name)@\(r.descriptor.digest)") { repoDigests.append("\(n.name)@\(r.descriptor.digest)") }
        let manifest = try JSONSerialization.jsonObject(with: i.manifestData)
        let config = try JSONSerialization.jsonObject(with: i.configData)
        var o: [String: Any] = [
            "Id": i.manifest.config.digest.string,
            "Digest": r.descriptor.digest.string,
            "RepoTags": named.map(\.string),
            "RepoDigests": repoDigests,
            "Author": i.config.author ?? "",
            "User": i.config.config?.user ?? "",
            "Labels": i.config.config?.labels ?? [String: String](),
            "Created": i.config.created ?? NSNull(),
            "Architecture": i.config.architecture,
            "Os": i.config.os,
            "Size": i.size,
            "ManifestMediaType": r.descriptor.mediaType.rawValue,
            "Manifest": manifest,
            "ImageConfig": config,
            "Layers": i.manifest.layers.map(\.digest.string),
        ]
        if let c = config as? [String: Any] {
            o["Config"] = c["config"] ?? [String: Any]()
            o["History"] = c["history"] ?? []
        }
        // docker's and podman's shape: the diff-ids under RootFS.Layers
        o["RootFS"] = ["Type": "layers", "Layers": i.config.rootfs.diffIDs.map(\.string)]
        return o
    }
}
