import ArgumentParser
import CSysShims
import Foundation
import HostOS
import Layers
import struct Sandbox.ContainerStore

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an image from a root filesystem: a directory, or a .tar, .tar.gz or .tar.zst.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "Name the image (repeatable as REFERENCE too).")
    var tag: [String] = []

    @Option(name: [.short, .long], help: "Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.")
    var change: [String] = []

    @Option(name: [.short, .long], help: "A comment for the image history.")
    var message: String?

    @Flag(name: [.short, .long], help: "Print only the image id.")
    var quiet = false

    @Argument(help: "Directory or tarball.")
    var source: String

    @Argument(help: "Name for the image.")
    var reference: String?

    func run() throws {
        let store = try global.store()
        // stdin spooled into ingest/ and the image written: prune waits until it is named
        let hold = try store.holdForWriting()
        defer { hold.release() }
        var names = try tag.map { try Reference(parsing: $0) }
        if let reference { names.append(try Reference(parsing: reference)) }
        // - : a tarball on standard input, as docker and podman import take it
        var source = self.source
        if source == "-" {
            if isatty(0) != 0 { throw CLIError("no tarball given: redirect standard input, or name a directory or file") }
            source = try Self.spoolStdin(store)
        }
        defer { if source != self.source { unlink(source) } }
        let result = try ImageImport.run(source: source, store: store, name: names.first, changes: change, message: message)
        for extra in names.dropFirst() { try store.setName(extra, to: result.image.descriptor) }
        RootlessNotes.mapping(store.ops.mapping)
        RootlessNotes.reports(result.reports)
        Out.line(result.imageID.string)
    }
}

struct ImageInfo {
    var record: ImageRecord
    var manifest: Manifest
    var config: ImageConfig
    var configData: Data
    var manifestData: Data
    var size: Int64 { manifest.config.size + manifest.layers.reduce(0) { $0 + $1.size } }

    init(_ r: ImageRecord, store: Store) throws {
        record = r
        manifestData = try store.readBlob(r.descriptor.digest)
        manifest = try CanonicalJSON.decode(Manifest.self, from: manifestData, what: "manifest \(r.descriptor.digest)")
        configData = try store.readBlob(manifest.config.digest)
        config = try CanonicalJSON.decode(ImageConfig.self, from: configData, what: "image config \(manifest.config.digest)")
    }
}

struct Images: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List images in the store.", aliases: ["image-ls"])

    @OptionGroup var global: GlobalOptions

    @Option(help: "Output format: table, json, or a Go template ('{{.Repository}}:{{.Tag}} {{.ID}}').")
    var format: String = "table"

    @Flag(name: [.short, .long], help: "Print only image ids.")
    var quiet = false

    @Flag(name: .long, help: "Show full image ids.")
    var noTrunc = false

    @Argument(help: "Only this repository (REPOSITORY[:TAG]), as docker images takes it.")
    var repository: String?

    func run() throws {
        let store = try global.store()
        var infos: [ImageInfo] = []
        var wanted: (name: String, tag: String?)?
        if let repository {
            let ref = try Reference(parsing: repository, defaultTag: false)
            wanted = (ref.name, ref.tag)
        }
        for r in try store.images() {
            if let wanted, r.name?.name != wanted.name || (wanted.tag != nil && r.name?.tag != wanted.tag) { continue }
            do { infos.append(try ImageInfo(r, store: store)) } catch {
                Out.warn("\(r.name?.string ?? r.descriptor.digest.string): \(error)")
            }
        }
        if quiet {
            var seen = Set<Digest>()
            for i in infos where seen.insert(i.manifest.config.digest).inserted {
                Out.line(noTrunc ? i.manifest.config.digest.string : i.manifest.config.digest.short)
            }
            return
        }
        switch format {
        case "json":
            try Out.json(infos.map { i -> [String: Any] in
                var o: [String: Any] = [
                    "id": i.manifest.config.digest.string,
                    "digest": i.record.descriptor.digest.string,
                    "size": i.size,
                    "created": i.config.created ?? NSNull(),
                ]
                if let n = i.record.name {
                    o["name"] = n.name
                    o["repository"] = n.familiarName
                    o["tag"] = n.tag ?? NSNull()
                    o["reference"] = n.string
                }
                return o
            })
        case "table":
            let rows = infos.map { i -> [String] in
                [i.record.name?.familiarName ?? "<none>", i.record.name?.tag ?? "<none>",
                 noTrunc ? i.manifest.config.digest.string : i.manifest.config.digest.short,
                 Out.ago(Out.parseDate(i.config.created)), Out.size(i.size)]
            }
            Out.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
        case let t where t.contains("{{"):
            // docker's fields for a Go template, one line per image
            for i in infos {
                let row: [String: Any] = [
                    "Repository": i.record.name?.familiarName ?? "<none>", "Tag": i.record.name?.tag ?? "<none>",
                    "ID": noTrunc ? i.manifest.config.digest.string : i.manifest.config.digest.short,
                    "Digest": i.record.descriptor.digest.string, "CreatedAt": i.config.created ?? "",
                    "CreatedSince": Out.ago(Out.parseDate(i.config.created)), "Size": Out.size(i.size),
                ]
                Out.line(try GoTemplate.render(t, row))
            }
        default:
            throw ValidationError("unknown format \"\(format)\" (table, json or a Go template such as '{{.Repository}}:{{.Tag}}')")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an image's manifest, config and digests as JSON.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "A Go template, e.g. '{{.Id}}' or '{{json .Config.Env}}' (default: JSON of all).")
    var format: String?

    @Argument(help: "Image name or id.")
    var images: [String]

    func run() throws {
        let store = try global.store()
        var out: [[String: Any]] = []
        var missing: [String] = []
        let records = try store.images()
        for s in images {
            // as docker: the images found are shown, the ones not found reported after
            let r: ImageRecord
            do { r = try store.resolve(s) } catch { missing.append((error as? UserFacing)?.message ?? "\(error)"); continue }
            let i = try ImageInfo(r, store: store)
            let named = records.filter { $0.descriptor.digest == r.descriptor.digest }.compactMap(\.name)
            let names = named.map(\.string)
            var repoDigests: [String] = []
            for n in named where !repoDigests.contains("\(n.name)@\(r.descriptor.digest)") { repoDigests.append("\(n.name)@\(r.descriptor.digest)") }
            let manifest = try JSONSerialization.jsonObject(with: i.manifestData)
            let config = try JSONSerialization.jsonObject(with: i.configData)
            var o: [String: Any] = [
                "Id": i.manifest.config.digest.string,
                "Digest": r.descriptor.digest.string,
                "RepoTags": names,
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
            out.append(o)
        }
        if let format {
            for o in out { Out.line(try GoTemplate.render(format, o)) }
        } else if !out.isEmpty || missing.isEmpty {
            try Out.json(out)
        }
        if !missing.isEmpty { throw CLIError(missing.joined(separator: "; ")) }
    }
}

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Give an image another name.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Image name or id.")
    var source: String

    @Argument(help: "New names.")
    var targets: [String]

    func run() throws {
        let store = try global.store()
        let r = try store.resolve(source)
        let names = try targets.map { try Reference(parsing: $0) }
        for n in names where n.digest != nil {
            throw CLIError("\(n.string): a tag cannot contain a digest")
        }
        try store.writing { for n in names { try store.setName(n, to: r.descriptor) } }
    }
}

struct Rmi: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove image names, and images no name refers to.")

    @OptionGroup var global: GlobalOptions

    @Flag(name: [.short, .long], help: "Remove every name of an image given by id, and images containers use.")
    var force = false

    @Flag(name: [.short, .long], help: "Remove every image.")
    var all = false

    @Argument(help: "Image names or ids.")
    var images: [String] = []

    func run() throws {
        let store = try global.store()
        if all && !images.isEmpty { throw ValidationError("give names or --all, not both") }
        if !all && images.isEmpty { throw ValidationError("give the images to remove (or --all)") }
        let targets = all ? Array(Set(try store.images().map { $0.descriptor.digest.string })).sorted() : images
        let containers = ContainerStore(store).all()
        var removedManifests = Set<Digest>()
        // as docker and podman: every name is tried, and the errors come at the end
        var failures: [String] = []
        for s in targets {
            do {
                let r = try store.resolve(s)
                let all = try store.images().filter { $0.descriptor.digest == r.descriptor.digest }
                let byName = (try? Reference(parsing: s)).map { ref in all.contains { $0.name == ref } } ?? false
                let victims = byName ? all.filter { $0.name == (try? Reference(parsing: s)) } : all
                if !byName && all.count > 1 && !force && !self.all {
                    throw CLIError("\(s): the image has \(all.count) names (\(all.compactMap { $0.name?.familiar }.joined(separator: ", "))); remove them by name or use --force")
                }
                // the last name of an image a container uses stays, unless forced
                if victims.count == all.count, !force, let id = try? store.imageID(r),
                   let c = containers.first(where: { $0.imageID == id.string }) {
                    throw CLIError("\(s): the image is in use by container \(c.name) (\(c.id.prefix(12))): remove the container first, or use --force")
                }
                try store.updateIndex { records in
                    records.removeAll { rec in victims.contains { $0.name == rec.name && $0.descriptor.digest == rec.descriptor.digest } }
                }
                for v in victims where v.name != nil { Out.line("Untagged: \(v.name!.familiar)") }
                if try !store.images().contains(where: { $0.descriptor.digest == r.descriptor.digest }) {
                    removedManifests.insert(r.descriptor.digest)
                    if let id = try? store.imageID(r) { Out.line("Deleted: \(id.string)") }
                }
            } catch {
                failures.append((error as? UserFacing)?.message ?? "\(error)")
            }
        }
        if !removedManifests.isEmpty { _ = try store.prune(waiting: { Out.progress("waiting for other ctr commands that write to the store to finish") }) }
        if !failures.isEmpty { throw CLIError(failures.joined(separator: "; ")) }
    }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove unreferenced blobs and unpacked layers, and leftovers of interrupted writes.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let store = try global.store()
        let r = try store.prune(waiting: { Out.progress("waiting for other ctr commands that write to the store (build, pull, load, import, run) to finish") })
        Out.progress("removed \(r.blobs) blob(s), \(r.layers) unpacked layer(s), \(r.partial) partial write(s)")
        Out.line("Total reclaimed space: \(Out.size(r.bytes))")
    }
}

struct Save: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write images to an archive: oci-archive (default), docker-archive or oci-dir.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "Output file (directory for oci-dir); default: standard output.")
    var output: String?

    @Option(help: "oci-archive, docker-archive or oci-dir.")
    var format: String = "oci-archive"

    @Argument(help: "Image names or ids.")
    var images: [String]

    func run() throws {
        guard let fmt = ArchiveFormat(rawValue: format) else {
            throw ValidationError("unknown format \"\(format)\" (oci-archive, docker-archive or oci-dir)")
        }
        let output = self.output == "-" ? nil : self.output
        if output == nil && isatty(1) != 0 {
            throw CLIError("refusing to write an archive to a terminal; use -o FILE or redirect standard output")
        }
        let store = try global.store()
        // save reads blobs and writes scratch files in ingest/ (docker-archive)
        try store.writing { try ImageArchive.save(images, from: store, format: fmt, output: output) }
    }
}

extension ParsableCommand {
    /// Standard input, copied into the store's ingest dir; the caller removes the file.
    static func spoolStdin(_ store: Store) throws -> String {
        let t = store.ingestPath()
        let fd = try valueOrErrno("open", "cannot create \(t)") { open(t, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(0, &buf, buf.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                unlink(t)
                throw SysError.errno("read", "cannot read standard input")
            }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(fd, $0.baseAddress! + off, n - off) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { unlink(t); throw SysError.errno("write", "cannot write \(t)") }
                off += w
            }
        }
        return t
    }
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Load images from an OCI archive, OCI layout directory or docker-archive.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "Archive or layout directory; default: standard input.")
    var input: String?

    @Flag(name: [.short, .long], help: "Print no progress.")
    var quiet = false

    func run() throws {
        let store = try global.store()
        let hold = try store.holdForWriting()  // stdin is spooled into ingest/ first
        defer { hold.release() }
        // Ctrl-C: the load stops and removes what it wrote (see csys_catch_stop_signals)
        csys_catch_stop_signals(1)
        var path = input == "-" ? nil : input
        var tmp: String?
        if path == nil {
            if isatty(0) != 0 { throw CLIError("no archive given: use -i FILE or redirect standard input") }
            tmp = try Self.spoolStdin(store)
            path = tmp
        }
        defer { if let tmp { unlink(tmp) } }
        let showProgress = !quiet && isatty(2) != 0
        let before = try store.images()
        let loaded = try ImageArchive.load(path!, into: store, progress: showProgress ? { Out.progress($0) } : nil)
        let images = loaded.images
        RootlessNotes.mapping(store.ops.mapping)
        RootlessNotes.reports(loaded.reports)
        for n in loaded.notes { Out.progress("note: \(n)") }
        // a name that pointed at another image moves to the loaded one: said, as docker says it
        for i in images {
            for n in i.names {
                guard let old = before.first(where: { $0.name == n }), old.descriptor.digest != i.descriptor.digest else { continue }
                let oldID = (try? store.imageID(old))?.string ?? old.descriptor.digest.string
                Out.progress("note: \(n.familiar) named image \(oldID); it names the loaded image \(i.manifest.config.digest) now")
            }
        }
        for i in images {
            if i.names.isEmpty {
                Out.line("Loaded image ID: \(i.manifest.config.digest.string)")
            }
            for n in i.names { Out.line("Loaded image: \(n.familiar)") }
        }
    }
}

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unpack an image into DIR/rootfs with DIR/metadata.json.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Image name or id.")
    var image: String

    @Argument(help: "Destination directory.")
    var destination: String

    func run() throws {
        let store = try global.store()
        try store.writing { try Self.unpack(store: store, image: image, destination: destination) }
    }

    /// DIR/rootfs and DIR/metadata.json {env, user, …} (also `ctr build --output type=rootfs`).
    /// The image's files, layer by layer, into the directory `rootfs` (each blob checked).
    static func applyLayers(store: Store, info: ImageInfo, to rootfs: String) throws {
        RootlessNotes.mapping(store.ops.mapping)
        var reports: [ApplyReport] = []
        for (layer, diffID) in zip(info.manifest.layers, info.config.rootfs.diffIDs) {
            let report: ApplyReport
            do {
                report = try store.ops.apply(blob: store.blobPath(layer.digest), to: rootfs, tree: .plain)
            } catch let e as SysError {
                throw LayerError("layer \(layer.digest): \(e.message)")
            }
            try Store.check(report.digests, layer: layer, diffID: diffID)
            reports.append(report)
        }
        RootlessNotes.reports(reports)
    }

    static func unpack(store: Store, image: String, destination: String) throws {
        let r = try store.resolve(image)
        let info = try ImageInfo(r, store: store)
        let rootfs = "\(destination)/rootfs"
        if mkdir(destination, 0o755) != 0 && errno != EEXIST {
            throw SysError.errno("mkdir", "cannot create \(destination)")
        }
        if mkdir(rootfs, 0o755) != 0 {
            if errno == EEXIST { throw CLIError("\(rootfs) already exists") }
            throw SysError.errno("mkdir", "cannot create \(rootfs)")
        }
        // a layer that fails leaves no half-unpacked rootfs behind
        do { try applyLayers(store: store, info: info, to: rootfs) } catch {
            _ = try? store.ops.removeTree(rootfs)
            throw error
        }
        let c = info.config.config
        var meta: [String: Any] = ["env": c?.env ?? [], "user": c?.user ?? ""]
        if let w = c?.workingDir { meta["workingDir"] = w }
        if let e = c?.entrypoint { meta["entrypoint"] = e }
        if let cmd = c?.cmd { meta["cmd"] = cmd }
        let data = try JSONSerialization.data(withJSONObject: meta, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try Store.writeFile(path: "\(destination)/metadata.json", data: data + Data("\n".utf8), sync: false)
    }
}

struct Unshare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command as root of your user namespace (as `podman unshare`), e.g. to remove unpacked trees.")

    @Argument(parsing: .captureForPassthrough, help: "Command and arguments (default: $SHELL).")
    var command: [String] = []

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        if argv.isEmpty { argv = [ProcessInfo.processInfo.environment["SHELL"] ?? "/bin/sh"] }
        let code = try UserNamespace.exec(argv, mapping: .current())
        throw ExitCode(code)
    }
}
