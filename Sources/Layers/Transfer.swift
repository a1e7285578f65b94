import CSysShims
import Errors
import Foundation
import HostOS

/// A blob a source can hand over: a file, whether its digest has already been checked, and
/// whether the sink may move it instead of copying it.
public struct BlobFile: Sendable {
    public var path: String
    public var verified: Bool
    public var movable: Bool
    public init(path: String, verified: Bool, movable: Bool) {
        self.path = path
        self.verified = verified
        self.movable = movable
    }
}

/// An image as a source lists it: the names it carries and its manifest (or index).
public struct SourceImage: Sendable {
    public var names: [Reference]
    public var descriptor: Descriptor
    /// An OCI layout entry named only by a tag (`org.opencontainers.image.ref.name` "latest",
    /// no full name): it comes without a name, as docker and containerd load it.
    public var tagOnly: String?
    /// The OCI ref.name a layout should give it, where it is not the tag of `names` (an image
    /// named `build` with no tag is ref `build`, not `latest`).
    public var refName: String?
    public init(names: [Reference], descriptor: Descriptor, tagOnly: String? = nil, refName: String? = nil) {
        self.names = names
        self.descriptor = descriptor
        self.tagOnly = tagOnly
        self.refName = refName
    }
}

/// Where images come from: the store, an OCI layout, an archive (and later a registry).
public protocol ImageSource {
    /// Bytes of a small blob (manifest, index, config), verified against `d`.
    func read(_ d: Descriptor) throws -> Data
    /// A file holding the blob.
    func blob(_ d: Descriptor) throws -> BlobFile
}

/// Where images go: the store, an OCI layout directory, an oci-archive or a docker-archive.
public protocol ImageSink: AnyObject {
    func hasBlob(_ d: Descriptor) -> Bool
    func putBlob(_ d: Descriptor, from file: BlobFile) throws
    /// After its config and layers: the manifest itself and the image's names.
    func putImage(_ image: CopiedImage) throws
    /// Make everything visible (write indexes, commit). Nothing is visible before.
    func finish() throws
    /// Drop what was staged after a failure.
    func abort()
}

extension ImageSink {
    public func abort() {}
}

/// One image after a copy: what the sink was given.
public struct CopiedImage: Sendable {
    public var names: [Reference]
    public var descriptor: Descriptor   // the manifest
    public var manifestData: Data
    public var manifest: Manifest
    public var config: ImageConfig
    /// See `SourceImage.refName`.
    public var refName: String?
}

/// The one copy routine: for each image resolve the manifest (picking `platform` from an
/// index), check it, hand the config and layers to the sink, then the manifest. `label` (an
/// archive's path) goes in front of the copy's own errors about the images, as the sources of
/// an archive put it in front of theirs: the archive is named in every error about its content.
public enum ImageCopy {
    public static func copy(_ images: [SourceImage], from source: ImageSource, to sink: ImageSink,
                            platform: Platform = .current, progress: ((String) -> Void)? = nil,
                            label: String? = nil) throws -> [CopiedImage] {
        do {
            return try copyOrThrow(images, from: source, to: sink, platform: platform, progress: progress, label: label)
        } catch {
            sink.abort()
            throw error
        }
    }

    static func copyOrThrow(_ images: [SourceImage], from source: ImageSource, to sink: ImageSink,
                            platform: Platform, progress: ((String) -> Void)?, label: String?) throws -> [CopiedImage] {
        let named = { (m: String) in label.map { "\($0): \(m)" } ?? m }
        var done: [CopiedImage] = []
        for image in images {
            let (desc, data, manifest, _, config) = try checkedImage(
                "image \(image.descriptor.digest)", image.descriptor, try source.read(image.descriptor), platform: platform,
                readManifest: { d in (try source.read(d), d) }, readConfig: { try source.read($0) }, fail: { CtrError.invalid(named($0)) })
            for blob in [manifest.config] + manifest.layers where !sink.hasBlob(blob) {
                // a stop signal (Ctrl-C) ends the copy here; the sink removes what it wrote
                if csys_stop_signal() != 0 { throw CtrError(.interrupted(signal: csys_stop_signal()), named("interrupted")) }
                progress?("copying blob \(blob.digest.short)")
                try sink.putBlob(blob, from: source.blob(blob))
            }
            var copied = CopiedImage(names: image.names, descriptor: desc, manifestData: data, manifest: manifest, config: config)
            copied.refName = image.refName
            try sink.putImage(copied)
            done.append(copied)
        }
        try sink.finish()
        return done
    }

    static func isIndexJSON(_ data: Data, _ desc: Descriptor) -> Bool {
        guard !desc.mediaType.isManifest,
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return obj["manifests"] != nil && obj["layers"] == nil
    }

    /// The image a manifest or index names, checked as an image before anything is copied:
    /// an index gives its manifest for `platform` (read with `readManifest`), the media types
    /// must be an image's, and the config (read with `readConfig`) must list a diff-id per
    /// layer. Errors are made by `fail` from a message that starts with `what`.
    static func checkedImage(_ what: String, _ named: Descriptor, _ namedData: Data, platform: Platform,
                             platformHint: String = "",
                             readManifest: (Descriptor) throws -> (Data, Descriptor),
                             readConfig: (Descriptor) throws -> Data,
                             fail: (String) -> any Error) throws -> (Descriptor, Data, Manifest, Data, ImageConfig) {
        var desc = named, data = namedData
        if let problem = ManifestSchema.problem(data, mediaType: desc.mediaType) { throw fail("\(what) \(problem)") }
        if desc.mediaType.isIndex || isIndexJSON(data, desc) {
            let index = try CanonicalJSON.decode(Index.self, from: data, what: "image index \(desc.digest)")
            guard let chosen = pick(index, platform: platform) else {
                let have = index.manifests.compactMap { $0.platform?.description }.joined(separator: ", ")
                throw fail("\(what) has no image for \(platform) (it has: \(have.isEmpty ? "none" : have))\(platformHint)")
            }
            (data, desc) = try readManifest(chosen)
            if let problem = ManifestSchema.problem(data, mediaType: desc.mediaType) {
                throw fail("\(what): its manifest for \(platform) (\(chosen.digest)) \(problem)")
            }
            if !desc.mediaType.isManifest { desc.mediaType = chosen.mediaType }
        }
        guard desc.mediaType.isManifest else { throw fail("\(what): unsupported manifest media type \(desc.mediaType)") }
        let manifest = try CanonicalJSON.decode(Manifest.self, from: data, what: "manifest \(desc.digest)")
        guard manifest.config.mediaType.isConfig else {
            throw fail("\(what): unsupported config media type \(manifest.config.mediaType) (not a container image)")
        }
        for l in manifest.layers where !l.mediaType.isLayer {
            throw fail("\(what): layer \(l.digest) has unsupported media type \(l.mediaType)")
        }
        let configData = try readConfig(manifest.config)
        let config = try CanonicalJSON.decode(ImageConfig.self, from: configData, what: "image config \(manifest.config.digest)")
        if config.rootfs.diffIDs.count != manifest.layers.count {
            throw fail("\(what): the config lists \(config.rootfs.diffIDs.count) layers, the manifest \(manifest.layers.count)")
        }
        return (desc, data, manifest, configData, config)
    }

    public static func pick(_ index: Index, platform: Platform) -> Descriptor? {
        index.manifests.first { d in
            guard d.mediaType.isManifest else { return false }
            guard let p = d.platform else { return index.manifests.count == 1 }
            return p.matches(platform)
        }
    }

    /// Read a file and check it against a descriptor.
    public static func readVerified(_ path: String, _ d: Descriptor) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CtrError.notFound("blob \(d.digest) is missing")
        }
        try verify(data, d)
        return data
    }

    public static func verify(_ data: Data, _ d: Descriptor) throws {
        if Int64(data.count) != d.size {
            throw CtrError.invalid("blob \(d.digest) has \(data.count) bytes, its descriptor says \(d.size)")
        }
        let actual = Digest.sha256(data)
        if actual != d.digest {
            throw CtrError.invalid("blob \(d.digest) failed verification: its content hashes to \(actual)")
        }
    }
}

/// Copy a file with copy_file_range (reflinks where the file system can), hashing the
/// result when asked.
public enum FileCopy {
    public static func copy(_ from: String, to: String) throws {
        let src = try valueOrErrno("open", "cannot open \(from)") { open(from, O_RDONLY | O_CLOEXEC) }
        defer { close(src) }
        let dst = try valueOrErrno("open", "cannot create \(to)") { open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        defer { close(dst) }
        while true {
            let n = csys_copy_file_range(src, dst, 1 << 30)
            if n == 0 { break }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                if Glibc.errno == EXDEV || Glibc.errno == ENOSYS || Glibc.errno == EINVAL { return try slowCopy(src, dst, to) }
                throw CtrError.errno("copy", "cannot copy \(from) to \(to)")
            }
        }
    }

    private static func slowCopy(_ src: Int32, _ dst: Int32, _ to: String) throws {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(src, &buf, buf.count)
            if n == 0 { return }
            if n < 0 { if Glibc.errno == EINTR { continue }; throw CtrError.errno("copy", "cannot read") }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(dst, $0.baseAddress! + off, n - off) }
                if w < 0 { if Glibc.errno == EINTR { continue }; throw CtrError.errno("copy", "cannot write \(to)") }
                off += w
            }
        }
    }
}
