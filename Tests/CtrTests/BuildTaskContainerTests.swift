import Foundation
import HostOS
import Testing

/// `ctr oci-build-task` as Concourse runs it: the task image made by scripts/task-image.sh
/// (ctr builds it from the Debian fixture and the shipped binary) loaded into podman, and a
/// task container started with podman's defaults in the task's working dir
/// `/tmp/build/<handle>`, each input and output a volume under it (`src`, `base`, `image`,
/// `cache`), the params as environment variables, the command `build`. As root podman and as
/// rootless podman (the `ctrtest` user): the task exits 0, `image/image.tar` is a
/// docker-archive podman and skopeo read, `image/digest` is its image id (`sha256:` and 64
/// hex, no newline), its RUN step installed a package with apt-get (from a repository served
/// on the host's loopback, over the host network), and a second task in a fresh container
/// with only `cache/` restored rebuilds nothing and gives the same digest.
@Suite(.serialized) struct BuildTaskContainerTests {
    enum Place: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case rootPodman = "root podman"
        case rootlessPodman = "rootless podman"
        /// The task image's own user `ci`, whose subordinate ids go through newuidmap and
        /// newgidmap with file capabilities.
        case ciUser = "root podman, --user 1000 (ci)"
        var testDescription: String { rawValue }
        /// Who runs podman (runuser -u).
        var user: String? { self == .rootlessPodman ? "ctrtest" : nil }
        /// What podman needs here besides its defaults (the runtime, the host's network for
        /// the apt repository on its loopback; as root, limits this host's runc accepts).
        var runArgs: [String] {
            switch self {
            case .rootPodman: return ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
            case .rootlessPodman: return ["--runtime", "runc", "--network", "host"]
            case .ciUser: return Place.rootPodman.runArgs + ["--user", "1000"]
            }
        }
        /// The host owner of the task's output volumes (the container's root, or uid 1000).
        var owner: (uid_t, gid_t)? {
            switch self {
            case .rootPodman: return nil
            case .rootlessPodman: return TestEnv.uid(of: "ctrtest").map { ($0, getpwnam("ctrtest")!.pointee.pw_gid) }
            case .ciUser: return (1000, 1000)
            }
        }
    }

    static let podman = "/usr/bin/podman"
    static let skopeo = "/usr/bin/skopeo"
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let aptDir = "\(TestEnv.fixtures)/apt"
    static let imageRepo = "localhost/ctr-build-task"

    /// The task's Dockerfile: the base from an IMAGE_ARG_ archive (an input, as a
    /// registry-image resource's image.tar would be), a package from the served repository.
    static let dockerfile = """
        ARG BASE
        FROM ${BASE}
        ARG PORT
        RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo "deb [trusted=yes] http://127.0.0.1:${PORT}/ ./" > /etc/apt/sources.list.d/local.list && apt-get update -qq && apt-get install -y -qq hello && rm -rf /etc/apt/sources.list.d/local.list /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/apt/*.bin
        COPY greeting.txt /etc/greeting.txt
        RUN hello > /hello.out && cat /etc/greeting.txt >> /hello.out
        RUN useradd -u 1234 -m app
        CMD ["cat", "/hello.out"]

        """

    struct Skip: Error { let why: String }

    /// Made once for both places: the served repository, the task image (as a file) and the
    /// task's source input.
    final class Fixture: @unchecked Sendable {
        let w: Workspace
        let port: Int
        let server: ChildProcess
        let imageTar: String
        let tag: String
        var src: String { "\(w.dir)/src" }
        var base: String { "\(w.dir)/base" }
        init(w: Workspace, port: Int, server: ChildProcess, imageTar: String, tag: String) {
            (self.w, self.port, self.server, self.imageTar, self.tag) = (w, port, server, imageTar, tag)
        }
    }

    nonisolated(unsafe) static var made: Result<Fixture, Skip>?
    nonisolated(unsafe) static var serverPID: pid_t = 0
    nonisolated(unsafe) static var workspaceDir: String?

    static func fixture() throws -> Fixture {
        if let made { return try made.get() }
        let r: Result<Fixture, Skip>
        do { r = .success(try makeFixture()) } catch let s as Skip { r = .failure(s) }
        made = r
        return try r.get()
    }

    static func makeFixture() throws -> Fixture {
        guard TestEnv.amRoot else { throw Skip(why: "podman runs the task containers as root and as ctrtest") }
        guard TestEnv.have("podman"), TestEnv.have("skopeo") else { throw Skip(why: "podman or skopeo is not installed (\(TestEnv.setupHint))") }
        guard TestEnv.haveDebian else { throw Skip(why: "no Debian fixture (\(TestEnv.setupHint))") }
        for f in ["Packages", "hello.deb", "uidmap.deb", "libsubid4.deb"] where access("\(aptDir)/\(f)", R_OK) != 0 {
            throw Skip(why: "no \(aptDir)/\(f) (scripts/setup.sh downloads the apt fixtures)")
        }
        guard access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0 else { throw Skip(why: "the host has no CA bundle for the task image") }
        guard try CIImageTests.shipped() else { throw Skip(why: "\(TestEnv.binary) is not the shipped binary (scripts/build.sh)") }
        let (imageTar, tag) = try taskImage()

        let w = try Workspace(.root)
        chmod(w.dir, 0o755)
        guard let (server, port) = try LocalHTTP.serve(aptDir, firstPort: 20000) else {
            throw Skip(why: "busybox httpd cannot serve the apt repository on 127.0.0.1")
        }
        serverPID = server.pid
        workspaceDir = w.dir
        // the fixture lives as long as the process: the server stops and its files go at exit
        atexit {
            if BuildTaskContainerTests.serverPID > 0 { kill(BuildTaskContainerTests.serverPID, SIGKILL) }
            if let d = BuildTaskContainerTests.workspaceDir { _ = try? Workspace.exec("/bin/rm", ["-rf", d]) }
        }
        let f = Fixture(w: w, port: port, server: server, imageTar: imageTar, tag: tag)
        try FileManager.default.createDirectory(atPath: f.src, withIntermediateDirectories: true)
        chmod(f.src, 0o755)
        try Data(dockerfile.utf8).write(to: URL(fileURLWithPath: "\(f.src)/Dockerfile"))
        try Data("built by ctr oci-build-task\n".utf8).write(to: URL(fileURLWithPath: "\(f.src)/greeting.txt"))
        // the base image input: the fixture as a docker-archive (what a registry-image
        // resource's image.tar is)
        try FileManager.default.createDirectory(atPath: f.base, withIntermediateDirectories: true)
        chmod(f.base, 0o755)
        let imported = try w.ctr(["import", "-q", "--tag", "deb:fixture", TestEnv.debianTar])
        guard imported.status == 0 else { throw Skip(why: "ctr import of the fixture failed: \(imported)") }
        let saved = try w.ctr(["save", "--format", "docker-archive", "-o", "\(f.base)/image.tar", "deb:fixture"])
        guard saved.status == 0 else { throw Skip(why: "ctr save of the fixture failed: \(saved)") }
        chmod("\(f.base)/image.tar", 0o644)
        return f
    }

    /// scripts/task-image.sh's archive, made once per binary (its size and mtime) and script:
    /// kept in /var/tmp/ctr-tests, older ones removed.
    static func taskImage() throws -> (path: String, tag: String) {
        let built = ProcessInfo.processInfo.environment["CTR_BIN"] ?? "\(repo)/.build/debug/ctr"
        let script = "\(repo)/scripts/task-image.sh"
        var b = stat(), s = stat()
        guard stat(built, &b) == 0, stat(script, &s) == 0 else { throw Skip(why: "no \(built) or \(script)") }
        let key = "\(b.st_size)-\(b.st_mtim.tv_sec)-\(s.st_size)-\(s.st_mtim.tv_sec)"
        let dir = "/var/tmp/ctr-tests/task-image"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod("/var/tmp/ctr-tests", 0o1777)
        chmod(dir, 0o755)
        let path = "\(dir)/ctr-build-task-\(key).tar"
        let tag = "\(imageRepo):\(key)"
        if access(path, R_OK) == 0 { return (path, tag) }
        let partial = "\(dir)/.partial-\(getpid()).tar"
        let started = Date()
        let r = try Workspace.exec("/bin/bash", [script, partial],
                                   env: ["CTR": TestEnv.binary, "CTR_FIXTURES": TestEnv.fixtures, "TAG": tag,
                                         "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "TMPDIR": "/var/tmp"],
                                   cwd: "/tmp")
        print("scripts/task-image.sh: \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        #expect(r.status == 0, "scripts/task-image.sh: \(r)")
        guard r.status == 0 else { unlink(partial); throw Skip(why: "scripts/task-image.sh failed") }
        chmod(partial, 0o644)
        for old in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where old.hasPrefix("ctr-build-task-") {
            unlink("\(dir)/\(old)")
        }
        guard rename(partial, path) == 0 else { throw Skip(why: "cannot keep the task image at \(path)") }
        return (path, tag)
    }

    static func asUser(_ user: String?, _ argv: [String]) throws -> RunResult {
        try retryingPodman {
            guard let user else { return try Workspace.exec(argv[0], Array(argv.dropFirst()), cwd: "/tmp") }
            return try Workspace.exec("/usr/sbin/runuser", ["-u", user, "--"] + argv, cwd: "/tmp")
        }
    }

    /// podman as root, run beside other tests' podmans.
    static func podmanRoot(_ args: [String]) throws -> RunResult {
        try retryingPodman { try Workspace.exec(podman, args, cwd: "/tmp") }
    }

    /// podman started while another podman of the same user resets its runtime dir fails
    /// with exit 125 and "/run/libpod/alive" (or the like) before it does anything: that
    /// start is tried again, up to three times. Any other failure is returned as it is.
    static func retryingPodman(_ run: () throws -> RunResult) throws -> RunResult {
        var r = try run()
        var tries = 1
        while r.status == 125 && tries < 3 && (r.stderr.contains("libpod/alive") || r.stderr.contains("runtime status file")) {
            sleep(1)
            r = try run()
            tries += 1
        }
        return r
    }

    /// `podman load` of the task image as `user`; the tags of older ones are dropped.
    static func load(_ f: Fixture, as user: String?) throws -> RunResult {
        let r = try asUser(user, [podman, "load", "-i", f.imageTar])
        if r.status == 0 {
            let old = try asUser(user, [podman, "images", "--format", "{{.Repository}}:{{.Tag}}", imageRepo])
            for t in old.lines where t != f.tag && t.hasPrefix(imageRepo + ":") { _ = try? asUser(user, [podman, "rmi", t]) }
        }
        return r
    }

    /// One task run, as Concourse lays it out: `/tmp/build/<handle>` the working dir, each
    /// input and output a volume in it; `meta` (an extra output) gets the log and the exit
    /// status (podman run, with other podmans running, sometimes loses its container's).
    struct Task {
        var status: Int32
        var log: String
        var run: RunResult
        var dir: String
        var image: String { "\(dir)/image" }
    }

    static func runTask(_ f: Fixture, _ place: Place, dir: String, env: [String: String], image: String? = nil, src: String? = nil, extra: [String] = []) throws -> Task {
        let handle = String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(8))
        let cwd = "/tmp/build/\(handle)"
        let meta = "\(dir)/meta"
        for d in [dir, meta, "\(dir)/image", "\(dir)/cache"] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        if let (uid, gid) = place.owner {
            for d in [dir, meta, "\(dir)/image"] { chown(d, uid, gid) }
            // a restored cache keeps the owners it had; a new one is the task's
            var st = stat()
            if stat("\(dir)/cache", &st) == 0 && st.st_uid == 0 { chown("\(dir)/cache", uid, gid) }
        }
        let volumes = ["-v", "\(src ?? f.src):\(cwd)/src:ro", "-v", "\(f.base):\(cwd)/base:ro",
                       "-v", "\(dir)/image:\(cwd)/image", "-v", "\(dir)/cache:\(cwd)/cache", "-v", "\(meta):\(cwd)/meta"]
        let params = env.sorted { $0.key < $1.key }.flatMap { ["-e", "\($0.key)=\($0.value)"] }
        let run = try asUser(place.user, [podman, "run", "--rm"] + place.runArgs + ["-w", cwd] + volumes + params
            + extra + [image ?? f.tag, "sh", "-c", "build > meta/log 2>&1; echo $? > meta/status"])
        var waited = 0
        while access("\(meta)/status", F_OK) != 0 && waited < 300 { sleep(1); waited += 1 }
        func text(_ name: String) -> String { (try? String(contentsOfFile: "\(meta)/\(name)", encoding: .utf8)) ?? "" }
        let status = Int32(text("status").trimmingCharacters(in: .whitespacesAndNewlines)) ?? (run.status == 0 ? -1 : run.status)
        return Task(status: status, log: text("log"), run: run, dir: dir)
    }

    @Test(arguments: Place.allCases)
    func concourseTask(_ place: Place) throws {
        let f: Fixture
        do { f = try Self.fixture() } catch let s as Skip { print("skip \(place): \(s.why)"); return }
        if place == .rootlessPodman && !Who.rootless.available { print("skip \(place): no ctrtest user (\(TestEnv.setupHint))"); return }
        let started = Date()
        let loaded = try Self.load(f, as: place.user)
        #expect(loaded.status == 0, "podman load of the task image as \(place.user ?? "root"): \(loaded)")
        guard loaded.status == 0 else { return }
        #expect(loaded.stdout.contains(f.tag), "\(loaded)")

        let base = "\(f.w.dir)/\(String(describing: place).filter { $0.isLetter })"
        // two image.tars and two stores of the Debian base: gone once checked
        defer { _ = try? Workspace.exec("/bin/rm", ["-rf", base]) }
        let env = ["CONTEXT": "src", "IMAGE_ARG_BASE": "base/image.tar", "BUILD_ARG_PORT": "\(f.port)"]
        let first = try Self.runTask(f, place, dir: "\(base)/first", env: env)
        guard FileManager.default.fileExists(atPath: "\(first.dir)/meta/status") || !first.log.isEmpty else {
            // the engine itself could not start the container: not ctr's to answer for
            print("skip \(place): the task container did not start: \(first.run)"); return
        }
        #expect(first.status == 0, "\(place), first task: \(first.run)\nlog:\n\(first.log)")
        guard first.status == 0 else { return }
        print("\(place.rawValue): first task \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        // the outputs: a docker-archive and its image id
        let digestData = FileManager.default.contents(atPath: "\(first.image)/digest") ?? Data()
        let digest = String(decoding: digestData, as: UTF8.self)
        #expect(digest.wholeMatch(of: /sha256:[0-9a-f]{64}/) != nil, "image/digest: \(digest.debugDescription)")
        #expect(FileManager.default.fileExists(atPath: "\(first.image)/image.tar"), "no image/image.tar")
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: first.image)) ?? []
        #expect(Set(entries) == ["image.tar", "digest"], "image/ holds \(entries)")
        #expect(FileManager.default.fileExists(atPath: "\(first.dir)/cache/ctr"), "the store is not in cache/: \(first.log)")
        // a RUN step ran, and ran apt-get
        #expect(first.log.contains("STEP") && first.log.contains("apt-get install"), "\(first.log)")

        let inspect = try Workspace.exec(Self.skopeo, ["inspect", "docker-archive:\(first.image)/image.tar"])
        #expect(inspect.status == 0, "skopeo inspect: \(inspect)")
        let config = try Workspace.exec(Self.skopeo, ["inspect", "--raw", "--config", "docker-archive:\(first.image)/image.tar"])
        #expect(config.status == 0, "skopeo inspect --config: \(config)")
        if config.status == 0 {
            // the digest is the config's (the image id), as upstream writes it
            let sum = try Workspace.exec("/bin/sh", ["-c", "\(Self.skopeo) inspect --raw --config \"docker-archive:$1\" | sha256sum", "sh", "\(first.image)/image.tar"])
            let configDigest = "sha256:" + (sum.stdout.split(separator: " ").first.map(String.init) ?? "")
            #expect(configDigest == digest, "config \(configDigest), image/digest \(digest)")
            #expect(config.stdout.contains("\"Cmd\":[\"cat\",\"/hello.out\"]"), "\(config.stdout)")
        }

        let out = try Self.podmanRoot(["load", "-i", "\(first.image)/image.tar"])
        #expect(out.status == 0, "podman load of image/image.tar: \(out)")
        let id = out.stdout.split(separator: "\n").compactMap { line -> String? in
            guard let r = line.range(of: "Loaded image: ") else { return nil }
            return String(line[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }.first ?? ""
        let idOf = try Self.podmanRoot(["image", "inspect", "--format", "{{.Id}}", id])
        #expect(idOf.status == 0 && "sha256:" + idOf.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == digest,
                "podman loaded \(id) (\(idOf)), image/digest \(digest)")
        defer { _ = try? Workspace.exec(Self.podman, ["rmi", "-f", digest], cwd: "/tmp") }
        // the package's program ran in the build; useradd gave a file another owner (the
        // build's user namespace maps more than one id)
        let ran = try Self.podmanRoot(["run", "--rm"] + Place.rootPodman.runArgs + [digest, "sh", "-c", "cat /hello.out; stat -c %u:%g /home/app"])
        #expect(ran.status == 0 && ran.stdout == "Hello, world!\nbuilt by ctr oci-build-task\n1234:1234\n", "the built image: \(ran)")

        // a fresh container with only cache/ restored: nothing is rebuilt
        let second = "\(base)/second"
        try FileManager.default.createDirectory(atPath: second, withIntermediateDirectories: true)
        let cp = try Workspace.exec("/bin/cp", ["-a", "\(first.dir)/cache", "\(second)/cache"])
        expectOK(cp, "restoring cache/")
        let again = try Self.runTask(f, place, dir: second, env: env)
        #expect(again.status == 0, "\(place), second task: \(again.run)\nlog:\n\(again.log)")
        guard again.status == 0 else { return }
        let lines = again.log.split(separator: "\n").map(String.init)
        var steps: [(String, String)] = []
        for (i, l) in lines.enumerated() where l.hasPrefix("STEP ") && (l.contains(": RUN ") || l.contains(": COPY ")) {
            // the step's result: the first "--> " line before the next step
            let rest = lines[(i + 1)...].prefix { !$0.hasPrefix("STEP ") }
            steps.append((l, rest.first { $0.hasPrefix("--> ") } ?? ""))
        }
        #expect(steps.filter { $0.0.contains(": RUN ") }.count == 3, "\(again.log)")
        for (step, next) in steps { #expect(next == "--> CACHED", "\(step) was not cached:\n\(again.log)") }
        let again_digest = String(decoding: FileManager.default.contents(atPath: "\(again.image)/digest") ?? Data(), as: UTF8.self)
        #expect(again_digest == digest, "the rebuild's digest \(again_digest), the first's \(digest)")
        let tarA = try FileManager.default.attributesOfItem(atPath: "\(first.image)/image.tar")[.size] as? Int
        let tarB = try? FileManager.default.attributesOfItem(atPath: "\(again.image)/image.tar")[.size] as? Int
        #expect(tarA == tarB, "image.tar: \(String(describing: tarA)) bytes, then \(String(describing: tarB))")
        print("\(place.rawValue): \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    /// The task image as a pipeline's `image_resource` gets it: `ctr load` and `ctr push` put
    /// it in the registry (TLS, htpasswd), podman pulls it from there, and the task inside
    /// pulls its base from the same registry with the basic-auth fork's `LOGIN=PASS` (ctr's
    /// libcurl and the CA of a certs.d volume) and writes an image.tar the registry-image
    /// resource's put (skopeo) sends back.
    @Test func fromTheRegistry() throws {
        let f: Fixture
        do { f = try Self.fixture() } catch let s as Skip { print("skip: \(s.why)"); return }
        guard TestRegistry.available, let reg = TestRegistry.secure else { print("skip: \(TestRegistry.skipReason)"); return }
        let w = try Workspace(.root)
        chmod(w.dir, 0o755)
        try w.trust(reg)
        let creds = "\(TestRegistry.user):\(TestRegistry.password)"
        let tag = "t\(UUID().uuidString.prefix(8).lowercased())"
        let taskRef = "\(reg.addr)/ci/ctr-build-task:\(tag)"
        expectOK(try w.ctrHome(["load", "-q", "-i", f.imageTar]), "ctr load of the task image")
        expectOK(try w.ctrHome(["push", "-q", "--creds", creds, f.tag, taskRef]), "ctr push of the task image")
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", "\(TestEnv.fixtures)/busybox.tar"]))
        expectOK(try w.ctrHome(["push", "-q", "--creds", creds, "busybox:local", "\(reg.addr)/base/busybox:\(tag)"]))
        let certs = "\(w.home)/.config/containers/certs.d"
        let pull = try Self.podmanRoot(["pull", "-q", "--cert-dir", "\(certs)/\(reg.addr)", "--creds", creds, taskRef])
        expectOK(pull, "podman pull of the pushed task image")
        guard pull.status == 0 else { return }
        defer { _ = try? Workspace.exec(Self.podman, ["rmi", "-f", taskRef], cwd: "/tmp") }

        let src = "\(w.dir)/regsrc"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        chmod(src, 0o755)
        try Data("FROM \(reg.addr)/base/busybox:\(tag)\nRUN echo pulled > /pulled\n".utf8).write(to: URL(fileURLWithPath: "\(src)/Dockerfile"))
        let dir = "\(w.dir)/task"
        let t = try Self.runTask(f, .rootPodman, dir: dir,
                                 env: ["CONTEXT": "src", "LOGIN": "PASS", "PASS": creds, "REG_URL": "https://\(reg.addr)/"],
                                 image: taskRef, src: src, extra: ["-v", "\(certs):/etc/containers/certs.d:ro"])
        #expect(t.status == 0, "the task from the registry: \(t.run)\nlog:\n\(t.log)")
        guard t.status == 0 else { return }
        #expect(!t.log.contains(TestRegistry.password), "credentials are never printed")
        let put = try Workspace.exec(Self.skopeo, ["copy", "-q", "--dest-creds", creds, "--dest-cert-dir", "\(certs)/\(reg.addr)",
                                                   "docker-archive:\(dir)/image/image.tar", "docker://\(reg.addr)/app/task:\(tag)"], cwd: "/tmp")
        expectOK(put, "skopeo copy docker-archive: docker:// (the put step)")
        let back = try w.ctrHome(["pull", "-q", "--creds", creds, "\(reg.addr)/app/task:\(tag)"])
        expectOK(back, "ctr pull of the put image")
        let id = try w.ctrHome(["inspect", "--format", "{{.Id}}", "\(reg.addr)/app/task:\(tag)"])
        let digest = String(decoding: FileManager.default.contents(atPath: "\(dir)/image/digest") ?? Data(), as: UTF8.self)
        #expect(id.stdout.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(digest.dropFirst(7)), "ctr inspect: \(id), image/digest \(digest)")
    }
}
