// What the image commands do, as library functions over a real store in a scratch dir: rmi's
// policy (names, ids, --force, --all, images containers use, every failure at the end), tag,
// the images listing, inspect's document, unpack and the files exports, the names a load
// moves, and the registry a login names.
import Errors
import Foundation
import HostOS
import Testing
@testable import Layers

/// A store in a scratch dir, with images made from small layers.
final class ImageFixture {
    let scratch = Scratch()
    let store: Store

    init() throws { store = try Store(root: scratch.sub("store")) }
    deinit { scratch.remove() }

    /// An image of one layer of `files` (gzip), named `names`; `label` makes its id its own.
    @discardableResult
    func image(_ label: String, names: [String] = [], files: [TarEntry] = [.file("etc/hello", "hi\n")],
               config: ContainerConfig = ContainerConfig(), diffID: Digest? = nil) throws -> (record: ImageRecord, id: Digest) {
        let blob = try scratch.blob(files, .gzip, name: "layer-\(label)")
        let d = try LayerOps.scan(blob: blob)
        try store.commit(file: blob, as: d.digest)
        var cc = config
        cc.labels = (cc.labels ?? [:]).merging(["fixture": label]) { a, _ in a }
        let imageConfig = ImageConfig(architecture: "amd64", os: "linux", config: cc, rootfs: RootFS(diffIDs: [diffID ?? d.diffID]))
        let (manifest, configDesc) = try store.putImage(config: imageConfig, layers: [Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)])
        if names.isEmpty {
            try store.updateIndex { $0.append(ImageRecord(name: nil, descriptor: manifest)) }
        }
        for n in names { try store.setName(try Reference(parsing: n), to: manifest) }
        return (ImageRecord(name: nil, descriptor: manifest), configDesc.digest)
    }

    /// The store's names, familiar and sorted.
    func names() throws -> [String] { try store.images().compactMap { $0.name?.familiar }.sorted() }
}

// MARK: - rmi

@Suite struct RmiPolicyTests {
    struct Case: CustomStringConvertible, Sendable {
        var description: String
        /// Images by label: their names, and whether a container uses the image.
        var images: [(label: String, names: [String], inUse: Bool)]
        /// What rmi is given: names, or "@label" for that image's id; nil: --all.
        var remove: [String]?
        var force = false
        /// What stays, and what rmi said (Untagged: NAME, Deleted: @label), and its error.
        var left: [String]
        var said: [String]
        var failure: String? = nil
    }

    static let cases: [Case] = [
        Case(description: "a name of an image with two: only that name goes",
             images: [("a", ["one:1", "two:1"], false)], remove: ["one:1"],
             left: ["two:1"], said: ["Untagged: one:1"]),
        Case(description: "an id of an image with two names: refused without --force",
             images: [("a", ["one:1", "two:1"], false)], remove: ["@a"],
             left: ["one:1", "two:1"], said: [], failure: "@a: the image has 2 names (one:1, two:1); remove them by name or use --force"),
        Case(description: "an id of an image with two names and --force: both names and the image go",
             images: [("a", ["one:1", "two:1"], false)], remove: ["@a"], force: true,
             left: [], said: ["Untagged: one:1", "Untagged: two:1", "Deleted: @a"]),
        Case(description: "the last name of an image a container uses stays",
             images: [("a", ["used:1"], true)], remove: ["used:1"],
             left: ["used:1"], said: [], failure: "used:1: the image is in use by container web (0123456789ab): remove the container first, or use --force"),
        Case(description: "… unless --force",
             images: [("a", ["used:1"], true)], remove: ["used:1"], force: true,
             left: [], said: ["Untagged: used:1", "Deleted: @a"]),
        Case(description: "a name that is not the last of a used image goes",
             images: [("a", ["used:1", "alias:1"], true)], remove: ["alias:1"],
             left: ["used:1"], said: ["Untagged: alias:1"]),
        Case(description: "--all removes images of several names, not the used ones",
             images: [("a", ["one:1", "two:1"], false), ("b", ["used:1"], true)], remove: nil,
             left: ["used:1"], said: ["Untagged: one:1", "Untagged: two:1", "Deleted: @a"],
             failure: "@b: the image is in use by container web (0123456789ab): remove the container first, or use --force"),
        Case(description: "every name is tried; the failures come at the end, in order",
             images: [("a", ["keep:1"], false), ("b", ["go:1"], false)], remove: ["nothere:1", "go:1", "gone:2"],
             left: ["keep:1"], said: ["Untagged: go:1", "Deleted: @b"],
             failure: "nothere:1: image not known (see `ctr images`); gone:2: image not known (see `ctr images`)"),
    ]

    @Test(arguments: cases)
    func rmi(_ c: Case) throws {
        let f = try ImageFixture()
        var ids: [String: Digest] = [:], manifests: [String: Digest] = [:]
        var inUse: [ImageNames.ContainerUse] = []
        for i in c.images {
            let (record, id) = try f.image(i.label, names: i.names)
            ids[i.label] = id
            manifests[i.label] = record.descriptor.digest
            if i.inUse { inUse.append(.init(imageID: id, name: "web", id: "0123456789abcdef")) }
        }
        // ids (and manifest digests, which --all goes by) shown as @label: the table reads
        // without digests
        func label(_ s: String) -> String {
            var s = s
            for (l, id) in ids { s = s.replacingOccurrences(of: id.string, with: "@\(l)") }
            for (l, m) in manifests { s = s.replacingOccurrences(of: m.string, with: "@\(l)") }
            return s
        }
        let what: ImageNames.Removal
        if let names = c.remove {
            what = .images(names.map { $0.hasPrefix("@") ? ids[String($0.dropFirst())]!.string : $0 })
        } else {
            what = .all
        }
        var said: [String] = []
        var failure: String?
        do {
            try ImageNames.remove(what, from: f.store, inUse: inUse, force: c.force, removed: { r in
                switch r {
                case .untagged(let n): said.append("Untagged: \(n.familiar)")
                case .deleted(let id): said.append(label("Deleted: \(id.string)"))
                }
            }, waiting: {})
        } catch let e as CtrError {
            failure = label(e.description)
        }
        #expect(failure == c.failure)
        #expect(said == c.said)
        #expect(try f.names() == c.left.sorted())
    }

    /// An image that went is pruned: its blobs leave the store; a kept one's stay.
    @Test func removedImagesArePruned() throws {
        let f = try ImageFixture()
        let gone = try f.image("gone", names: ["gone:1"], files: [.file("gone", "x")])
        let kept = try f.image("kept", names: ["kept:1"], files: [.file("kept", "y")])
        let goneManifest = try f.store.manifest(gone.record.descriptor)
        let keptManifest = try f.store.manifest(kept.record.descriptor)
        var waited = false
        try ImageNames.remove(.images(["gone:1"]), from: f.store, inUse: [], force: false, removed: { _ in }, waiting: { waited = true })
        #expect(!waited)
        #expect(!f.store.hasBlob(gone.record.descriptor.digest))
        #expect(!f.store.hasBlob(goneManifest.layers[0].digest))
        #expect(f.store.hasBlob(keptManifest.layers[0].digest))
    }

    @Test func tagRefusesADigestAndSetsNothing() throws {
        let f = try ImageFixture()
        let r = try f.image("a", names: ["a:1"]).record
        let digestName = try Reference(parsing: "b@\(r.descriptor.digest.string)")
        #expect(throws: CtrError.usage("\(digestName.string): a tag cannot contain a digest")) {
            try ImageNames.tag(r, as: [try Reference(parsing: "ok:1"), digestName], in: f.store)
        }
        #expect(try f.names() == ["a:1"])
        try ImageNames.tag(r, as: [try Reference(parsing: "ok:1"), try Reference(parsing: "ok:2")], in: f.store)
        #expect(try f.names() == ["a:1", "ok:1", "ok:2"])
        #expect(Set(try f.store.images().map(\.descriptor.digest)) == [r.descriptor.digest])
    }
}

// MARK: - listing and inspect

@Suite struct ImageListingTests {
    @Test(arguments: [
        (nil, ["app:1", "app:2", "other:1", "<none>"]),
        ("app", ["app:1", "app:2"]),
        ("app:2", ["app:2"]),
        ("docker.io/library/other", ["other:1"]),
        ("nothere", []),
    ] as [(String?, [String])])
    func repositoryFilter(_ repository: String?, _ expected: [String]) throws {
        let f = try ImageFixture()
        try f.image("a", names: ["app:1"])
        try f.image("b", names: ["app:2", "other:1"])
        try f.image("c")
        let listing = try ImageListing(f.store, repository: repository)
        #expect(listing.images.map { $0.record.name?.familiar ?? "<none>" }.sorted() == expected.sorted())
        #expect(listing.unreadable.isEmpty)
    }

    @Test func unreadableImagesAreNamedNotFatal() throws {
        let f = try ImageFixture()
        let good = try f.image("good", names: ["good:1"])
        let bad = try f.image("bad", names: ["bad:1"])
        // its config blob goes: the listing shows the rest and names the broken one
        let config = try f.store.manifest(bad.record.descriptor).config
        unlink(f.store.blobPath(config.digest))
        let listing = try ImageListing(f.store)
        #expect(listing.images.map(\.id) == [good.id])
        #expect(listing.unreadable.map(\.image) == ["docker.io/library/bad:1"])
        #expect("\(listing.unreadable[0].error)".contains("blob \(config.digest) is missing"))
    }

    @Test func idsOnceInOrder() throws {
        let f = try ImageFixture()
        let a = try f.image("a", names: ["a:1", "a:2"])
        let b = try f.image("b", names: ["b:1"])
        #expect(try ImageListing(f.store).ids == [a.id, b.id])
    }

    @Test func inspectShowsFoundAndReportsMissing() throws {
        let f = try ImageFixture()
        var cc = ContainerConfig()
        cc.env = ["A=1"]
        cc.user = "1000"
        let a = try f.image("a", names: ["app:1", "reg.example:5000/team/app:2"], config: cc)
        let (docs, missing) = try ImageInspection.inspect(["app:1", "nothere", a.id.short], store: f.store)
        #expect(docs.count == 2)
        #expect(missing.map { "\($0)" } == ["nothere: image not known (see `ctr images`)"])
        let d = docs[0]
        #expect(d["Id"] as? String == a.id.string)
        #expect(d["Digest"] as? String == a.record.descriptor.digest.string)
        #expect(d["RepoTags"] as? [String] == ["docker.io/library/app:1", "reg.example:5000/team/app:2"])
        #expect(d["RepoDigests"] as? [String] == ["docker.io/library/app@\(a.record.descriptor.digest)",
                                                   "reg.example:5000/team/app@\(a.record.descriptor.digest)"])
        #expect(d["User"] as? String == "1000")
        #expect((d["Config"] as? [String: Any])?["Env"] as? [String] == ["A=1"])
        let rootFS = d["RootFS"] as? [String: Any]
        #expect(rootFS?["Type"] as? String == "layers")
        #expect((rootFS?["Layers"] as? [String])?.count == 1)
        #expect(d["ManifestMediaType"] as? String == MediaType.ociManifest.rawValue)
    }
}

// MARK: - unpack and files exports

@Suite struct ImageUnpackTests {
    @Test func unpackWritesRootfsAndMetadata() throws {
        let f = try ImageFixture()
        var cc = ContainerConfig()
        cc.env = ["PATH=/bin"]
        cc.cmd = ["sh"]
        cc.workingDir = "/w"
        let img = try f.image("a", files: [.dir("etc"), .file("etc/hello", "hi\n"), .symlink("link", to: "etc/hello")], config: cc)
        let dest = f.scratch.sub("out")
        var applying = 0
        let reports = try ImageUnpack.unpack(img.record, store: f.store, to: dest, applying: { applying += 1 })
        #expect(applying == 1)
        #expect(reports.count == 1)
        #expect(FS.text("\(dest)/rootfs/etc/hello") == "hi\n")
        #expect(FS.readlink("\(dest)/rootfs/link") == "etc/hello")
        #expect(FS.text("\(dest)/metadata.json") == """
            {
              "cmd" : [
                "sh"
              ],
              "env" : [
                "PATH=/bin"
              ],
              "user" : "",
              "workingDir" : "/w"
            }

            """)
    }

    @Test(arguments: [
        (ContainerConfig(), #"{"env":[],"user":""}"#),
        (ContainerConfig(user: "app", env: ["A=1"], entrypoint: ["/init"]), #"{"entrypoint":["/init"],"env":["A=1"],"user":"app"}"#),
    ])
    func metadata(_ config: ContainerConfig, _ expected: String) throws {
        let data = try ImageUnpack.metadata(ImageConfig(architecture: "amd64", os: "linux", config: config, rootfs: RootFS(diffIDs: [])))
        let compact = String(decoding: data, as: UTF8.self).filter { !$0.isWhitespace }
        #expect(compact == expected)
    }

    @Test func anExistingRootfsIsRefusedAndKept() throws {
        let f = try ImageFixture()
        let img = try f.image("a")
        let dest = f.scratch.dir("out")
        FS.mkdir("\(dest)/rootfs")
        FS.write("\(dest)/rootfs/mine", "keep")
        do { _ = try ImageUnpack.unpack(img.record, store: f.store, to: dest); Issue.record("unpacked over a rootfs") } catch {
            #expect("\(error)" == "\(dest)/rootfs already exists")
        }
        #expect(FS.text("\(dest)/rootfs/mine") == "keep")
    }

    /// A layer whose content does not match its diff-id leaves no rootfs behind.
    @Test func aBadLayerLeavesNoRootfs() throws {
        let f = try ImageFixture()
        let img = try f.image("a", diffID: Digest.sha256(Data("not this layer".utf8)))
        let dest = f.scratch.sub("out")
        do { _ = try ImageUnpack.unpack(img.record, store: f.store, to: dest); Issue.record("unpacked a bad layer") } catch {
            #expect("\(error)".contains("the image config says"), "\(error)")
        }
        #expect(!FS.exists("\(dest)/rootfs"))
        #expect(!FS.exists("\(dest)/metadata.json"))
    }

    @Test func filesAndTar() throws {
        let f = try ImageFixture()
        let img = try f.image("a", files: [.dir("d"), .file("d/one", "1"), .file("two", "2")])
        let dir = f.scratch.sub("files/deeper")
        _ = try ImageUnpack.files(img.record, store: f.store, to: dir)
        #expect(FS.text("\(dir)/d/one") == "1" && FS.text("\(dir)/two") == "2")
        let tar = f.scratch.sub("fs.tar")
        _ = try ImageUnpack.tar(img.record, store: f.store, to: tar, scratch: f.scratch.sub("tar-tree"))
        let scanned = try LayerOps.scan(blob: tar)
        #expect(scanned.compression == .none)
        #expect(try Tools.tarList(tar).filter { !$0.hasSuffix("/") }.sorted() == ["d/one", "two"])
    }
}

// MARK: - load, login

@Suite struct LoadAndLoginTests {
    /// A name that stood for another image moves to the loaded one, and the load says so.
    @Test func loadReportsMovedNames() throws {
        let from = try ImageFixture(), into = try ImageFixture()
        let loadedImage = try from.image("new", names: ["app:1", "fresh:1"])
        let archive = from.scratch.sub("app.tar")
        try ImageArchive.save(["app:1", "fresh:1"], from: from.store, format: .ociArchive, output: archive)
        let old = try into.image("old", names: ["app:1"])
        let loaded = try ImageArchive.load(archive, into: into.store)
        #expect(loaded.renamed == [ImageArchive.Renamed(name: try Reference(parsing: "app:1"), previous: old.id, image: loadedImage.id)])
        // loading it again moves nothing
        #expect(try ImageArchive.load(archive, into: into.store).renamed == [])
    }

    @Test(arguments: [
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("quay.io/team/app", "quay.io"),
        ("localhost:5443", "localhost:5443"),
    ])
    func loginHost(_ server: String, _ host: String) {
        #expect(RegistryLogin.host(server) == host)
    }
}
