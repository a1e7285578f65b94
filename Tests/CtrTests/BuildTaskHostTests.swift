import Foundation
import Testing

/// `ctr oci-build-task` in a task directory laid out as Concourse does (inputs and outputs as
/// directories of the working dir), as root and rootless: upstream's outputs, the prototype's
/// JSON form, malformed params, and a cache/ that is the whole store (restored elsewhere it
/// rebuilds nothing; bounded; shared by two tasks at once).
@Suite(.serialized) struct BuildTaskHostTests {
    static let dockerfile = """
        ARG base_image
        FROM ${base_image} AS first
        ARG VERSION
        RUN echo "v=$VERSION" > /version && grep -q '^10.1.2.3[[:space:]]*db$' /etc/hosts
        FROM first AS final
        LABEL from=dockerfile
        RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /tok-size && rm -f /bin/uname

        """

    /// A task dir: src/ (the input), base/busybox.tar (an image input), image/ and first/
    /// (outputs), cache/ when asked.
    static func taskDir(_ w: Workspace, cache: Bool = true, name: String = "task") throws -> String {
        let d = "\(w.dir)/\(name)"
        var script = "set -e; mkdir -p \(d)/src \(d)/base \(d)/image \(d)/first; echo -n hunter2 > \(d)/tokfile"
        if cache { script += "; mkdir -p \(d)/cache" }
        expectOK(try w.bash(script))
        try Data(dockerfile.utf8).write(to: URL(fileURLWithPath: "\(d)/src/Dockerfile"))
        // an image tarball, as a get step of a registry-image resource gives one
        let store = "\(w.dir)/base-store"
        expectOK(try w.ctr(["import", "--tag", "busybox:local", "\(TestEnv.fixtures)/busybox.tar"], root: store))
        expectOK(try w.ctr(["save", "-o", "\(d)/base/busybox.tar", "busybox:local"], root: store))
        return d
    }

    static let params = ["CONTEXT": "src", "BUILD_ARG_VERSION": "1.2", "IMAGE_ARG_base_image": "base/busybox.tar", "LABEL_team": "ci",
                         "BUILDKIT_SECRET_tok": "tokfile", "TARGET": "final", "UNPACK_ROOTFS": "true", "ADDITIONAL_TARGETS": "first",
                         "BUILDKIT_ADD_HOSTS": "db=10.1.2.3", "IMAGE_PLATFORM": "linux/amd64", "DEBUG": "true", "SOMETHING_ELSE": "ignored"]

    /// ctr oci-build-task in `dir`, as the workspace's user.
    static func task(_ w: Workspace, in dir: String, _ env: [String: String], args: [String] = [], stdin: Data? = nil) throws -> RunResult {
        var e = env
        e["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        // the store when the task has no cache/ (with one, the store is cache/ctr)
        e["CTR_ROOT"] = e["CTR_ROOT"] ?? w.store
        let envArgs = e.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return try w.sh(["/bin/sh", "-c", "cd \"$0\" && exec /usr/bin/env \"$@\"", dir] + envArgs + [TestEnv.binary, "oci-build-task"] + args, stdin: stdin)
    }

    /// The image id of a docker-archive: the sha256 of its config.
    static func configDigest(_ w: Workspace, _ archive: String) throws -> String {
        let m = try w.bash("tar -xOf '\(archive)' manifest.json")
        guard let arr = try JSONSerialization.jsonObject(with: Data(m.stdout.utf8)) as? [[String: Any]],
              let cfg = arr.first?["Config"] as? String else { return "no manifest.json: \(m)" }
        let h = try w.bash("tar -xOf '\(archive)' '\(cfg)' | sha256sum")
        return "sha256:" + (h.stdout.split(separator: " ").first.map(String.init) ?? "")
    }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test(arguments: [Who.root, .rootless])
    func upstreamOutputs(_ who: Who) throws {
        guard who.available else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        let d = try Self.taskDir(w)
        let r = try Self.task(w, in: d, Self.params)
        expectOK(r, "task")
        guard r.status == 0 else { return }
        // image/: a docker-archive without names, the image id in digest (no newline), the rootfs
        let digest = Self.read("\(d)/image/digest")
        #expect(digest.hasPrefix("sha256:") && digest.count == 71, "\(digest)")
        #expect(try Self.configDigest(w, "\(d)/image/image.tar") == digest)
        let tags = try w.bash("tar -xOf '\(d)/image/image.tar' manifest.json")
        #expect(tags.stdout.contains("\"RepoTags\":null") || tags.stdout.contains("\"RepoTags\":[]") || !tags.stdout.contains("RepoTags\":[\""), "\(tags.stdout)")
        let skopeo = try w.sh(["/usr/bin/skopeo", "inspect", "--config", "docker-archive:\(d)/image/image.tar"])
        expectOK(skopeo, "skopeo reads it")
        #expect(skopeo.stdout.contains("\"team\": \"ci\"") && skopeo.stdout.contains("\"from\": \"dockerfile\""), "\(skopeo.stdout)")
        #expect(Self.read("\(d)/image/rootfs/version") == "v=1.2\n")
        #expect(Self.read("\(d)/image/rootfs/tok-size").trimmingCharacters(in: .whitespacesAndNewlines) == "7")
        #expect(!FileManager.default.fileExists(atPath: "\(d)/image/rootfs/bin/uname"), "the step's deletion is in the image")
        let meta = Self.read("\(d)/image/metadata.json")
        #expect(meta.contains("\"env\"") && meta.contains("PATH=") && meta.contains("\"user\""), "\(meta)")
        // the additional target, in its own output
        let first = Self.read("\(d)/first/digest")
        let firstConfig = try Self.configDigest(w, "\(d)/first/image.tar")
        #expect(first.hasPrefix("sha256:") && first != digest && firstConfig == first)
        #expect(r.stderr.contains("building target 'first'") && r.stderr.contains("building target 'final'"), "\(r.stderr)")
        // nothing but the outputs in image/
        #expect(Set((try? FileManager.default.contentsOfDirectory(atPath: "\(d)/image")) ?? []) == ["image.tar", "digest", "rootfs", "metadata.json"])

        // restored into another task dir with a new store: nothing runs again, same image
        let d2 = try Self.taskDir(w, cache: false, name: "task2")
        expectOK(try w.bash("cp -a '\(d)/cache' '\(d2)/cache' && cp '\(d)/base/busybox.tar' '\(d2)/base/busybox.tar'"))
        let again = try Self.task(w, in: d2, Self.params)
        expectOK(again, "from the restored cache")
        #expect(again.stderr.components(separatedBy: "--> CACHED").count - 1 == 3, "every RUN cached: \(again.stderr)")
        #expect(Self.read("\(d2)/image/digest") == digest)
    }

    @Test func ociOutputAndPrototype() throws {
        let w = try Workspace(.root)
        let d = try Self.taskDir(w, cache: false)
        var env = Self.params
        env["OUTPUT_OCI"] = "true"
        env["UNPACK_ROOTFS"] = nil
        let r = try Self.task(w, in: d, env)
        expectOK(r)
        let index = Self.read("\(d)/image/image/index.json")
        let digest = Self.read("\(d)/image/digest")
        #expect(digest.count == 71 && index.contains(digest), "the manifest digest: \(digest) in \(index)")
        #expect(FileManager.default.fileExists(atPath: "\(d)/image/image.tar") && FileManager.default.fileExists(atPath: "\(d)/image/image/oci-layout"))
        expectOK(try w.sh(["/usr/bin/skopeo", "inspect", "oci:\(d)/image/image"]), "an OCI layout")

        // the oci-image prototype: the request on stdin, the outputs in `output`, an empty response
        expectOK(try w.bash("mkdir -p '\(d)/out'"))
        let request = """
            {"object": {"context": "src", "output": "out", "target": "final", "build_args": ["VERSION=2"],
             "image_args": ["base_image=base/busybox.tar"], "buildkit_secrets": {"tok": "tokfile"}, "unpack_rootfs": true, "add_hosts": "db=10.1.2.3"},
             "response_path": "\(d)/response"}
            """
        let p = try Self.task(w, in: d, [:], args: ["build"], stdin: Data(request.utf8))
        expectOK(p, "prototype")
        #expect(Self.read("\(d)/out/rootfs/version") == "v=2\n")
        #expect(Self.read("\(d)/out/digest").count == 71 && FileManager.default.fileExists(atPath: "\(d)/response"))
        let bad = try Self.task(w, in: d, [:], args: ["build"], stdin: Data(#"{"object": {"context": "src", "output": "out", "pushh": true}}"#.utf8))
        expectOneLineError(bad, mentions: "object.pushh")
    }

    /// A malformed param: one line naming it, a non-zero exit, nothing in image/.
    @Test(arguments: [
        (["BUILD_ARGS_FILE": "nope.env"], "BUILD_ARGS_FILE=nope.env"),
        (["IMAGE_ARG_base_image": "src/Dockerfile"], "IMAGE_ARG_base_image=src/Dockerfile"),
        (["UNPACK_ROOTFS": "maybe"], "UNPACK_ROOTFS=maybe"),
    ])
    func malformed(_ edit: [String: String], _ culprit: String) throws {
        let w = try Workspace(.root)
        let d = try Self.taskDir(w)
        var env = Self.params
        env["DEBUG"] = nil
        for (k, v) in edit { env[k] = v }
        let r = try Self.task(w, in: d, env)
        expectOneLineError(r, mentions: culprit)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(d)/image")) ?? ["?"]).isEmpty, "image/ stays empty")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: "\(d)/first")) ?? ["?"]).isEmpty, "first/ stays empty")
    }

    /// CTR_CACHE_MAX bounds cache/: over it, the least recently used steps go (and are run
    /// again next time); two tasks sharing one cache at once both finish with the same image.
    @Test func boundedAndShared() throws {
        let w = try Workspace(.root)
        let d = try Self.taskDir(w)
        expectOK(try Self.task(w, in: d, Self.params), "first")
        var small = Self.params
        small["CTR_CACHE_MAX"] = "1k"
        let pruned = try Self.task(w, in: d, small)
        expectOK(pruned)
        #expect(pruned.stderr.contains("least recently used steps dropped"), "\(pruned.stderr)")
        let after = try Self.task(w, in: d, Self.params)
        #expect(after.stderr.components(separatedBy: "--> CACHED").count - 1 < 3, "dropped steps run again: \(after.stderr)")

        // two at once on one cache dir (two task dirs sharing ./cache, as a shared Concourse cache)
        let d2 = try Self.taskDir(w, cache: false, name: "task2")
        expectOK(try w.bash("rm -rf '\(d2)/image' && mkdir '\(d2)/image' && ln -s '\(d)/cache' '\(d2)/cache' && rm -rf '\(d)/image'/* '\(d)/first'/* && cp '\(d)/base/busybox.tar' '\(d2)/base/busybox.tar'"))
        var env = Self.params
        env["BUILD_ARG_VERSION"] = "3"
        let script = """
            export CTR_ROOT='\(w.store)'
            cd '\(d)' && env \(env.map { "\($0.key)='\($0.value)'" }.joined(separator: " ")) '\(TestEnv.binary)' oci-build-task > /dev/null 2> '\(w.dir)/one.log' & a=$!
            cd '\(d2)' && env \(env.map { "\($0.key)='\($0.value)'" }.joined(separator: " ")) '\(TestEnv.binary)' oci-build-task > /dev/null 2> '\(w.dir)/two.log' & b=$!
            wait $a; ra=$?; wait $b; rb=$?; echo "$ra $rb"
            """
        let both = try w.bash(script)
        #expect(both.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0 0", "\(both)\n\(Self.read("\(w.dir)/one.log"))\n\(Self.read("\(w.dir)/two.log"))")
        let one = Self.read("\(d)/image/digest"), two = Self.read("\(d2)/image/digest")
        #expect(one.count == 71 && two.count == 71, "\(one) \(two)")
        // (run at once, each ran the steps: mtimes differ) the cache they left is whole: a
        // third task runs nothing and gets one of their images
        let third = try Self.task(w, in: d, env)
        expectOK(third)
        #expect(third.stderr.components(separatedBy: "--> CACHED").count - 1 == 3, "\(third.stderr)")
        #expect([one, two].contains(Self.read("\(d)/image/digest")))
    }

    /// Bases from a registry (TLS, htpasswd): pulled with the LOGIN fork's credentials, with
    /// DOCKER_CONFIG, and through REGISTRY_MIRRORS for docker.io; a restored cache needs the
    /// registry no more (wrong credentials do not matter: nothing is pulled); the
    /// registry-image resource's put (skopeo copy docker-archive:) takes image.tar.
    @Test func registryBasesAndPut() throws {
        guard TestRegistry.available, let reg = TestRegistry.secure else { print("skip: \(TestRegistry.skipReason)"); return }
        let w = try Workspace(.root)
        try w.trust(reg)
        let creds = "\(TestRegistry.user):\(TestRegistry.password)"
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", "\(TestEnv.fixtures)/busybox.tar"]))
        let tag = "t\(UUID().uuidString.prefix(8).lowercased())"
        for dest in ["base/busybox:\(tag)", "library/mirrortest:\(tag)"] {
            expectOK(try w.ctrHome(["push", "--creds", creds, "busybox:local", "\(reg.addr)/\(dest)"]), "push \(dest)")
        }
        let home = ["HOME": w.home, "XDG_RUNTIME_DIR": "\(w.dir)/run"]
        func taskDir(_ name: String, from: String) throws -> String {
            let d = "\(w.dir)/\(name)"
            expectOK(try w.bash("mkdir -p \(d)/src \(d)/image"))
            try Data("FROM \(from)\nRUN echo hi > /hi\n".utf8).write(to: URL(fileURLWithPath: "\(d)/src/Dockerfile"))
            return d
        }
        // LOGIN=PASS
        let d = try taskDir("login", from: "\(reg.addr)/base/busybox:\(tag)")
        expectOK(try w.bash("mkdir \(d)/cache"))
        var env = home.merging(["CONTEXT": "src", "LOGIN": "PASS", "PASS": creds, "REG_URL": "https://\(reg.addr)/"]) { a, _ in a }
        let first = try Self.task(w, in: d, env)
        expectOK(first, "LOGIN=PASS")
        #expect(!first.stdout.contains(TestRegistry.password) && !first.stderr.contains(TestRegistry.password), "credentials are never printed")
        // the put step
        let put = try w.sh(["/usr/bin/skopeo", "copy", "-q", "--dest-creds", creds, "--dest-cert-dir", "\(w.home)/.config/containers/certs.d/\(reg.addr)",
                            "docker-archive:\(d)/image/image.tar", "docker://\(reg.addr)/app/task:\(tag)"])
        expectOK(put, "skopeo copy docker-archive: docker://")
        // restored elsewhere: no pull at all (wrong credentials would fail one)
        let d2 = try taskDir("restored", from: "\(reg.addr)/base/busybox:\(tag)")
        expectOK(try w.bash("cp -a \(d)/cache \(d2)/cache"))
        env["PASS"] = "\(TestRegistry.user):wrong"
        let again = try Self.task(w, in: d2, env)
        expectOK(again, "from the restored cache, without the registry")
        #expect(again.stderr.contains("--> CACHED") && Self.read("\(d2)/image/digest") == Self.read("\(d)/image/digest"), "\(again.stderr)")
        // DOCKER_CONFIG: a directory with config.json
        let d3 = try taskDir("dockerconfig", from: "\(reg.addr)/base/busybox:\(tag)")
        let auth = Data(creds.utf8).base64EncodedString()
        expectOK(try w.bash("mkdir -p \(d3)/creds && printf '%s' '{\"auths\":{\"\(reg.addr)\":{\"auth\":\"\(auth)\"}}}' > \(d3)/creds/config.json"))
        expectOK(try Self.task(w, in: d3, home.merging(["CONTEXT": "src", "DOCKER_CONFIG": "creds", "CTR_ROOT": "\(w.dir)/store3"]) { a, _ in a }), "DOCKER_CONFIG")
        // REGISTRY_MIRRORS: docker.io/library/mirrortest comes from the mirror
        let d4 = try taskDir("mirror", from: "docker.io/library/mirrortest:\(tag)")
        let m = try Self.task(w, in: d4, home.merging(["CONTEXT": "src", "REGISTRY_MIRRORS": reg.addr, "LOGIN": "PASS", "PASS": creds,
                                                       "REG_URL": reg.addr, "CTR_ROOT": "\(w.dir)/store4"]) { a, _ in a })
        expectOK(m, "REGISTRY_MIRRORS")
        #expect(Self.read("\(d4)/image/digest").count == 71)
    }
}
