import CSysShims
import Errors
import Foundation
import HostOS

/// Image archive formats `ctr save` writes and `ctr load` reads.
public enum ArchiveFormat: String, Sendable, CaseIterable {
    case ociArchive = "oci-archive"
    case dockerArchive = "docker-archive"
    case ociDir = "oci-dir"
}

public enum Annotations {
    public static let refName = "org.opencontainers.image.ref.name"
    public static let containerdName = "io.containerd.image.name"

    /// The image spec's grammar for ref.name: components of letters and digits joined by
    /// `-._:@+` or `--`, separated by `/` (so no `..`, no leading `/`, nothing empty).
    public static func isValidRefName(_ s: String) -> Bool {
        let component = "[A-Za-z0-9]+(([-._:@+]|--)[A-Za-z0-9]+)*"
        return s.range(of: "^\(component)(/\(component))*$", options: .regularExpression) != nil
    }
}

/// The files of an extracted archive: entry name → file, digest, size.
public struct ExtractedArchive {
    public struct Entry { public var path: String; public var digest: Digest; public var size: Int64 }
    public let dir: String
    public let entries: [String: Entry]

    /// Extract every regular file of the tar (any compression) at `archive` into `dir`
    /// (which must exist), hashing each on the way.
    public static func extract(_ archive: String, into dir: String) throws -> ExtractedArchive {
        let inFD = try valueOrErrno("open", "cannot open \(archive)") { open(archive, O_RDONLY | O_CLOEXEC) }
        defer { close(inFD) }
        let dirFD = try valueOrErrno("open", "cannot open \(dir)") { open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(dirFD) }
        var listing: UnsafeMutablePointer<CChar>?
        var err = csys_error()
        if csys_tar_extract_files(inFD, dirFD, &listing, &err) != 0 {
            throw CtrError.invalid("\(archive): \(CtrError(err).message)")
        }
        defer { csys_free(listing) }
        var entries: [String: Entry] = [:]
        for line in String(cString: listing!).split(separator: "\n") {
            let f = line.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
            guard f.count == 4, let size = Int64(f[2]) else { continue }
            entries[String(f[3])] = Entry(path: "\(dir)/\(f[0])", digest: Digest(sha256Hex: String(f[1])), size: size)
        }
        return ExtractedArchive(dir: dir, entries: entries)
    }
}

// MARK: - OCI layout (directory or extracted archive)

/// An OCI image layout as a source: a directory, or the entries of an extracted oci-archive.
public struct OCILayoutSource: ImageSource {
    let dir: String?
    let archive: ExtractedArchive?
    let label: String

    public init(directory: String, label: String? = nil) {
        dir = directory
        archive = nil
        self.label = label ?? directory
    }

    public init(archive: ExtractedArchive, label: String) {
        dir = nil
        self.archive = archive
        self.label = label
    }

    func file(_ name: String) -> String? {
        if let archive { return archive.entries[name]?.path }
        let p = "\(dir!)/\(name)"
        return access(p, F_OK) == 0 ? p : nil
    }

    public func read(_ d: Descriptor) throws -> Data {
        guard let p = file("blobs/\(d.digest.algorithm)/\(d.digest.encoded)") else {
            throw CtrError.invalid("\(label): blob \(d.digest) is missing")
        }
        do {
            return try ImageCopy.readVerified(p, d)
        } catch let e as CtrError {
            throw e.prefixed(label)
        }
    }

    public func blob(_ d: Descriptor) throws -> BlobFile {
        let name = "blobs/\(d.digest.algorithm)/\(d.digest.encoded)"
        if let archive {
            guard let e = archive.entries[name] else { throw CtrError.invalid("\(label): blob \(d.digest) is missing") }
            if e.digest != d.digest {
                throw CtrError.invalid("\(label): blob \(d.digest) failed verification: its content hashes to \(e.digest)")
            }
            if e.size != d.size {
                throw CtrError.invalid("\(label): blob \(d.digest) has \(e.size) bytes, its descriptor says \(d.size)")
            }
            return BlobFile(path: e.path, verified: true, movable: true)
        }
        guard let p = file(name) else { throw CtrError.invalid("\(label): blob \(d.digest) is missing") }
        return BlobFile(path: p, verified: false, movable: false)
    }

    /// The images listed in index.json with the names their annotations carry: the full name
    /// (`io.containerd.image.name`), else a ref.name that is a name (`app:1`,
    /// `example.com/app`). A ref.name that is only a tag (`latest`) names no image, as docker
    /// and containerd load it (`tagOnly`). A name that is not valid refuses the layout: an
    /// entry is never dropped or renamed quietly.
    public func images() throws -> [SourceImage] {
        guard let p = file("index.json"), let data = FileManager.default.contents(atPath: p) else {
            throw CtrError.invalid("\(label): no index.json (not an OCI layout)")
        }
        if let problem = ManifestSchema.problem(data, mediaType: nil) {
            throw CtrError.invalid("\(label): index.json \(problem)")
        }
        let index = try CanonicalJSON.decode(Index.self, from: data, what: "\(label) index.json")
        return try index.manifests.enumerated().map { i, d in
            let entry = "\(label): index.json entry \(i + 1) (\(d.digest))"
            var names: [Reference] = []
            var tagOnly: String?
            if let n = d.annotations?[Annotations.containerdName] {
                do throws(CtrError) { names.append(try Reference(parsing: n)) } catch {
                    throw CtrError.invalid("\(entry): \(Annotations.containerdName) \"\(n)\" is not an image name (\(error.reason ?? error.message))")
                }
            }
            if let n = d.annotations?[Annotations.refName] {
                guard Annotations.isValidRefName(n) else {
                    throw CtrError.invalid("\(entry): \(Annotations.refName) \"\(n)\" is not a valid reference name (letters and digits joined by . _ - : @ + or --, components separated by /)")
                }
                if names.isEmpty {
                    if n.contains(where: { "/:@".contains($0) }) {
                        do throws(CtrError) { names.append(try Reference(parsing: n)) } catch {
                            throw CtrError.invalid("\(entry): \(Annotations.refName) \"\(n)\" is not an image name (\(error.reason ?? error.message))")
                        }
                    } else {
                        tagOnly = n
                    }
                }
            }
            return SourceImage(names: names, descriptor: d, tagOnly: tagOnly)
        }
    }
}

/// Index annotations for a saved image, as docker (25+) writes them: the full name for
/// containerd and the tag as the OCI ref.name (what `umoci --image layout:TAG` and
/// `skopeo oci:dir:TAG` select by). `unambiguousRefNames` then gives the full name as
/// ref.name where two images of one layout share a tag.
func layoutAnnotations(_ name: Reference?, refName: String? = nil) -> [String: String]? {
    guard let name else { return refName.map { [Annotations.refName: $0] } }
    var a = [Annotations.containerdName: name.string]
    if let refName { a[Annotations.refName] = refName } else if let tag = name.tag { a[Annotations.refName] = tag }
    return a
}

/// A tag that two images of one layout share (`a:1` and `b:1`) would make ref.name "1" name
/// two entries, and umoci, skopeo and podman reach only one of them: those entries get their
/// full name as ref.name instead ("docker.io/library/b:1", which the image spec's grammar
/// allows and `skopeo oci:DIR:docker.io/library/b:1` selects). A tag of one image stays the
/// bare tag, as docker writes it.
func unambiguousRefNames(_ manifests: [Descriptor]) -> [Descriptor] {
    var fullNames: [String: Set<String>] = [:]
    for m in manifests {
        guard let ref = m.annotations?[Annotations.refName] else { continue }
        fullNames[ref, default: []].insert(m.annotations?[Annotations.containerdName] ?? "")
    }
    return manifests.map { m in
        guard let ref = m.annotations?[Annotations.refName], let full = m.annotations?[Annotations.containerdName],
              fullNames[ref, default: []].count > 1 else { return m }
        var d = m
        d.annotations?[Annotations.refName] = full
        return d
    }
}

/// Writes an OCI layout directory (merging with one that is already there).
public final class OCILayoutSink: ImageSink {
    let dir: String
    var manifests: [Descriptor] = []
    /// The ref.name of every image written (`oci:DIR:REF`), instead of their tags.
    public var refName: String?

    public init(directory: String) throws {
        dir = directory
        do {
            try FileManager.default.createDirectory(atPath: "\(dir)/blobs/sha256", withIntermediateDirectories: true)
        } catch {
            throw CtrError.system("mkdir", "cannot create \(dir)/blobs/sha256: \(error.localizedDescription)")
        }
        if let data = FileManager.default.contents(atPath: "\(dir)/index.json") {
            manifests = try CanonicalJSON.decode(Index.self, from: data, what: "\(dir)/index.json").manifests
        }
    }

    func path(_ d: Digest) -> String { "\(dir)/blobs/\(d.algorithm)/\(d.encoded)" }

    public func hasBlob(_ d: Descriptor) -> Bool { access(path(d.digest), F_OK) == 0 }

    public func putBlob(_ d: Descriptor, from file: BlobFile) throws {
        let tmp = "\(path(d.digest)).tmp"
        try FileCopy.copy(file.path, to: tmp)
        try valueOrErrno("rename", "cannot write \(path(d.digest))") { rename(tmp, path(d.digest)) }
    }

    public func putImage(_ image: CopiedImage) throws {
        try Store.writeFile(path: path(image.descriptor.digest), data: image.manifestData, sync: false)
        let plain = Descriptor(mediaType: image.descriptor.mediaType, digest: image.descriptor.digest, size: image.descriptor.size)
        let names: [Reference?] = image.names.isEmpty ? [nil] : image.names
        let ref = refName ?? image.refName
        for name in names {
            var d = plain
            d.annotations = layoutAnnotations(name, refName: ref)
            if let ref {
                // a ref.name names one image: the entry that had it goes
                manifests.removeAll { $0.annotations?[Annotations.refName] == ref }
            }
            if let n = name {
                // the same name again replaces what it pointed at; an entry of another image
                // that only shares the tag (bb:1 and app:1) stays, unless it carries no full
                // name to tell them apart
                manifests.removeAll { m in
                    if let full = m.annotations?[Annotations.containerdName] { return full == n.string }
                    return m.annotations?[Annotations.refName] == n.tag && n.tag != nil
                }
            }
            manifests.removeAll { $0 == d }
            manifests.append(d)
        }
    }

    public func finish() throws {
        try Store.atomicWrite(path: "\(dir)/oci-layout", data: Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        try Store.atomicWrite(path: "\(dir)/index.json", data: CanonicalJSON.encode(Index(manifests: unambiguousRefNames(manifests))))
    }
}

/// Streams an oci-archive: a tar of an OCI layout.
public final class OCIArchiveSink: ImageSink {
    let writer: OpaquePointer
    var written = Set<Digest>()
    var manifests: [Descriptor] = []
    var closed = false
    /// The ref.name of every image written (`oci-archive:FILE:REF`), instead of their tags.
    public var refName: String?

    public init(fd: Int32) throws {
        var err = csys_error()
        guard let w = csys_tar_writer_open(fd, &err) else { throw CtrError(err) }
        writer = w
        try check(csys_tar_add_bytes(writer, "oci-layout", #"{"imageLayoutVersion":"1.0.0"}"#, 30, 0))
        try check(csys_tar_add_dir(writer, "blobs/", 0))
        try check(csys_tar_add_dir(writer, "blobs/sha256/", 0))
    }

    deinit { if !closed { csys_tar_writer_close(writer, 0) } }

    func check(_ rc: Int32) throws {
        if rc != 0 { throw CtrError(csys_tar_writer_error(writer).pointee) }
    }

    public func hasBlob(_ d: Descriptor) -> Bool { written.contains(d.digest) }

    public func putBlob(_ d: Descriptor, from file: BlobFile) throws {
        let fd = try valueOrErrno("open", "cannot open \(file.path)") { open(file.path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        try check(csys_tar_add_fd(writer, "blobs/\(d.digest.algorithm)/\(d.digest.encoded)", fd, UInt64(d.size), 0))
        written.insert(d.digest)
    }

    public func putImage(_ image: CopiedImage) throws {
        if !written.contains(image.descriptor.digest) {
            try image.manifestData.withUnsafeBytes { b in
                try check(csys_tar_add_bytes(writer, "blobs/sha256/\(image.descriptor.digest.encoded)", b.baseAddress, b.count, 0))
            }
            written.insert(image.descriptor.digest)
        }
        let plain = Descriptor(mediaType: image.descriptor.mediaType, digest: image.descriptor.digest, size: image.descriptor.size)
        for name in image.names.isEmpty ? [nil] : image.names.map(Optional.some) {
            var d = plain
            d.annotations = layoutAnnotations(name, refName: refName ?? image.refName)
            manifests.append(d)
        }
    }

    public func finish() throws {
        let data = try CanonicalJSON.encode(Index(manifests: unambiguousRefNames(manifests)))
        try data.withUnsafeBytes { b in try check(csys_tar_add_bytes(writer, "index.json", b.baseAddress, b.count, 0)) }
        closed = true
        if csys_tar_writer_close(writer, 1) != 0 { throw CtrError.system("archive", "cannot finish the archive") }
    }
}

// MARK: - docker-archive

/// `docker save` format: manifest.json, <config-hex>.json, <diff-id-hex>.tar (uncompressed).
struct DockerManifestEntry: Codable {
    var Config: String
    var RepoTags: [String]?
    var Layers: [String]
}

public final class DockerArchiveSink: ImageSink {
    let writer: OpaquePointer
    let scratch: String
    var written = Set<String>()
    var layerNames: [Digest: String] = [:]
    var entries: [DockerManifestEntry] = []
    var repositories: [String: [String: String]] = [:]
    var closed = false

    /// `scratch`: a directory for decompressing layers (docker-archive layers are plain tars).
    public init(fd: Int32, scratch: String) throws {
        var err = csys_error()
        guard let w = csys_tar_writer_open(fd, &err) else { throw CtrError(err) }
        writer = w
        self.scratch = scratch
    }

    deinit { if !closed { csys_tar_writer_close(writer, 0) } }

    func check(_ rc: Int32) throws {
        if rc != 0 { throw CtrError(csys_tar_writer_error(writer).pointee) }
    }

    public func hasBlob(_ d: Descriptor) -> Bool { false }

    public func putBlob(_ d: Descriptor, from file: BlobFile) throws {
        if d.mediaType.isConfig {
            let name = "\(d.digest.encoded).json"
            guard written.insert(name).inserted else { return }
            try addFile(name, file.path, d.size)
            return
        }
        if layerNames[d.digest] != nil { return }
        var path = file.path
        var tmp: String?
        if d.mediaType.layerCompression != Compression.none {
            let t = "\(scratch)/\(d.digest.encoded).tar"
            tmp = t
            _ = try LayerOps.decompress(file.path, to: t)
            path = t
        }
        defer { if let tmp { unlink(tmp) } }
        var info = stat()
        guard stat(path, &info) == 0 else { throw CtrError.errno("stat", "cannot stat \(path)") }
        let fd = try valueOrErrno("open", "cannot open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        // the diff-id names the file, as podman's docker-archive writer does
        guard let diffID = Digest.sha256(fd: fd)?.digest else { throw CtrError.errno("read", "cannot read \(path)") }
        lseek(fd, 0, SEEK_SET)
        let name = "\(diffID.encoded).tar"
        layerNames[d.digest] = name
        if written.insert(name).inserted {
            try check(csys_tar_add_fd(writer, name, fd, UInt64(info.st_size), 0))
        }
    }

    func addFile(_ name: String, _ path: String, _ size: Int64) throws {
        let fd = try valueOrErrno("open", "cannot open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        try check(csys_tar_add_fd(writer, name, fd, UInt64(size), 0))
    }

    public func putImage(_ image: CopiedImage) throws {
        let layers = image.manifest.layers.map { layerNames[$0.digest] ?? "" }
        var tags: [String] = []
        for n in image.names {
            guard let tag = n.tag else { continue }
            tags.append("\(n.familiarName):\(tag)")
            repositories[n.familiarName, default: [:]][tag] = image.manifest.config.digest.encoded
        }
        // one image saved under several names is one entry with all its tags, as docker writes it
        let config = "\(image.manifest.config.digest.encoded).json"
        if let i = entries.firstIndex(where: { $0.Config == config && $0.Layers == layers }) {
            let merged = (entries[i].RepoTags ?? []) + tags.filter { !(entries[i].RepoTags ?? []).contains($0) }
            entries[i].RepoTags = merged.isEmpty ? nil : merged
            return
        }
        entries.append(DockerManifestEntry(Config: config, RepoTags: tags.isEmpty ? nil : tags, Layers: layers))
    }

    public func finish() throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for (name, data) in [("manifest.json", try enc.encode(entries)), ("repositories", try enc.encode(repositories))] {
            try data.withUnsafeBytes { b in try check(csys_tar_add_bytes(writer, name, b.baseAddress, b.count, 0)) }
        }
        closed = true
        if csys_tar_writer_close(writer, 1) != 0 { throw CtrError.system("archive", "cannot finish the archive") }
    }
}

/// A docker-archive (extracted) as a source: each manifest.json entry becomes an OCI
/// manifest whose layers are the archive's files as they are (plain or compressed tars).
public final class DockerArchiveSource: ImageSource {
    let archive: ExtractedArchive
    let label: String
    var synthesized: [Digest: Data] = [:]
    var files: [Digest: ExtractedArchive.Entry] = [:]
    public private(set) var images: [SourceImage] = []

    public init(archive: ExtractedArchive, label: String) throws {
        self.archive = archive
        self.label = label
        guard let m = archive.entries["manifest.json"], let data = FileManager.default.contents(atPath: m.path) else {
            throw CtrError.invalid("\(label): no manifest.json (not a docker-archive)")
        }
        let list: [DockerManifestEntry]
        do {
            list = try JSONDecoder().decode([DockerManifestEntry].self, from: data)
        } catch {
            throw CtrError.invalid("\(label): manifest.json is not valid: \(error)", cause: error)
        }
        for entry in list {
            guard let cfg = archive.entries[Self.clean(entry.Config)] else {
                throw CtrError.invalid("\(label): config \(entry.Config) named in manifest.json is missing")
            }
            files[cfg.digest] = cfg
            var layers: [Descriptor] = []
            for l in entry.Layers {
                guard let f = archive.entries[Self.clean(l)] else {
                    throw CtrError.invalid("\(label): layer \(l) named in manifest.json is missing")
                }
                files[f.digest] = f
                let media: MediaType
                switch try Self.sniff(f.path, label: label) {
                case .gzip: media = .ociLayerGzip
                case .zstd: media = .ociLayerZstd
                case .none: media = .ociLayer
                }
                layers.append(Descriptor(mediaType: media, digest: f.digest, size: f.size))
            }
            let manifest = Manifest(mediaType: .ociManifest,
                                    config: Descriptor(mediaType: .ociConfig, digest: cfg.digest, size: cfg.size),
                                    layers: layers)
            let mdata = try CanonicalJSON.encode(manifest)
            let mdesc = Descriptor(mediaType: .ociManifest, digest: Digest.sha256(mdata), size: Int64(mdata.count))
            synthesized[mdesc.digest] = mdata
            // a tag that is not a name refuses the archive, as an OCI ref.name does
            let names = try (entry.RepoTags ?? []).map { t in
                do throws(CtrError) { return try Reference(parsing: t) } catch {
                    throw CtrError.invalid("\(label): manifest.json names \(entry.Config) \"\(t)\", which is not an image name (\(error.reason ?? error.message))")
                }
            }
            images.append(SourceImage(names: names, descriptor: mdesc))
        }
    }

    static func clean(_ p: String) -> String {
        p.split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
    }

    static func sniff(_ path: String, label: String) throws -> Compression {
        guard let h = FileHandle(forReadingAtPath: path) else { throw CtrError.invalid("\(label): cannot open \(path)") }
        defer { try? h.close() }
        let b = [UInt8](h.readData(ofLength: 4))
        if b.count >= 2 && b[0] == 0x1f && b[1] == 0x8b { return .gzip }
        if b.count >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd { return .zstd }
        return .none
    }

    public func read(_ d: Descriptor) throws -> Data {
        if let data = synthesized[d.digest] { return data }
        guard let f = files[d.digest] else { throw CtrError.invalid("\(label): blob \(d.digest) is missing") }
        do {
            return try ImageCopy.readVerified(f.path, d)
        } catch let e as CtrError {
            throw e.prefixed(label)
        }
    }

    public func blob(_ d: Descriptor) throws -> BlobFile {
        guard let f = files[d.digest] else { throw CtrError.invalid("\(label): blob \(d.digest) is missing") }
        return BlobFile(path: f.path, verified: true, movable: true)
    }
}

// MARK: - load and save

public enum ImageArchive {
    /// What a load did: the images, the unpack reports, notes for stderr (an image that came
    /// without a name, and why), and the names that moved to a loaded image.
    public struct Loaded: Sendable {
        public var images: [CopiedImage]
        public var reports: [ApplyReport]
        public var notes: [String]
        public var renamed: [Renamed] = []
    }

    /// A name that stood for another image before the load and names a loaded one now.
    public struct Renamed: Sendable, Equatable {
        public var name: Reference
        /// The image it named: its id, or its manifest digest when its config is unreadable.
        public var previous: Digest
        /// The loaded image's id.
        public var image: Digest
    }

    /// Load an OCI archive, OCI layout directory or docker-archive (detected) into the store.
    public static func load(_ path: String, into store: Store, progress: ((String) -> Void)? = nil) throws -> Loaded {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CtrError.notFound("\(path): no such file or directory")
        }
        do {
            let before = try store.images()
            var loaded = try loadOrThrow(path, isDir: isDir.boolValue, into: store, progress: progress)
            for i in loaded.images {
                for n in i.names {
                    guard let old = before.first(where: { $0.name == n }), old.descriptor.digest != i.descriptor.digest else { continue }
                    let previous = (try? store.imageID(old)) ?? old.descriptor.digest
                    loaded.renamed.append(Renamed(name: n, previous: previous, image: i.manifest.config.digest))
                }
            }
            return loaded
        }
    }

    static func loadOrThrow(_ path: String, isDir: Bool, into store: Store, progress: ((String) -> Void)?) throws -> Loaded {
        try store.writing {
            let sink = StoreSink(store)
            func fromLayout(_ src: OCILayoutSource) throws -> Loaded {
                let listed = try src.images()
                let imgs = try ImageCopy.copy(listed, from: src, to: sink, progress: progress, label: path)
                let notes = zip(listed, imgs).compactMap { s, i -> String? in
                    guard let tag = s.tagOnly else { return nil }
                    return "\(path): image \(i.manifest.config.digest) is named only by the tag \"\(tag)\" (\(Annotations.refName), no \(Annotations.containerdName)): loaded without a name, as docker and containerd load it (name it with ctr tag)"
                }
                return Loaded(images: imgs, reports: sink.reports, notes: notes)
            }
            if isDir {
                if access("\(path)/index.json", F_OK) == 0 {
                    return try fromLayout(OCILayoutSource(directory: path))
                }
                throw CtrError.invalid("\(path): not an OCI layout (no index.json)")
            }
            let tmp = "\(store.root)/ingest/load-\(UUID().uuidString.lowercased())"
            try valueOrErrno("mkdir", "cannot create \(tmp)") { mkdir(tmp, 0o700) }
            defer { try? FileManager.default.removeItem(atPath: tmp) }
            progress?("reading \(path)")
            let ex = try ExtractedArchive.extract(path, into: tmp)
            if ex.entries["index.json"] != nil {
                return try fromLayout(OCILayoutSource(archive: ex, label: path))
            }
            if ex.entries["manifest.json"] != nil {
                let src = try DockerArchiveSource(archive: ex, label: path)
                let imgs = try ImageCopy.copy(src.images, from: src, to: sink, progress: progress, label: path)
                return Loaded(images: imgs, reports: sink.reports, notes: [])
            }
            throw CtrError.invalid("\(path): not an OCI archive or docker-archive (it has neither index.json nor manifest.json)")
        }
    }

    /// Save images from the store. `output` nil: write to fd 1.
    public static func save(_ refs: [String], from store: Store, format: ArchiveFormat, output: String?) throws {
        let source = StoreSource(store)
        try write(try source.images(refs), from: source, format: format, output: output, store: store)
    }

    /// Write `images` as `format` to `output` (nil: standard output; a directory for oci-dir).
    /// A file is staged as OUTPUT.tmp-PID (its directory made as needed, as BuildKit's outputs
    /// make theirs), synced and renamed in; a failure removes it. `refName`: the OCI ref.name
    /// of every image (`oci:DIR:REF`), instead of its tag.
    static func write(_ images: [SourceImage], from source: ImageSource, format: ArchiveFormat, output: String?,
                      store: Store, refName: String? = nil) throws {
        if format == .ociDir {
            guard let output else { throw CtrError.usage("oci-dir needs an output directory (-o DIR)") }
            let sink = try OCILayoutSink(directory: output)
            sink.refName = refName
            _ = try ImageCopy.copy(images, from: source, to: sink)
            return
        }
        var fd: Int32 = 1
        var tmp: String?
        if let output {
            let t = "\(output).tmp-\(getpid())"
            let parent = (output as NSString).deletingLastPathComponent
            if !parent.isEmpty { try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
            tmp = t
            fd = try valueOrErrno("open", "cannot create \(output)") { open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        }
        var isOpen = tmp != nil
        do {
            if format == .ociArchive {
                let sink = try OCIArchiveSink(fd: fd)
                sink.refName = refName
                _ = try ImageCopy.copy(images, from: source, to: sink)
            } else {
                let scratch = "\(store.root)/ingest/save-\(UUID().uuidString.lowercased())"
                try valueOrErrno("mkdir", "cannot create \(scratch)") { mkdir(scratch, 0o700) }
                defer { try? FileManager.default.removeItem(atPath: scratch) }
                _ = try ImageCopy.copy(images, from: source, to: try DockerArchiveSink(fd: fd, scratch: scratch))
            }
            if let tmp, let output {
                try valueOrErrno("fsync", "cannot sync \(output)") { fsync(fd) }
                close(fd)
                isOpen = false
                try valueOrErrno("rename", "cannot write \(output)") { rename(tmp, output) }
            }
        } catch {
            if isOpen { close(fd) }
            if let tmp { unlink(tmp) }
            throw error
        }
    }
}
