import Errors
import Foundation
import HostOS

/// The store as a source: its blobs were verified when they entered.
public struct StoreSource: ImageSource {
    public let store: Store
    public init(_ store: Store) { self.store = store }

    public func read(_ d: Descriptor) throws -> Data {
        let data = try store.readBlob(d.digest)
        if Int64(data.count) != d.size {
            throw CtrError.invalid("blob \(d.digest) has \(data.count) bytes, its descriptor says \(d.size)")
        }
        return data
    }

    public func blob(_ d: Descriptor) throws -> BlobFile {
        guard store.hasBlob(d.digest) else { throw CtrError.notFound("blob \(d.digest) is missing from the store") }
        return BlobFile(path: store.blobPath(d.digest), verified: true, movable: false)
    }

    /// Images by the names the user gave (each resolved in the store).
    public func images(_ refs: [String]) throws -> [SourceImage] {
        try refs.map { s in
            let r = try store.resolve(s)
            // the name only when the image was named by it: one given by id goes nameless, as
            // docker save writes it (not with whichever of its names comes first)
            let named = (try? Reference(parsing: s)).map { $0 == r.name } ?? false
            // a name given without a tag (`build`) is the layout's ref as given, not `latest`
            let untagged = named && (try? Reference(parsing: s, defaultTag: false))?.tag == nil
                && !s.contains("@") && Annotations.isValidRefName(s)
            return SourceImage(names: named ? r.name.map { [$0] } ?? [] : [], descriptor: r.descriptor,
                               refName: untagged ? s : nil)
        }
    }
}

/// The store as a sink. Nothing becomes visible until `finish`: blobs are staged, each layer
/// is unpacked into a temporary directory (which checks its digest and diff-id), and only when
/// every image checks out are blobs renamed in, layers installed and names written. A failure
/// leaves the store as it was.
public final class StoreSink: ImageSink {
    public let store: Store
    public private(set) var images: [CopiedImage] = []
    /// Unpacking reports (for notes about skipped device nodes).
    public private(set) var reports: [ApplyReport] = []
    public var unpack = true
    private var staged: [Digest: (path: String, owned: Bool, verified: Bool)] = [:]
    private var tmpLayers: [(String, Digest)] = []

    public init(_ store: Store) { self.store = store }

    public func hasBlob(_ d: Descriptor) -> Bool { store.hasBlob(d.digest) || staged[d.digest] != nil }

    public func putBlob(_ d: Descriptor, from file: BlobFile) throws {
        if file.movable {
            staged[d.digest] = (file.path, false, file.verified)
            return
        }
        let tmp = store.ingestPath()
        staged[d.digest] = (tmp, true, file.verified)
        try FileCopy.copy(file.path, to: tmp)
        if !file.verified {
            try Store.verifyFile(tmp, d)
            staged[d.digest] = (tmp, true, true)
        }
    }

    public func abort() {
        for (p, _) in tmpLayers { _ = try? store.ops.removeTree(p) }
        tmpLayers.removeAll()
        for (_, s) in staged where s.owned { unlink(s.path) }
        staged.removeAll()
    }

    public func putImage(_ image: CopiedImage) throws {
        images.append(image)
    }

    public func finish() throws {
        do {
            try finishOrThrow()
        } catch {
            abort()
            throw error
        }
    }

    private func finishOrThrow() throws {
        // 1. check every blob that is not known good
        for image in images {
            for blob in [image.manifest.config] where !store.hasBlob(blob.digest) {
                if let s = staged[blob.digest], !s.verified { _ = try ImageCopy.readVerified(s.path, blob) }
            }
            var unpackedHere = Set<Digest>()
            for (layer, diffID) in zip(image.manifest.layers, image.config.rootfs.diffIDs) {
                if store.hasBlob(layer.digest) && !unpack { continue }
                let haveDir = access(store.layerPath(diffID), F_OK) == 0 || unpackedHere.contains(diffID)
                if store.hasBlob(layer.digest) && haveDir { continue }
                let path = staged[layer.digest]?.path ?? store.blobPath(layer.digest)
                if unpack && !haveDir {
                    let (tmp, report) = try store.unpackLayer(blob: path, layer: layer, diffID: diffID)
                    tmpLayers.append((tmp, diffID))
                    reports.append(report)
                    unpackedHere.insert(diffID)
                } else if !store.hasBlob(layer.digest) {
                    do {
                        try Store.check(LayerOps.scan(blob: path), layer: layer, diffID: diffID)
                    } catch let e as CtrError where e.code == .system {
                        throw CtrError.invalid("layer \(layer.digest): \(e.message)", cause: e)
                    }
                }
            }
        }
        // 2. commit: blobs, layers, manifests, names
        for (digest, s) in staged where !store.hasBlob(digest) {
            try store.commit(file: s.path, as: digest)
        }
        staged.removeAll()
        for (tmp, diffID) in tmpLayers { try store.installLayer(tmp, diffID: diffID) }
        tmpLayers.removeAll()
        for image in images {
            try store.putBlob(image.manifestData, mediaType: image.descriptor.mediaType)
            let desc = Descriptor(mediaType: image.descriptor.mediaType, digest: image.descriptor.digest, size: image.descriptor.size)
            if image.names.isEmpty {
                try store.updateIndex { records in
                    if !records.contains(where: { $0.descriptor.digest == desc.digest }) {
                        records.append(ImageRecord(name: nil, descriptor: desc))
                    }
                }
            }
            for name in image.names { try store.setName(name, to: desc) }
        }
    }
}
