// ctr build's request: the flags' values parsed into types (outputs, the source of context
// and Dockerfile, secrets, build args, base-image archives, cache references), the actions a
// request plans after the build, and what standard input becomes (spooled into the store's
// scratch, which goes at the end).
import Errors
import Foundation
import Testing
import Layers
@testable import Builder

@Suite struct BuildFlagParsingTests {
    @Test(arguments: [
        ("out", BuildOutput.local(dest: "out")),
        ("./some/dir", .local(dest: "./some/dir")),
        ("type=local,dest=d", .local(dest: "d")),
        ("type=tar,dest=fs.tar", .tar(dest: "fs.tar")),
        ("type=rootfs,dest=r", .rootfs(dest: "r")),
        ("type=oci-archive,dest=out/image.tar", .archive(.ociArchive, dest: "out/image.tar")),
        ("dest=img.tar,type=docker-archive", .archive(.dockerArchive, dest: "img.tar")),
        ("type=oci-dir,dest=layout", .archive(.ociDir, dest: "layout")),
        ("type=oci,dest=img.tar", .archive(.ociArchive, dest: "img.tar")),
        ("type=oci,dest=layout,tar=false", .archive(.ociDir, dest: "layout")),
        ("type=docker,dest=d.tar", .archive(.dockerArchive, dest: "d.tar")),
        (#"type=local,"dest=a,b""#, .local(dest: "a,b")),
    ])
    func output(_ spec: String, _ expected: BuildOutput) throws {
        #expect(try BuildOutput(parsing: spec) == expected)
    }

    @Test(arguments: [
        ("type=local", "--output type=local: expected type=TYPE,dest=PATH"),
        ("dest=x", "--output dest=x: expected type=TYPE,dest=PATH"),
        ("type=registry,dest=x", "--output type=registry,dest=x: type registry is not supported (local, tar, oci, docker, oci-archive, docker-archive, oci-dir, rootfs)"),
        ("type=OCI-archive,dest=x", "--output type=OCI-archive,dest=x: type OCI-archive is not supported (local, tar, oci, docker, oci-archive, docker-archive, oci-dir, rootfs)"),
    ])
    func badOutput(_ spec: String, _ message: String) {
        #expect(throws: CtrError.usage(message)) { try BuildOutput(parsing: spec) }
    }

    @Test(arguments: [
        (".", nil, BuildSource.directory(".", dockerfile: .inContext)),
        ("ctx", "-", .directory("ctx", dockerfile: .stdin)),
        ("ctx", "docker/Dockerfile.prod", .directory("ctx", dockerfile: .path("docker/Dockerfile.prod"))),
        ("-", nil, .stdin(dockerfile: nil)),
        ("-", "Dockerfile.ci", .stdin(dockerfile: "Dockerfile.ci")),
    ] as [(String, String?, BuildSource)])
    func source(_ context: String, _ file: String?, _ expected: BuildSource) throws {
        #expect(try BuildSource(context: context, file: file) == expected)
    }

    @Test func stdinIsOneOrTheOther() {
        #expect(throws: CtrError.usage("stdin can be the Dockerfile (-f -) or the context (-), not both")) {
            try BuildSource(context: "-", file: "-")
        }
    }

    @Test(arguments: [
        ("id=npmrc,src=/home/u/.npmrc", "npmrc", BuildSecret.Source.file("/home/u/.npmrc")),
        ("id=npmrc,source=rel/path", "npmrc", .file("rel/path")),
        ("id=TOKEN", "TOKEN", .env("TOKEN")),
        ("id=tok,env=GITHUB_TOKEN", "tok", .env("GITHUB_TOKEN")),
        ("env=X,id=x,src=f", "x", .file("f")),
    ])
    func secret(_ spec: String, _ id: String, _ source: BuildSecret.Source) throws {
        let s = try BuildSecret(parsing: spec)
        #expect(s.id == id && s.source == source && s.spec == spec)
    }

    @Test(arguments: ["src=/x", "id=,src=/x", "npmrc"])
    func secretWithoutID(_ spec: String) {
        #expect(throws: CtrError.usage("--secret \(spec): expected id=ID,src=PATH or id=ID,env=VAR")) { try BuildSecret(parsing: spec) }
    }

    @Test(arguments: [
        ("base=./base.tar", "base", "./base.tar"),
        ("docker.io/library/busybox:1=/tmp/a=b.tar", "docker.io/library/busybox:1", "/tmp/a=b.tar"),
    ])
    func imageArchive(_ spec: String, _ name: String, _ path: String) throws {
        let a = try BaseImageArchive(parsing: spec)
        #expect(a.name == name && a.path == path && a.spec == spec)
    }

    @Test(arguments: ["base", "=x.tar", ""])
    func badImageArchive(_ spec: String) {
        #expect(throws: CtrError.usage("--image-archive \(spec): expected NAME=PATH")) { try BaseImageArchive(parsing: spec) }
    }

    @Test(arguments: [
        ("127.0.0.1:5000/team/cache", "127.0.0.1:5000/team/cache"),
        ("127.0.0.1:5000/team/cache:v2", "127.0.0.1:5000/team/cache:v2"),
        ("type=registry,ref=reg.example/c:1", "reg.example/c:1"),
        ("ref=reg.example/c,mode=max,type=registry", "reg.example/c"),
        // no ref= in a key=value list: the value as it is (the pull then says what is wrong)
        ("type=local,dest=x", "type=local,dest=x"),
    ])
    func cacheReference(_ spec: String, _ ref: String) {
        #expect(BuildCacheImage.reference(spec) == ref)
    }

    @Test(arguments: [
        (["A=1", "B=two=2", "C="], ["A": "1", "B": "two=2", "C": ""]),
        (["FROM_ENV", "UNSET"], ["FROM_ENV": "env value"]),
        (["A=1", "A=2"], ["A": "2"]),
    ])
    func buildArgs(_ args: [String], _ expected: [String: String]) throws {
        #expect(try BuildArgs.collect(files: [], args: args, environment: ["FROM_ENV": "env value"]) == expected)
    }

    @Test(arguments: ["=x", ""])
    func badBuildArg(_ arg: String) {
        #expect(throws: CtrError.usage("--build-arg \(arg): expected NAME=VALUE")) {
            try BuildArgs.collect(files: [], args: [arg], environment: [:])
        }
    }

    @Test func buildArgFilesThenFlags() throws {
        let dir = try TempDir()
        let f = "\(dir.path)/args.env"
        try Data("# a comment\n\nA=from-file\n  B=spaced  \nE\nC=file\n".utf8).write(to: URL(fileURLWithPath: f))
        let args = try BuildArgs.collect(files: [f], args: ["C=flag"], environment: ["E": "env"])
        #expect(args == ["A": "from-file", "B": "spaced", "E": "env", "C": "flag"])
        #expect(message {
            _ = try BuildArgs.collect(files: ["\(dir.path)/none"], args: [], environment: [:])
        } == "--build-arg-file \(dir.path)/none: cannot read it")
    }
}

/// The error `body` throws, as the CLI shows it; nil when it throws none.
func message(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}

// MARK: - the plan after a build

@Suite struct BuildPlanTests {
    static let id = Digest(sha256Hex: String(repeating: "a", count: 64))
    static let manifest = Digest(sha256Hex: String(repeating: "b", count: 64))

    struct Case: CustomStringConvertible, Sendable {
        var description: String
        var tags: [String] = []
        var outputs: [String] = []
        var cacheTo: String?
        var digestFile: String?
        var iidFile: String?
        var push = false
        var actions: [BuildAction]
    }

    static let cases: [Case] = [
        Case(description: "nothing asked: nothing after the build", actions: []),
        Case(description: "an archive of an unnamed image is saved by id",
             outputs: ["type=oci-archive,dest=i.tar"], actions: [.save(names: [id.encoded], format: .ociArchive, to: "i.tar")]),
        Case(description: "an archive of a named image is saved under every -t name",
             tags: ["app:1", "127.0.0.1:5000/team/app:2"], outputs: ["type=docker-archive,dest=d.tar"],
             actions: [.save(names: ["docker.io/library/app:1", "127.0.0.1:5000/team/app:2"], format: .dockerArchive, to: "d.tar")]),
        Case(description: "the files outputs, in the order given",
             outputs: ["type=tar,dest=fs.tar", "out", "type=rootfs,dest=r", "type=oci-dir,dest=l"],
             actions: [.tar(to: "fs.tar"), .files(to: "out"), .rootfs(to: "r"), .save(names: [id.encoded], format: .ociDir, to: "l")]),
        Case(description: "cache export, then the digest and id files, then outputs, then pushes",
             tags: ["127.0.0.1:5000/a:1", "127.0.0.1:5000/b:1"], outputs: ["o"], cacheTo: "type=registry,ref=127.0.0.1:5000/cache",
             digestFile: "digest", iidFile: "iid", push: true,
             actions: [.exportCache(to: try! Reference(parsing: "127.0.0.1:5000/cache")),
                       .writeFile(path: "digest", contents: manifest.string), .writeFile(path: "iid", contents: id.string),
                       .files(to: "o"),
                       .push(to: try! Reference(parsing: "127.0.0.1:5000/a:1")), .push(to: try! Reference(parsing: "127.0.0.1:5000/b:1"))]),
        Case(description: "tags without --push push nothing", tags: ["app:1"], actions: []),
    ]

    @Test(arguments: cases)
    func actions(_ c: Case) throws {
        var r = BuildRequest(source: .directory(".", dockerfile: .inContext))
        r.options.tags = try c.tags.map { try Reference(parsing: $0) }
        r.outputs = try c.outputs.map { try BuildOutput(parsing: $0) }
        r.cacheTo = try c.cacheTo.map { try Reference(parsing: BuildCacheImage.reference($0)) }
        r.digestFile = c.digestFile
        r.iidFile = c.iidFile
        r.push = c.push
        #expect(r.actions(imageID: Self.id, manifest: Self.manifest) == c.actions)
    }
}

// MARK: - standard input and secrets

/// A directory removed at the end of a test.
final class TempDir {
    let path: String
    init() throws {
        var template = Array("/var/tmp/ctr-buildertest-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw CtrError.system("mkdtemp", errno: errno, "mkdtemp failed") }
        path = String(cString: p)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite struct BuildStdinTests {
    /// A store in a temp dir, and a file standing for standard input.
    final class Fixture {
        let dir: TempDir
        let store: Store
        let scratch: BuildScratch
        init() throws {
            dir = try TempDir()
            store = try Store(root: "\(dir.path)/store")
            scratch = BuildScratch(store)
        }
        deinit { scratch.removeAll() }

        func stdin(_ data: Data) throws -> Int32 {
            let path = "\(dir.path)/stdin-\(UUID().uuidString)"
            try data.write(to: URL(fileURLWithPath: path))
            return open(path, O_RDONLY | O_CLOEXEC)
        }

        /// A tar (compressed as asked) of a context with a Dockerfile and app/main.c.
        func contextTar(_ compression: Compression) throws -> Data {
            let ctx = "\(dir.path)/ctx-src"
            try FileManager.default.createDirectory(atPath: "\(ctx)/app", withIntermediateDirectories: true)
            try Data("FROM scratch\nCOPY app /app\n".utf8).write(to: URL(fileURLWithPath: "\(ctx)/Dockerfile"))
            try Data("int main;\n".utf8).write(to: URL(fileURLWithPath: "\(ctx)/app/main.c"))
            let out = "\(dir.path)/ctx.tar"
            _ = try store.ops.create(from: ctx, to: out, tree: .plain, compression: compression)
            return try Data(contentsOf: URL(fileURLWithPath: out))
        }

        /// Nothing of standard input left in the store once the scratch is gone.
        func leftovers() -> [String] {
            scratch.removeAll()
            let fm = FileManager.default
            return ((try? fm.contentsOfDirectory(atPath: "\(store.root)/ingest")) ?? [])
                + ((try? fm.contentsOfDirectory(atPath: "\(store.root)/build-tmp")) ?? [])
        }
    }

    func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test(arguments: [Compression.none, .gzip, .zstd])
    func contextTarOnStdin(_ compression: Compression) throws {
        let f = try Fixture()
        let fd = try f.stdin(try f.contextTar(compression))
        defer { close(fd) }
        let (context, dockerfile) = try Builder.prepare(.stdin(dockerfile: nil), store: f.store, scratch: f.scratch, stdin: fd)
        #expect(dockerfile == nil)
        #expect(context.hasPrefix("\(f.store.root)/build-tmp/cli-"))
        #expect(text("\(context)/Dockerfile") == "FROM scratch\nCOPY app /app\n")
        #expect(text("\(context)/app/main.c") == "int main;\n")
        #expect(f.leftovers() == [])
        #expect(!FileManager.default.fileExists(atPath: context))
    }

    @Test func aLoneDockerfileOnStdinHasAnEmptyContext() throws {
        let f = try Fixture()
        let fd = try f.stdin(Data("FROM scratch\nLABEL a=b\n".utf8))
        defer { close(fd) }
        let (context, dockerfile) = try Builder.prepare(.stdin(dockerfile: nil), store: f.store, scratch: f.scratch, stdin: fd)
        // named "stdin": errors say stdin:2
        #expect(dockerfile?.hasSuffix("/stdin") == true)
        #expect(text(dockerfile ?? "") == "FROM scratch\nLABEL a=b\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: context) == [])
        #expect(f.leftovers() == [])
    }

    @Test func notATarWithADockerfileFlagIsRefused() throws {
        let f = try Fixture()
        let fd = try f.stdin(Data("FROM scratch\n".utf8))
        defer { close(fd) }
        #expect(message {
            _ = try Builder.prepare(.stdin(dockerfile: "Dockerfile.ci"), store: f.store, scratch: f.scratch, stdin: fd)
        } == "the context on stdin is not a tar (plain, gzip or zstd)")
        #expect(f.leftovers() == [])
    }

    @Test func dockerfileOnStdin() throws {
        let f = try Fixture()
        let fd = try f.stdin(Data("FROM busybox\nRUN true\n".utf8))
        defer { close(fd) }
        let (context, dockerfile) = try Builder.prepare(.directory("/some/ctx", dockerfile: .stdin), store: f.store, scratch: f.scratch, stdin: fd)
        #expect(context == "/some/ctx")
        #expect(dockerfile?.hasSuffix("/Dockerfile") == true)
        #expect(text(dockerfile ?? "") == "FROM busybox\nRUN true\n")
        #expect(f.leftovers() == [])
    }

    /// Without "-", standard input is not read (fd -1 would fail any read).
    @Test(arguments: [DockerfileSource.inContext, .path("df")])
    func stdinUntouched(_ df: DockerfileSource) throws {
        let f = try Fixture()
        let (context, dockerfile) = try Builder.prepare(.directory("ctx", dockerfile: df), store: f.store, scratch: f.scratch, stdin: -1)
        #expect(context == "ctx")
        #expect(dockerfile == (df == .inContext ? nil : "df"))
        #expect(f.scratch.dirs == [])
    }

    @Test func unreadableStdinLeavesNothing() throws {
        let f = try Fixture()
        do {
            _ = try Builder.prepare(.stdin(dockerfile: nil), store: f.store, scratch: f.scratch, stdin: -1)
            Issue.record("read a closed fd")
        } catch {
            #expect("\(error)".hasPrefix("cannot read standard input"), "\(error)")
        }
        #expect(f.leftovers() == [])
    }

    @Test func secrets() throws {
        let dir = try TempDir()
        let file = "\(dir.path)/npmrc"
        try Data("token".utf8).write(to: URL(fileURLWithPath: file))
        // a file is used where it is
        let fromFile = try Builder.materialize(try BuildSecret(parsing: "id=npmrc,src=\(file)"), environment: [:])
        #expect(fromFile.path == file && !fromFile.owned)
        // a variable goes through a private file in $XDG_RUNTIME_DIR, which the build removes
        let fromEnv = try Builder.materialize(try BuildSecret(parsing: "id=tok,env=GH"), environment: ["GH": "s3cret", "XDG_RUNTIME_DIR": dir.path])
        #expect(fromEnv.owned && fromEnv.path.hasPrefix("\(dir.path)/ctr-secret-"))
        #expect(try String(contentsOfFile: fromEnv.path, encoding: .utf8) == "s3cret")
        var st = stat()
        #expect(stat(fromEnv.path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        unlink(fromEnv.path)

        let missing = try BuildSecret(parsing: "id=x,src=\(dir.path)/none")
        #expect(message {
            _ = try Builder.materialize(missing, environment: [:])
        } == "--secret id=x,src=\(dir.path)/none: cannot read \(dir.path)/none")
        #expect(message {
            _ = try Builder.materialize(try BuildSecret(parsing: "id=TOKEN"), environment: [:])
        } == "--secret id=TOKEN: $TOKEN is not set")
    }
}
