import Errors
import Foundation
import HostOS

/// Images assembled from artifacts, without a sandbox (`ctr append`, `ctr mutate`): a base (an
/// image, or none for `scratch`), prebuilt layer tarballs appended as they are, files and
/// directories added as one more layer (owners and modes as asked, never the host's), and
/// config edits. No user namespace and no unpacking: the base's layers stay packed blobs, so
/// it works in any container. With SOURCE_DATE_EPOCH the result depends only on its inputs.
public enum ImageAssembly {
    /// `--add SOURCE:DEST`: a file or directory of the host at DEST (absolute) in the image. A
    /// file to a DEST ending in `/` goes in it under its own name; a directory's contents go in
    /// DEST (as COPY copies a directory).
    public struct Add: Sendable, Equatable {
        public var source: String
        public var dest: String
        public init(parsing s: String) throws(CtrError) {
            guard let r = s.range(of: ":/", options: .backwards), r.lowerBound != s.startIndex else {
                throw CtrError.usage("--add \(s): expected SOURCE:/DEST (DEST an absolute path in the image)")
            }
            source = String(s[..<r.lowerBound])
            dest = String(s[s.index(after: r.lowerBound)...])
        }
    }

    /// Config edits, in the order: `changes` (Dockerfile instructions, as `--change`), then
    /// the single-field flags.
    public struct Edits: Sendable {
        public var changes: [String] = []
        public var entrypoint: [String]?
        public var cmd: [String]?
        public var env: [String] = []
        public var labels: [String] = []
        public var workdir: String?
        public var user: String?
        public var exposed: [String] = []
        public init() {}

        /// Refuse edits that would fail, before anything is fetched or written.
        public func check() throws {
            var c = ContainerConfig()
            try apply(to: &c)
        }

        public var isEmpty: Bool {
            changes.isEmpty && entrypoint == nil && cmd == nil && env.isEmpty && labels.isEmpty && workdir == nil && user == nil && exposed.isEmpty
        }

        public func apply(to c: inout ContainerConfig) throws {
            for ch in changes { try ConfigChange.apply(ch, to: &c) }
            if let entrypoint {
                c.entrypoint = entrypoint.isEmpty ? nil : entrypoint
                // a new entrypoint drops the base's CMD unless one is given, as docker run --entrypoint does
                if cmd == nil { c.cmd = nil }
            }
            if let cmd { c.cmd = cmd.isEmpty ? nil : cmd }
            for kv in env {
                guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex else { throw CtrError.usage("--env \(kv): expected KEY=VALUE") }
                let key = kv[..<eq]
                var list = (c.env ?? []).filter { !$0.hasPrefix(key + "=") }
                list.append(kv)
                c.env = list
            }
            for kv in labels {
                guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex else { throw CtrError.usage("--label \(kv): expected KEY=VALUE") }
                var l = c.labels ?? [:]
                l[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
                c.labels = l
            }
            if let workdir {
                guard workdir.hasPrefix("/") else { throw CtrError.usage("--workdir \(workdir): must be an absolute path") }
                c.workingDir = workdir
            }
            if let user { c.user = user }
            for p in exposed {
                var ports = c.exposedPorts ?? [:]
                ports[p.contains("/") ? p : p + "/tcp"] = EmptyObject()
                c.exposedPorts = ports
            }
        }
    }

    public struct Request: Sendable {
        /// Layer tarballs (plain, gzip, zstd), appended in order.
        public var layers: [String] = []
        /// A container's overlay upper dir, made into one layer (`ctr commit`) after `layers`.
        public var upperDir: String?
        public var adds: [Add] = []
        /// Owner of added files (default 0:0, as COPY).
        public var chown: (uid: Int64, gid: Int64)?
        /// Mode of added files and directories (default: the source's permission bits).
        public var chmod: UInt32?
        public var edits = Edits()
        /// For a `scratch` base.
        public var platform: Platform = .current
        /// The history entries' created_by.
        public var createdBy: String
        /// The image's author (`commit --author`).
        public var author: String?
        /// SOURCE_DATE_EPOCH: created, history and added mtimes (clamped) from it.
        public var epoch: Int64?
        public init(createdBy: String) { self.createdBy = createdBy }
    }

    public struct Result: Sendable {
        public var record: ImageRecord
        public var imageID: Digest
    }

    /// The entries of `adds`: each source walked (directories sorted, symlinks kept as links,
    /// hard links within the sources kept), owned by `chown` (0:0), modes from the source's
    /// permission bits or `chmod`, mtimes the source's. Paths without the leading `/`.
    public static func entries(_ adds: [Add], chown: (uid: Int64, gid: Int64)?, chmod: UInt32?) throws -> [FileEntry] {
        let (uid, gid) = chown ?? (0, 0)
        var out: [FileEntry] = []
        func entry(_ host: String, at path: String, _ st: stat) throws -> FileEntry? {
            let perm = UInt32(st.st_mode) & 0o7777
            let mode = chmod ?? perm
            let inode = st.st_nlink > 1 ? FileEntry.Inode(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino)) : nil
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                return FileEntry(path: path, kind: .file(hostPath: host), mode: mode, uid: uid, gid: gid,
                                 mtime: Int64(st.st_mtim.tv_sec), size: UInt64(st.st_size), inode: inode)
            case S_IFDIR:
                return FileEntry(path: path, kind: .dir, mode: mode, uid: uid, gid: gid, mtime: Int64(st.st_mtim.tv_sec), size: 0)
            case S_IFLNK:
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: host)
                return FileEntry(path: path, kind: .symlink(target), mode: 0o777, uid: uid, gid: gid, mtime: Int64(st.st_mtim.tv_sec), size: 0)
            default:
                throw CtrError.invalid("--add: \(host) is not a file, directory or symlink")
            }
        }
        func walk(_ host: String, _ path: String) throws {
            let names = try FileManager.default.contentsOfDirectory(atPath: host).sorted()
            for n in names {
                let h = "\(host)/\(n)", p = path.isEmpty ? n : "\(path)/\(n)"
                var st = stat()
                guard lstat(h, &st) == 0 else { throw CtrError.errno("lstat", "--add: cannot read \(h)") }
                guard let e = try entry(h, at: p, st) else { continue }
                out.append(e)
                if e.isDir { try walk(h, p) }
            }
        }
        for a in adds {
            var st = stat()
            guard lstat(a.source, &st) == 0 else { throw CtrError.notFound("--add \(a.source):\(a.dest): no such file or directory") }
            let cleanDest = a.dest.split(separator: "/").filter { !$0.isEmpty && $0 != "." }
            guard !cleanDest.contains("..") else { throw CtrError.usage("--add \(a.source):\(a.dest): DEST may not contain ..") }
            var dest = cleanDest.joined(separator: "/")
            if st.st_mode & S_IFMT == S_IFDIR {
                // the directory's contents go in DEST; DEST itself gets the directory's mode
                if !dest.isEmpty, let e = try entry(a.source, at: dest, st) { out.append(e) }
                try walk(a.source, dest)
            } else {
                if a.dest.hasSuffix("/") || dest.isEmpty {
                    dest = dest.isEmpty ? (a.source as NSString).lastPathComponent : "\(dest)/\((a.source as NSString).lastPathComponent)"
                }
                if let e = try entry(a.source, at: dest, st) { out.append(e) }
            }
        }
        return FileEntry.linkingHardLinks(FileEntry.lastWriterWins(out))
    }

    /// Assemble: `base` (nil: scratch) plus the request's layers and config edits, into the
    /// store under `names`. The base's blobs must be in the store (its layers need not be
    /// unpacked: nothing is unpacked here).
    public static func run(base: ImageRecord?, _ r: Request, names: [Reference], store: Store) throws -> Result {
        let created = ImageImport.created(epoch: r.epoch)
        return try store.writing {
            var manifest: Manifest
            var config: ImageConfig
            if let base {
                manifest = try store.manifest(base.descriptor)
                config = try store.config(manifest)
            } else {
                manifest = Manifest(mediaType: .ociManifest, config: Descriptor(mediaType: .ociConfig, digest: Digest.sha256(Data()), size: 0), layers: [])
                config = ImageConfig(created: created, architecture: r.platform.architecture, os: r.platform.os, variant: r.platform.variant,
                                     config: ContainerConfig(), rootfs: RootFS(diffIDs: []), history: [])
            }
            let sink = StoreSink(store)
            sink.unpack = false
            var staged: [String] = []
            defer { for p in staged { unlink(p) } }
            var added: [(Descriptor, Digest, String)] = []
            // prebuilt layers: gzip and zstd as they are, a plain tar compressed
            for path in r.layers {
                let tmp = store.ingestPath()
                staged.append(tmp)
                let (layer, diffID): (Descriptor, Digest)
                do {
                    (layer, diffID) = try LayerOps.stageTarball(path, to: tmp)
                } catch let e as CtrError {
                    throw CtrError.invalid("--layer \(path): \(e.message)", cause: e)
                }
                try sink.putBlob(layer, from: BlobFile(path: tmp, verified: true, movable: true))
                added.append((layer, diffID, "\(r.createdBy) --layer \((path as NSString).lastPathComponent)"))
            }
            if let upper = r.upperDir {
                let blob = store.ingestPath()
                staged.append(blob)
                let d = try store.ops.create(from: upper, to: blob, tree: .overlay, compression: .gzip, clampMtime: r.epoch)
                let layer = Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)
                try sink.putBlob(layer, from: BlobFile(path: blob, verified: true, movable: true))
                added.append((layer, d.diffID, r.createdBy))
            }
            if !r.adds.isEmpty {
                let entries = try entries(r.adds, chown: r.chown, chmod: r.chmod)
                let tar = store.ingestPath(), blob = store.ingestPath()
                staged += [tar, blob]
                try LayerWriter.tar(entries, to: tar, clampMtime: r.epoch)
                let d = try LayerOps.compress(tar, to: blob, compression: .gzip)
                let layer = Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)
                try sink.putBlob(layer, from: BlobFile(path: blob, verified: true, movable: true))
                let what = r.adds.map { "\(($0.source as NSString).lastPathComponent):\($0.dest)" }.joined(separator: " ")
                added.append((layer, d.diffID, "\(r.createdBy) --add \(what)"))
            }
            for (layer, diffID, by) in added {
                manifest.layers.append(layer)
                config.rootfs.diffIDs.append(diffID)
                config.history = (config.history ?? []) + [History(created: created, createdBy: by, author: r.author)]
            }
            if let a = r.author { config.author = a }
            if !r.edits.isEmpty {
                var c = config.config ?? ContainerConfig()
                try r.edits.apply(to: &c)
                config.config = c
                if added.isEmpty {
                    config.history = (config.history ?? []) + [History(created: created, createdBy: "\(r.createdBy) (config)", emptyLayer: true)]
                }
            }
            if !added.isEmpty || base == nil || r.epoch != nil { config.created = created }
            let configData = try CanonicalJSON.encode(config)
            let configTmp = store.ingestPath()
            staged.append(configTmp)
            try Store.writeFile(path: configTmp, data: configData, sync: false)
            let configDesc = Descriptor(mediaType: .ociConfig, digest: Digest.sha256(configData), size: Int64(configData.count))
            try sink.putBlob(configDesc, from: BlobFile(path: configTmp, verified: true, movable: true))
            manifest.config = configDesc
            // a Docker base's manifest becomes an OCI one: the media types must agree
            manifest.mediaType = .ociManifest
            manifest.layers = manifest.layers.map { l in
                var l = l
                switch l.mediaType {
                case .dockerLayerGzip: l.mediaType = .ociLayerGzip
                case .dockerLayer: l.mediaType = .ociLayer
                default: break
                }
                return l
            }
            let manifestData = try CanonicalJSON.encode(manifest)
            let manifestDesc = Descriptor(mediaType: .ociManifest, digest: Digest.sha256(manifestData), size: Int64(manifestData.count))
            try sink.putImage(CopiedImage(names: names, descriptor: manifestDesc, manifestData: manifestData, manifest: manifest, config: config))
            try sink.finish()
            return Result(record: ImageRecord(name: names.first, descriptor: manifestDesc), imageID: configDesc.digest)
        }
    }
}
