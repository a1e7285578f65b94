import ArgumentParser
import Errors
import Foundation
import Layers
import Sandbox

/// Where an assembled image goes: `-t` names in the store, and `-t oci:DIR:REF` (or
/// oci-archive:, docker-archive:) written there. Prints the image id.
struct AssemblyOutputs {
    var names: [Reference] = []
    var files: [ImageLocation] = []

    init(_ tags: [String]) throws {
        for t in tags {
            let loc = ImageLocation(t)
            if loc.isFile { files.append(loc) } else { names.append(try Reference(parsing: loc.registryName ?? t)) }
        }
    }

    func write(_ result: ImageAssembly.Result, store: Store) throws {
        for f in files { try store.writing { try ImageTransport.write(result.record, from: store, to: f) } }
        Out.line(result.imageID.string)
    }
}

/// The base of `append`/`mutate`: `scratch`, a layout or archive, a store image, or a pull.
func assemblyBase(_ s: String, store: Store, pull: String, platform: Platform, registry: RegistryFlags) throws -> ImageRecord? {
    if s == "scratch" { return nil }
    let loc = ImageLocation(s)
    if loc.isFile { return try ImageTransport.load(loc, into: store, platform: platform, unpack: false) }
    return try Run.image(s, store: store, policy: pull, platform: platform, registry: { try registry.options() }, unpack: false)
}

/// A list flag as crane takes it: a JSON array, else comma-separated.
func listFlag(_ s: String, _ flag: String) throws -> [String] {
    if s.hasPrefix("[") {
        guard let a = try? JSONDecoder().decode([String].self, from: Data(s.utf8)) else {
            throw CtrError.usage("\(flag) \(s): not a JSON array of strings")
        }
        return a
    }
    return s.isEmpty ? [] : s.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
}

func sourceDateEpoch() throws -> Int64? {
    guard let s = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], !s.isEmpty else { return nil }
    guard let v = Int64(s), v >= 0 else { throw CtrError.usage("SOURCE_DATE_EPOCH=\(s): not a number of seconds") }
    return v
}

struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append layers and files to an image, without a Dockerfile or a sandbox (crane append, umoci insert).",
        discussion: """
            The base stays packed (nothing is unpacked, no user namespace is needed). Layer \
            tarballs (plain, gzip, zstd) are appended as they are; --add files go in one more \
            layer, owned by 0:0 (or --chown) with their own modes (or --chmod). With \
            SOURCE_DATE_EPOCH set, dates and mtimes come from it and the same inputs give the \
            same digest. -t takes store names and oci:DIR[:REF], oci-archive:FILE[:REF], \
            docker-archive:FILE[:NAME].
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags

    @Option(name: [.short, .long], help: "Base image: a name, oci:DIR[:REF], oci-archive:, docker-archive:, docker://, or scratch.")
    var base: String = "scratch"

    @Option(name: [.short, .customLong("layer"), .customLong("new-layer")], help: ArgumentHelp("A layer tarball to append (repeatable).", valueName: "file"))
    var layers: [String] = []

    @Option(name: .customLong("add"), help: ArgumentHelp("A file or directory to add at DEST (repeatable).", valueName: "source:/dest"))
    var adds: [String] = []

    @Option(name: .long, help: ArgumentHelp("Owner of added files.", valueName: "uid[:gid]"))
    var chown: String?

    @Option(name: .long, help: ArgumentHelp("Mode of added files and directories (octal).", valueName: "mode"))
    var chmod: String?

    @Option(name: [.short, .long], help: "A Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.")
    var change: [String] = []

    @Option(name: [.short, .long], help: "Name the result (repeatable): a name, or oci:DIR[:REF] and the like to write it there.")
    var tag: [String] = []

    @Option(name: .long, help: "Platform of a scratch base, and of the base to pull.")
    var platform: String?

    @Option(name: .long, help: "Pull the base: missing (default), always, never.")
    var pull: String = "missing"

    func run() throws {
        let store = try global.store()
        let plat = try platform.map { try Platform(parsing: $0) } ?? .current
        var r = ImageAssembly.Request(createdBy: "ctr append")
        r.layers = layers
        r.adds = try adds.map { try ImageAssembly.Add(parsing: $0) }
        r.chown = try chown.map(parseOwner)
        if let chmod {
            guard let m = UInt32(chmod, radix: 8), m <= 0o7777 else { throw CtrError.usage("--chmod \(chmod): expected an octal mode such as 0755") }
            r.chmod = m
        }
        r.edits.changes = change
        r.platform = plat
        r.epoch = try sourceDateEpoch()
        let outputs = try AssemblyOutputs(tag)
        // checked before the base is fetched
        for l in layers where access(l, R_OK) != 0 { throw CtrError.notFound("--layer \(l): cannot read it") }
        for a in r.adds where access(a.source, F_OK) != 0 { throw CtrError.notFound("--add \(a.source):\(a.dest): no such file or directory") }
        try r.edits.check()
        let hold = try store.holdForWriting()
        defer { hold.release() }
        let baseRecord = try assemblyBase(base, store: store, pull: pull, platform: plat, registry: registry)
        let result = try ImageAssembly.run(base: baseRecord, r, names: outputs.names, store: store)
        try outputs.write(result, store: store)
    }

    func parseOwner(_ s: String) throws -> (uid: Int64, gid: Int64) {
        let parts = s.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        func id(_ p: String) throws -> Int64 {
            if p == "root" { return 0 }
            guard let v = Int64(p), v >= 0, v < 1 << 32 else {
                throw CtrError.usage("--chown \(s): ids must be numbers (or root): the base is not unpacked to look names up")
            }
            return v
        }
        let uid = try id(parts[0])
        return (uid, parts.count > 1 ? try id(parts[1]) : uid)
    }
}

struct Mutate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit an image's config, no layer added (crane mutate, umoci config).",
        discussion: "Without -t a store image given by name gets the result under that name.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags

    @Option(name: .long, help: "Entrypoint: a JSON array, or comma-separated.")
    var entrypoint: String?

    @Option(name: .long, help: "Command: a JSON array, or comma-separated.")
    var cmd: String?

    @Option(name: [.short, .long], help: ArgumentHelp("Set an environment variable (repeatable).", valueName: "key=value"))
    var env: [String] = []

    @Option(name: [.short, .long], help: ArgumentHelp("Set a label (repeatable).", valueName: "key=value"))
    var label: [String] = []

    @Option(name: [.short, .long], help: "Working directory.")
    var workdir: String?

    @Option(name: [.short, .long], help: "User.")
    var user: String?

    @Option(name: .customLong("expose"), help: ArgumentHelp("Expose a port (repeatable).", valueName: "port[/proto]"))
    var exposed: [String] = []

    @Option(name: [.short, .long], help: "A Dockerfile instruction for the config (as --change of ctr import).")
    var change: [String] = []

    @Option(name: [.short, .long], help: "Name the result (repeatable): a name, or oci:DIR[:REF] and the like.")
    var tag: [String] = []

    @Option(name: .long, help: "Pull the image: missing (default), always, never.")
    var pull: String = "missing"

    @Argument(help: "Image: a name or id, oci:DIR[:REF], oci-archive:, docker-archive:, docker://.")
    var image: String

    func run() throws {
        let store = try global.store()
        var r = ImageAssembly.Request(createdBy: "ctr mutate")
        r.edits.changes = change
        r.edits.entrypoint = try entrypoint.map { try listFlag($0, "--entrypoint") }
        r.edits.cmd = try cmd.map { try listFlag($0, "--cmd") }
        r.edits.env = env
        r.edits.labels = label
        r.edits.workdir = workdir
        r.edits.user = user
        r.edits.exposed = exposed
        r.epoch = try sourceDateEpoch()
        var outputs = try AssemblyOutputs(tag)
        if tag.isEmpty {
            // the name it was given by, as crane mutate writes back to the tag
            let isID = image.hasPrefix("sha256:") || (image.count >= 12 && image.allSatisfy(\.isHexDigit))
            guard !ImageLocation(image).isFile, !isID, let n = try? Reference(parsing: ImageLocation(image).registryName ?? image),
                  n.digest == nil else {
                throw CtrError.usage("name the result with -t (the image was not given by a name)")
            }
            outputs.names = [n]
        }
        try r.edits.check()
        let hold = try store.holdForWriting()
        defer { hold.release() }
        let base = try assemblyBase(image, store: store, pull: pull, platform: .current, registry: registry)
        let result = try ImageAssembly.run(base: base, r, names: outputs.names, store: store)
        try outputs.write(result, store: store)
    }
}

struct Commit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an image from a container's changes (docker commit, podman commit).",
        discussion: """
            The new image is the container's image plus one layer of what the container \
            changed, with the container's environment, working directory and user, and the \
            --change instructions applied. A running container is not paused.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "A Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.")
    var change: [String] = []

    @Option(name: [.short, .long], help: "A comment for the image history.")
    var message: String?

    @Option(name: [.short, .long], help: "Author.")
    var author: String?

    @Flag(name: [.short, .long], help: "Print only the image id (the default: it is all that is printed).")
    var quiet = false

    @Argument(help: "Container name or id.")
    var container: String

    @Argument(help: "Name of the image: a name, or oci:DIR[:REF] and the like.")
    var image: String?

    func run() throws {
        let store = try global.store()
        let containers = ContainerStore(store)
        let c = try containers.find(container)
        let upper = "\(containers.path(c.id))/upper"
        guard access(upper, F_OK) == 0 else {
            throw CtrError.notFound("\(container): the container has no changes dir to commit (it ran with --rm, or its files were not kept)")
        }
        var r = ImageAssembly.Request(createdBy: message.map { "ctr commit: \($0)" } ?? "ctr commit \(c.name)")
        r.upperDir = upper
        // the container's own settings first, then what --change says
        if let env = c.env { r.edits.env = env }
        r.edits.workdir = c.workdir.flatMap { $0.isEmpty ? nil : $0 }
        r.edits.user = c.user.flatMap { $0.isEmpty ? nil : $0 }
        r.edits.changes = change
        r.epoch = try sourceDateEpoch()
        let outputs = try AssemblyOutputs(image.map { [$0] } ?? [])
        try r.edits.check()
        let hold = try store.holdForWriting()
        defer { hold.release() }
        let base = try store.resolve(c.manifest)
        r.author = author
        let result = try ImageAssembly.run(base: base, r, names: outputs.names, store: store)
        try outputs.write(result, store: store)
    }
}
