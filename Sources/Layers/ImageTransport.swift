import HostOS
import Errors
import Foundation

/// Where an image is, as containers-image names it: `oci:PATH[:REF]`, `oci-archive:PATH[:REF]`,
/// `docker-archive:PATH[:NAME|@N]`, `docker://REF`, or a plain name (the store, else a pull).
/// PATH ends at the first `:` after the transport, as skopeo and podman split it.
public enum ImageLocation: Sendable, Equatable, CustomStringConvertible {
    /// A name or id in the store, or a registry reference to pull.
    case named(String)
    /// `docker://REF`: a registry reference.
    case docker(String)
    case oci(path: String, ref: String?)
    case ociArchive(path: String, ref: String?)
    case dockerArchive(path: String, name: String?)
    /// An oci-archive or docker-archive, which one read from its content (`--image-archive`).
    case archive(path: String, ref: String?)

    public init(_ s: String) {
        func split(_ rest: Substring) -> (String, String?) {
            guard let c = rest.firstIndex(of: ":") else { return (String(rest), nil) }
            let ref = String(rest[rest.index(after: c)...])
            return (String(rest[..<c]), ref.isEmpty ? nil : ref)
        }
        if s.hasPrefix("docker://") {
            self = .docker(String(s.dropFirst("docker://".count)))
        } else if s.hasPrefix("oci-archive:") {
            let (p, r) = split(s.dropFirst("oci-archive:".count))
            self = .ociArchive(path: p, ref: r)
        } else if s.hasPrefix("docker-archive:") {
            let (p, r) = split(s.dropFirst("docker-archive:".count))
            self = .dockerArchive(path: p, name: r)
        } else if s.hasPrefix("oci:") {
            let (p, r) = split(s.dropFirst("oci:".count))
            self = .oci(path: p, ref: r)
        } else {
            self = .named(s)
        }
    }

    var isPlainArchive: Bool { if case .archive = self { return true } else { return false } }

    /// A layout or archive on disk (not the store, not a registry).
    public var isFile: Bool {
        switch self {
        case .named, .docker: return false
        case .oci, .ociArchive, .dockerArchive, .archive: return true
        }
    }

    /// The reference to look up in the store or pull (`named` and `docker://`).
    public var registryName: String? {
        switch self {
        case .named(let s), .docker(let s): return s
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .named(let s): return s
        case .docker(let s): return "docker://\(s)"
        case .oci(let p, let r): return "oci:\(p)" + (r.map { ":\($0)" } ?? "")
        case .ociArchive(let p, let r): return "oci-archive:\(p)" + (r.map { ":\($0)" } ?? "")
        case .dockerArchive(let p, let n): return "docker-archive:\(p)" + (n.map { ":\($0)" } ?? "")
        case .archive(let p, let r): return p + (r.map { ":\($0)" } ?? "")
        }
    }
}

/// Images in layouts and archives, named by `ImageLocation`: one image is picked and only its
/// blobs are copied (into the store, or to a sink), checked as every copy checks them.
public enum ImageTransport {
    /// The entries of a layout's index.json as they are (annotations untouched).
    static func layoutEntries(_ source: OCILayoutSource) throws -> [Descriptor] {
        guard let p = source.file("index.json"), let data = FileManager.default.contents(atPath: p) else {
            throw CtrError.invalid("\(source.label): no index.json (not an OCI layout)")
        }
        if let problem = ManifestSchema.problem(data, mediaType: nil) {
            throw CtrError.invalid("\(source.label): index.json \(problem)")
        }
        return try CanonicalJSON.decode(Index.self, from: data, what: "\(source.label) index.json").manifests
    }

    /// How an entry is named, for lists in errors: its ref.name, else its full name, else
    /// its digest.
    static func entryName(_ d: Descriptor) -> String {
        d.annotations?[Annotations.refName] ?? d.annotations?[Annotations.containerdName] ?? d.digest.string
    }

    /// Whether the layout entry `d` is the one `ref` names: its ref.name, its full name
    /// (`io.containerd.image.name`) as written or as the same reference (`app:1` for
    /// `docker.io/library/app:1`), or its digest.
    static func matches(_ d: Descriptor, _ ref: String) -> Bool {
        let refName = d.annotations?[Annotations.refName]
        let full = d.annotations?[Annotations.containerdName]
        if refName == ref || full == ref || d.digest.string == ref { return true }
        guard let want = try? Reference(parsing: ref) else { return false }
        if let full, let have = try? Reference(parsing: full), have == want { return true }
        if let refName, refName.contains(where: { "/:".contains($0) }), let have = try? Reference(parsing: refName), have == want { return true }
        return false
    }

    /// The one entry `ref` names (nil: the layout's only entry). Several entries and no ref, or
    /// a ref that names none, is an error listing the names there are.
    static func select(_ entries: [Descriptor], ref: String?, label: String) throws -> Descriptor {
        func names() -> String {
            entries.isEmpty ? "none" : entries.map(entryName).joined(separator: ", ")
        }
        guard let ref else {
            guard entries.count == 1 else {
                if entries.isEmpty { throw CtrError.invalid("\(label): the layout holds no image") }
                throw CtrError.invalid("\(label): the layout holds \(entries.count) images; name one as \(label):REF (it has: \(names()))")
            }
            return entries[0]
        }
        let found = entries.filter { matches($0, ref) }
        guard let first = found.first else { throw CtrError.notFound("\(label): no image named \"\(ref)\" (it has: \(names()))") }
        // the same manifest under two annotations is one image
        if Set(found.map(\.digest)).count > 1 {
            throw CtrError.conflict("\(label): \"\(ref)\" names \(found.count) images (\(found.map(\.digest.string).joined(separator: ", ")))")
        }
        return first
    }

    /// The source and the one image `loc` names in it. `scratch` is a directory for an
    /// archive's extracted files (the caller removes it).
    public static func open(_ loc: ImageLocation, scratch: () throws -> String) throws -> (ImageSource, SourceImage) {
        switch loc {
        case .named, .docker:
            throw CtrError.usage("\(loc): not a layout or archive")
        case .oci(let path, let ref):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw CtrError.notFound("\(loc): \(path): no such directory")
            }
            guard isDir.boolValue else { throw CtrError.invalid("\(loc): \(path) is not a directory (an archive is oci-archive:\(path))") }
            let src = OCILayoutSource(directory: path, label: "oci:\(path)")
            let d = try select(try layoutEntries(src), ref: ref, label: "oci:\(path)")
            return (src, SourceImage(names: [], descriptor: d))
        case .ociArchive(let path, let ref), .archive(let path, let ref), .dockerArchive(let path, let ref):
            guard access(path, R_OK) == 0 else { throw CtrError.notFound("\(loc): cannot read \(path)") }
            let ex = try ExtractedArchive.extract(path, into: try scratch())
            let isOCI: Bool
            switch loc {
            case .ociArchive:
                guard ex.entries["index.json"] != nil else { throw CtrError.invalid("\(loc): \(path) is not an oci-archive (no index.json)") }
                isOCI = true
            case .dockerArchive:
                guard ex.entries["manifest.json"] != nil else { throw CtrError.invalid("\(loc): \(path) is not a docker-archive (no manifest.json)") }
                isOCI = false
            default:
                guard ex.entries["index.json"] != nil || ex.entries["manifest.json"] != nil else {
                    throw CtrError.invalid("\(path): not an OCI archive or docker-archive (it has neither index.json nor manifest.json)")
                }
                isOCI = ex.entries["index.json"] != nil
            }
            if isOCI {
                let label = loc.isPlainArchive ? path : "oci-archive:\(path)"
                let src = OCILayoutSource(archive: ex, label: label)
                let d = try select(try layoutEntries(src), ref: ref, label: label)
                return (src, SourceImage(names: [], descriptor: d))
            }
            let label = loc.isPlainArchive ? path : "docker-archive:\(path)"
            let src = try DockerArchiveSource(archive: ex, label: label)
            return (src, SourceImage(names: [], descriptor: try selectDocker(src.images, name: ref, label: label).descriptor))
        }
    }

    /// The image of a docker-archive that `name` names: a RepoTag or `@N` (nil: the only one).
    static func selectDocker(_ images: [SourceImage], name: String?, label: String) throws -> SourceImage {
        func names() -> String {
            images.enumerated().map { i, im in im.names.isEmpty ? "@\(i)" : im.names.map(\.familiar).joined(separator: ", ") }.joined(separator: ", ")
        }
        guard let name else {
            guard images.count == 1 else {
                if images.isEmpty { throw CtrError.invalid("\(label): the archive holds no image") }
                throw CtrError.invalid("\(label): the archive holds \(images.count) images; name one as \(label):NAME or :@N (it has: \(names()))")
            }
            return images[0]
        }
        if name.hasPrefix("@"), let i = Int(name.dropFirst()) {
            guard images.indices.contains(i) else { throw CtrError.notFound("\(label): no image @\(i) (it has \(images.count))") }
            return images[i]
        }
        let want = try Reference(parsing: name)
        guard let im = images.first(where: { $0.names.contains(want) }) else {
            throw CtrError.notFound("\(label): no image named \"\(name)\" (it has: \(names()))")
        }
        return im
    }

    /// Copy the image `loc` names into the store, without a name (its record is the
    /// manifest's digest), and return its record. Only the blobs the store lacks are
    /// read; `unpack` false leaves its layers packed (for a push).
    public static func load(_ loc: ImageLocation, into store: Store, platform: Platform = .current,
                            unpack: Bool = true, progress: ((String) -> Void)? = nil) throws -> ImageRecord {
        var tmp: String?
        defer { if let tmp { try? FileManager.default.removeItem(atPath: tmp) } }
        return try store.writing {
            let (src, image) = try open(loc) {
                let t = "\(store.root)/ingest/transport-\(UUID().uuidString.lowercased())"
                try valueOrErrno("mkdir", "cannot create \(t)") { mkdir(t, 0o700) }
                tmp = t
                return t
            }
            let sink = StoreSink(store)
            sink.unpack = unpack
            let copied = try ImageCopy.copy([image], from: src, to: sink, platform: platform, progress: progress, label: loc.description)
            guard let c = copied.first else { throw CtrError.invalid("\(loc): no image") }
            // the record the sink wrote: the chosen manifest (for an index, the platform's)
            return ImageRecord(name: nil, descriptor: Descriptor(mediaType: c.descriptor.mediaType, digest: c.descriptor.digest, size: c.descriptor.size))
        }
    }

    /// Write store images to a layout or archive `dest`, each named as the destination says
    /// (`oci:DIR:REF` → ref.name REF; a docker-archive's NAME as its RepoTag).
    public static func write(_ record: ImageRecord, from store: Store, to dest: ImageLocation) throws {
        let source = StoreSource(store)
        var image = SourceImage(names: [], descriptor: record.descriptor)
        switch dest {
        case .named, .docker, .archive:
            throw CtrError.usage("\(dest): not a layout or archive to write (oci:, oci-archive:, docker-archive:)")
        case .oci(let path, let ref):
            if let ref, let n = try? Reference(parsing: ref), ref.contains(":") || ref.contains("/") { image.names = [n] }
            try ImageArchive.write([image], from: source, format: .ociDir, output: path, store: store, refName: ref)
        case .ociArchive(let path, let ref), .dockerArchive(let path, let ref):
            if let ref {
                guard let n = try? Reference(parsing: ref) else { throw CtrError.usage("\(dest): \"\(ref)\" is not an image name") }
                image.names = [n]
            }
            if case .ociArchive = dest {
                try ImageArchive.write([image], from: source, format: .ociArchive, output: path, store: store, refName: ref)
            } else {
                try ImageArchive.write([image], from: source, format: .dockerArchive, output: path, store: store)
            }
        }
    }
}

extension Store {
    /// An image named as the user named it: a layout or archive location (its image copied in
    /// first, nameless, `unpack` as asked), `docker://REF` (REF in the store), or a name or id
    /// in the store.
    public func locate(_ s: String, unpack: Bool = false, platform: Platform = .current) throws -> ImageRecord {
        let loc = ImageLocation(s)
        if loc.isFile { return try ImageTransport.load(loc, into: self, platform: platform, unpack: unpack) }
        return try resolve(loc.registryName ?? s)
    }

    /// `locate`, as a string `resolve` takes (the manifest digest of a layout's image).
    public func locateName(_ s: String, unpack: Bool = false) throws -> String {
        let loc = ImageLocation(s)
        if loc.isFile { return try locate(s, unpack: unpack).descriptor.digest.string }
        return loc.registryName ?? s
    }
}
