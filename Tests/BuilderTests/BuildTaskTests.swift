// Concourse's oci-build-task params as ctr reads them: the environment (envconfig's name
// forms, the prefixed params, bools), the oci-image prototype's JSON, and the plan of builds
// and outputs they make (files read up front: a missing one is an error naming the param).
import Errors
import Foundation
import Layers
import Testing
@testable import Builder

@Suite struct BuildTaskParamsTests {
    @Test func defaultsAndForms() throws {
        let p = try BuildTaskParams(environment: [
            "CONTEXT": "src", "unpack_rootfs": "true", "OUTPUTOCI": "false", "TARGET": "final",
            "ADDITIONAL_TARGETS": "base,test", "REGISTRY_MIRRORS": "https://mirror.gcr.io",
            "BUILDKIT_ADD_HOSTS": "db=10.0.0.5,cache=10.0.0.6", "IMAGE_PLATFORM": "linux/arm64",
            "DEBUG": "1", "UNRELATED": "x", "DOCKERFILE": "",
        ])
        #expect(p.context == "src" && p.dockerfile == nil && p.target == "final")
        #expect(p.unpackRootfs && !p.outputOCI && p.debug)
        #expect(p.additionalTargets == ["base", "test"] && p.registryMirrors == ["https://mirror.gcr.io"])
        #expect(p.addHosts == [.init("db", "10.0.0.5"), .init("cache", "10.0.0.6")])
        #expect(p.platform == "linux/arm64" && p.output == "image" && p.cache == nil)
        #expect(try BuildTaskParams(environment: [:]).context == ".")
    }

    /// The prefixes are case-sensitive, the rest of the name keeps its case, the environment's
    /// order decides which of two wins, and BUILDKIT_SECRETTEXT_ is not a BUILDKIT_SECRET_.
    @Test func prefixed() throws {
        let env = ["BUILD_ARG_Version": "1", "build_arg_x": "no", "LABEL_org.team": "ci", "BUILDKIT_SECRET_npm": "npmrc",
                   "BUILDKIT_SECRETTEXT_tok": "s3cr3t", "IMAGE_ARG_base_image": "base.tar", "BUILD_ARGS_FILE": "args"]
        let p = try BuildTaskParams(environment: env, order: ["BUILD_ARGS_FILE", "LABEL_org.team", "BUILD_ARG_Version", "build_arg_x",
                                                              "BUILDKIT_SECRET_npm", "BUILDKIT_SECRETTEXT_tok", "IMAGE_ARG_base_image"])
        #expect(p.buildArgs == [.init("Version", "1")])
        #expect(p.labels == [.init("org.team", "ci")])
        #expect(p.secretFiles == [.init("npm", "npmrc")] && p.secretTexts == [.init("tok", "s3cr3t")])
        #expect(p.imageArgs == [.init("base_image", "base.tar")] && p.buildArgsFile == "args")
    }

    @Test(arguments: [
        (["UNPACK_ROOTFS": "yes"], "UNPACK_ROOTFS=yes: expected true or false"),
        (["BUILDKIT_ADD_HOSTS": "db"], "BUILDKIT_ADD_HOSTS: db: expected HOST=IP"),
        (["LOGIN": "pass"], "LOGIN=PASS needs PASS=USER:PASSWORD"),
        (["CTR_CACHE_MAX": "lots"], "CTR_CACHE_MAX=lots"),
    ])
    func malformed(_ env: [String: String], _ says: String) {
        #expect { _ = try BuildTaskParams(environment: env) } throws: { "\($0)".contains(says) }
    }

    @Test func loginAndCacheSize() throws {
        let p = try BuildTaskParams(environment: ["LOGIN": "PASS", "PASS": "bob:pa:ss", "REG_URL": "127.0.0.1:5000", "CTR_CACHE_MAX": "2g"])
        #expect(p.login == .init(registry: "127.0.0.1:5000", user: "bob", password: "pa:ss"))
        #expect(p.cacheMax == 2 << 30)
        #expect(try BuildTaskParams(environment: ["LOGIN": "PASS", "PASS": "a:b"]).login?.registry == "https://index.docker.io/v1/")
    }

    @Test func prototype() throws {
        let json = """
            {"object": {"context": "input", "output": "image", "cache": true, "target": "final",
             "additional_targets": ["base"], "build_args": ["A=1", "B=x=y"], "labels": ["k=v"],
             "buildkit_secrets": {"npm": "input/npmrc"}, "unpack_rootfs": true, "image_args": ["base_image=base/image.tar"],
             "add_hosts": "db=10.0.0.5"}, "response_path": "/tmp/response"}
            """
        let (p, response) = try BuildTaskParams.prototype(Data(json.utf8))
        #expect(response == "/tmp/response")
        #expect(p.context == "input" && p.output == "image" && p.cache == true && p.target == "final")
        #expect(p.additionalTargets == ["base"] && p.buildArgs == [.init("A", "1"), .init("B", "x=y")] && p.labels == [.init("k", "v")])
        #expect(p.secretFiles == [.init("npm", "input/npmrc")] && p.unpackRootfs && p.imageArgs == [.init("base_image", "base/image.tar")])
        #expect(p.addHosts == [.init("db", "10.0.0.5")])
    }

    @Test(arguments: [
        (#"{"object": {"context": "i", "output": "o", "bogus": 1}}"#, "object.bogus: not a field"),
        (#"{"object": {"output": "o"}}"#, "object.context: required"),
        (#"{"object": {"context": "i"}}"#, "object.output: required"),
        (#"{"object": {"context": "i", "output": "o", "cache": "yes"}}"#, "object.cache: expected true or false"),
        (#"[1]"#, "not {\"object\""),
    ])
    func prototypeRejects(_ json: String, _ says: String) {
        #expect { _ = try BuildTaskParams.prototype(Data(json.utf8)) } throws: { "\($0)".contains(says) }
    }
}

@Suite struct BuildTaskPlanTests {
    func scratch(_ body: (String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "ctr-task-plan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(dir)/src", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("FROM scratch\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/src/Dockerfile"))
        try body(dir)
    }

    /// Build args: the params, then the file, then the image args (a later one wins); the
    /// outputs where the output dirs exist; additional targets first.
    @Test func plan() throws {
        try scratch { d in
            try FileManager.default.createDirectory(atPath: "\(d)/image", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: "\(d)/test", withIntermediateDirectories: true)
            try Data("A=file\n\nC=3\n".utf8).write(to: URL(fileURLWithPath: "\(d)/args"))
            try Data(" final \n".utf8).write(to: URL(fileURLWithPath: "\(d)/target"))
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(d)/base.tar"))
            var p = BuildTaskParams()
            p.context = "src"
            p.buildArgs = [.init("A", "env"), .init("B", "2"), .init("base", "overridden")]
            p.buildArgsFile = "args"
            p.targetFile = "target"
            p.target = "ignored"
            p.additionalTargets = ["test", "lint"]
            p.imageArgs = [.init("base", "base.tar")]
            p.secretTexts = [.init("tok", "s3cr3t")]
            p.unpackRootfs = true
            let plan = try BuildTask.plan(p, cwd: d, secretDir: "\(d)/secrets")
            #expect(plan.map(\.target) == ["test", "lint", "final"])
            let main = plan[2].request
            #expect(main.options.buildArgs == ["A": "file", "B": "2", "C": "3", "base": BuildTask.imageArgReference("base")])
            #expect(main.imageArchives.map { "\($0.name)=\($0.path)" } == ["ctr-image-arg/base=\(d)/base.tar"])
            #expect(main.imageArchives.first?.label == "IMAGE_ARG_base=base.tar", "errors name the param")
            #expect(main.outputs == [.archive(.dockerArchive, dest: "\(d)/image/image.tar"), .rootfs(dest: "\(d)/image")])
            #expect(plan[0].request.outputs.count == 2 && plan[1].request.outputs.isEmpty, "./lint does not exist: built, not exported")
            #expect(FileManager.default.contents(atPath: "\(d)/secrets/tok") == Data("s3cr3t".utf8))
            var oci = p
            oci.outputOCI = true
            #expect(try BuildTask.plan(oci, cwd: d, secretDir: "\(d)/secrets")[2].request.outputs
                    == [.archive(.ociArchive, dest: "\(d)/image/image.tar"), .archive(.ociDir, dest: "\(d)/image/image")])
        }
    }

    struct Missing: Sendable, CustomTestStringConvertible {
        var edit: @Sendable (inout BuildTaskParams) -> Void
        var says: String
        var testDescription: String { says }
    }

    static let missingCases: [Missing] = [
        Missing(edit: { p in p.buildArgsFile = "nope" }, says: "BUILD_ARGS_FILE=nope: cannot read it"),
        Missing(edit: { p in p.labelsFile = "nope" }, says: "LABELS_FILE=nope: cannot read it"),
        Missing(edit: { p in p.targetFile = "nope" }, says: "TARGET_FILE=nope: cannot read it"),
        Missing(edit: { p in p.imageArgs = [.init("b", "nope.tar")] }, says: "IMAGE_ARG_b=nope.tar: no such file"),
        Missing(edit: { p in p.secretFiles = [.init("s", "nope")] }, says: "BUILDKIT_SECRET_s=nope: no such file"),
        Missing(edit: { p in p.context = "nope" }, says: "CONTEXT=nope: no such directory"),
        Missing(edit: { p in p.dockerfile = "src/Other" }, says: "DOCKERFILE=src/Other: no such file"),
        Missing(edit: { p in p.platform = "linux" }, says: "IMAGE_PLATFORM=linux"),
    ]

    @Test(arguments: missingCases)
    func missing(_ c: Missing) throws {
        try scratch { d in
            var p = BuildTaskParams()
            p.context = "src"
            c.edit(&p)
            #expect { _ = try BuildTask.plan(p, cwd: d, secretDir: "\(d)/secrets") } throws: { "\($0)".contains(c.says) }
        }
    }
}
