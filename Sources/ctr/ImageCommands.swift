import ArgumentParser
import CSysShims
import Errors
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
            if isatty(0) != 0 { throw CtrError.usage("no tarball given: redirect standard input, or name a directory or file") }
            source = try store.spool()
        }
        defer { if source != self.source { unlink(source) } }
        let result = try ImageImport.run(source: source, store: store, names: names, changes: change, message: message)
        RootlessNotes.mapping(store.ops.mapping)
        RootlessNotes.reports(result.reports)
        Out.line(result.imageID.string)
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
        let listing = try ImageListing(try global.store(), repository: repository)
        for u in listing.unreadable { Out.warn("\(u.image): \(u.error)") }
        let infos = listing.images
        if quiet {
            for id in listing.ids { Out.line(noTrunc ? id.string : id.short) }
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
        // as docker: the images found are shown, the ones not found reported after
        let (out, missing) = try ImageInspection.inspect(images, store: try global.store())
        if let format {
            for o in out { Out.line(try GoTemplate.render(format, o)) }
        } else if !out.isEmpty || missing.isEmpty {
            try Out.json(out)
        }
        if let first = missing.first { throw CtrError.wrapping(first, missing.map { "\($0)" }.joined(separator: "; ")) }
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
        let r = try store.locate(source)
        try ImageNames.tag(r, as: try targets.map { try Reference(parsing: $0) }, in: store)
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
        // the containers' images: the last name of one stays unless --force
        let inUse = ContainerStore(store).all().compactMap { c in
            (try? Digest(parsing: c.imageID)).map { ImageNames.ContainerUse(imageID: $0, name: c.name, id: c.id) }
        }
        try ImageNames.remove(all ? .all : .images(images), from: store, inUse: inUse, force: force, removed: { r in
            switch r {
            case .untagged(let name): Out.line("Untagged: \(name.familiar)")
            case .deleted(let id): Out.line("Deleted: \(id.string)")
            }
        }, waiting: { Out.progress("waiting for other ctr commands that write to the store to finish") })
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
            throw CtrError.usage("refusing to write an archive to a terminal; use -o FILE or redirect standard output")
        }
        let store = try global.store()
        // save reads blobs and writes scratch files in ingest/ (docker-archive)
        try store.writing { try ImageArchive.save(try images.map { try store.locateName($0) }, from: store, format: fmt, output: output) }
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
            if isatty(0) != 0 { throw CtrError.usage("no archive given: use -i FILE or redirect standard input") }
            tmp = try store.spool()
            path = tmp
        }
        defer { if let tmp { unlink(tmp) } }
        let showProgress = !quiet && isatty(2) != 0
        let loaded = try ImageArchive.load(path!, into: store, progress: showProgress ? { Out.progress($0) } : nil)
        let images = loaded.images
        RootlessNotes.mapping(store.ops.mapping)
        RootlessNotes.reports(loaded.reports)
        for n in loaded.notes { Out.progress("note: \(n)") }
        // a name that pointed at another image moves to the loaded one: said, as docker says it
        for r in loaded.renamed {
            Out.progress("note: \(r.name.familiar) named image \(r.previous); it names the loaded image \(r.image) now")
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
        let reports = try store.writing {
            try ImageUnpack.unpack(try store.locate(image, unpack: true), store: store, to: destination, applying: { RootlessNotes.mapping(store.ops.mapping) })
        }
        RootlessNotes.reports(reports)
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
        // the command's status is ctr's
        if code != 0 { throw CtrError(.container(status: code), "") }
    }
}
