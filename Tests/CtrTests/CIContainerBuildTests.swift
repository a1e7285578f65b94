import Foundation
import HostOS
import Testing

/// `ctr build` inside the CI containers users run it in, each with the engine's defaults: the
/// shipped binary and the Debian fixture mounted into (a) rootless podman, (b) root podman,
/// (c) podman `--user 1000` in a job image that gives that user subordinate ids (as rootless
/// buildah and BuildKit images do), (d) root podman under a seccomp profile that refuses every
/// namespace flag as Docker's default does, (e) ctr's own `ctr run`. The Dockerfile installs a
/// package with apt-get (from a repository the test serves on the host's 127.0.0.1, reached
/// over the host network), adds a user, deletes base files, copies with --chown and from
/// another stage; each image must be the host-built one, file by file (ImageListing).
@Suite(.serialized) struct CIContainerBuildTests {
    enum Place: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case rootlessPodman = "rootless podman"
        case rootPodman = "root podman"
        case user1000 = "podman --user 1000"
        case dockerSeccomp = "root podman, Docker's seccomp profile"
        case insideCtr = "inside ctr run (rootless)"
        case containerLevel = "root podman, --isolation container"
        var testDescription: String { rawValue }

        /// The level `ctr info` predicts there.
        var level: String { self == .dockerSeccomp ? "chroot" : "nested" }
        /// The level the build says its RUN steps get.
        var buildLevel: String { self == .containerLevel ? "container" : level }
    }

    static let podman = "/usr/bin/podman"
    static let runArgs = ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let aptDir = "\(TestEnv.fixtures)/apt"

    static func dockerfile(port: Int) -> String {
        """
        FROM deb:fixture AS base
        RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] http://127.0.0.1:\(port)/ ./' > /etc/apt/sources.list.d/local.list && apt-get update -qq && apt-get install -y -qq hello && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/apt/*.bin && hello
        RUN useradd -m -u 1234 app
        RUN rm -rf /usr/share/doc/base-files /etc/issue.net /etc/motd
        COPY --chown=app:app f.txt /home/app/f.txt
        RUN ln /home/app/f.txt /home/app/hardlink && chmod 4755 /usr/bin/hello
        RUN test -u /usr/bin/hello
        FROM deb:fixture
        COPY --from=base /usr/bin/hello /usr/bin/hello
        COPY --from=base --chown=1234:1234 /home/app /home/app
        USER 1234
        CMD ["hello"]

        """
    }

    /// What runs in each container: the image from the fixture, `ctr info`, both targets
    /// built and written as OCI archives; outputs and logs into /out.
    static let script = """
        set -e
        trap 'echo $? > /out/status' EXIT
        export HOME=${HOME:-/tmp}
        cd /tmp
        ctr --root /tmp/store import --tag deb:fixture /fx/debian.tar > /out/import.log 2>&1
        ctr --root /tmp/store info > /out/info.txt 2>&1
        ctr --root /tmp/store build ${ISOLATION:+--isolation $ISOLATION} --network host --target base -o type=oci-archive,dest=/out/base.tar /ctx > /out/base.log 2>&1
        ctr --root /tmp/store build ${ISOLATION:+--isolation $ISOLATION} --network host -o type=oci-archive,dest=/out/app.tar /ctx > /out/app.log 2>&1
        if [ -n "${ISOLATION:-}" ]; then
          # stages reset /: the second stage sees its base, not the first stage's files; the
          # context, the store and ctr itself stay
          mkdir -p /tmp/ctx2
          printf 'FROM deb:fixture AS one\nRUN touch /from-one\nFROM deb:fixture\nCOPY --from=one /from-one /copied\nRUN test ! -e /from-one && test -e /copied && test -x /usr/local/bin/ctr && touch /from-two\n' > /tmp/ctx2/Dockerfile
          ctr --root /tmp/store build --isolation $ISOLATION --network host /tmp/ctx2 > /out/stages.log 2>&1
        fi
        echo done > /out/done
        """

    /// Made once for all places: the served repository, the context, the host's reference build.
    final class Fixture: @unchecked Sendable {
        let w: Workspace
        let port: Int
        let server: ChildProcess
        var ctx: String { "\(w.dir)/ctx" }
        var base: ImageListing!
        var app: ImageListing!

        init(_ w: Workspace, port: Int, server: ChildProcess) {
            self.w = w
            self.port = port
            self.server = server
        }

    }

    nonisolated(unsafe) static var made: Result<Fixture, Skip>?
    nonisolated(unsafe) static var workspaceDir: String?
    nonisolated(unsafe) static var serverPID: pid_t = 0
    struct Skip: Error { let why: String }

    static func fixture() throws -> Fixture {
        if let made { return try made.get() }
        let r: Result<Fixture, Skip>
        do { r = .success(try makeFixture()) } catch let s as Skip { r = .failure(s) }
        made = r
        return try r.get()
    }

    static func makeFixture() throws -> Fixture {
        guard TestEnv.amRoot else { throw Skip(why: "podman runs the containers as root and as ctrtest") }
        guard TestEnv.have("podman") else { throw Skip(why: "podman is not installed (\(TestEnv.setupHint))") }
        guard TestEnv.haveDebian else { throw Skip(why: "no Debian fixture (\(TestEnv.setupHint))") }
        guard access("\(aptDir)/Packages", R_OK) == 0 else { throw Skip(why: "no apt repository fixture (scripts/setup.sh downloads it from Debian's mirror)") }
        guard try CIImageTests.shipped() else { throw Skip(why: "\(TestEnv.binary) is not the shipped binary (scripts/build.sh)") }
        let w = try Workspace(.root)
        chmod(w.dir, 0o755)
        // the repository, on the host's loopback
        guard let (server, port) = try LocalHTTP.serve(aptDir, firstPort: 18000) else {
            throw Skip(why: "busybox httpd cannot serve the apt repository on 127.0.0.1")
        }
        serverPID = server.pid
        workspaceDir = w.dir
        // the fixture lives as long as the process (its Workspace is never released): the
        // server stops and its 3 GB of stores and outputs go at exit
        atexit {
            if CIContainerBuildTests.serverPID > 0 { kill(CIContainerBuildTests.serverPID, SIGKILL) }
            if let d = CIContainerBuildTests.workspaceDir { _ = try? Workspace.exec("/bin/rm", ["-rf", d]) }
        }
        let f = Fixture(w, port: port, server: server)
        try FileManager.default.createDirectory(atPath: f.ctx, withIntermediateDirectories: true)
        chmod(f.ctx, 0o755)
        try Data(dockerfile(port: port).utf8).write(to: URL(fileURLWithPath: "\(f.ctx)/Dockerfile"))
        try Data("hello-file\n".utf8).write(to: URL(fileURLWithPath: "\(f.ctx)/f.txt"))
        try Data(script.utf8).write(to: URL(fileURLWithPath: "\(w.dir)/in.sh"))
        chmod("\(w.dir)/in.sh", 0o644)

        // the reference: built on the host as root, in the full sandbox
        expectOK(try w.ctr(["import", "--tag", "deb:fixture", TestEnv.debianTar]), "import")
        let info = try w.ctr(["info"])
        #expect(info.stdout.contains("isolation for build RUN: userns"), "\(info)")
        for (target, name) in [(["--target", "base"], "base"), ([], "app")] {
            let r = try w.ctr(["build", "--network", "host"] + target + ["-o", "type=oci-archive,dest=\(w.dir)/host-\(name).tar", f.ctx])
            guard r.status == 0 else { throw Skip(why: "the host build failed: \(r)") }
        }
        f.base = try ImageListing(ociArchive: "\(w.dir)/host-base.tar", scratch: "\(w.dir)/x-host-base")
        f.app = try ImageListing(ociArchive: "\(w.dir)/host-app.tar", scratch: "\(w.dir)/x-host-app")
        return f
    }

    /// The fixture imported into podman (as `user`, or root), under a tag that changes with it.
    static func podmanImage(as user: String?) throws -> String? {
        if user == nil { return try CIImageTests.debianImage() }
        var st = stat()
        guard stat(TestEnv.debianTar, &st) == 0 else { return nil }
        let image = "localhost/ctr-tests-debian:\(st.st_size)-\(st.st_mtim.tv_sec)"
        if try asUser(user, [podman, "image", "exists", image]).status == 0 { return image }
        return try asUser(user, [podman, "import", "-q", TestEnv.debianTar, image]).status == 0 ? image : nil
    }

    static func asUser(_ user: String?, _ argv: [String]) throws -> RunResult {
        guard let user else { return try Workspace.exec(argv[0], Array(argv.dropFirst()), cwd: "/tmp") }
        return try Workspace.exec("/usr/sbin/runuser", ["-u", user, "--"] + argv, cwd: "/tmp")
    }

    /// A job image whose user 1000 has subordinate ids: uidmap installed from the test's
    /// repository, newuidmap and newgidmap with file capabilities instead of setuid (a setuid
    /// one would need CAP_SYS_ADMIN, which a container's default set lacks), /etc/subuid and
    /// /etc/subgid lines for the user.
    static func subidImage(_ f: Fixture) throws -> String? {
        guard let base = try podmanImage(as: nil), TestEnv.have("setcap") else { return nil }
        let image = base.replacingOccurrences(of: "ctr-tests-debian:", with: "ctr-tests-debian-subid:")
        if try Workspace.exec(podman, ["image", "exists", image]).status == 0 { return image }
        let name = "ctr-tests-subid-\(getpid())"
        _ = try Workspace.exec(podman, ["rm", "-f", name])
        defer { _ = try? Workspace.exec(podman, ["rm", "-f", name]) }
        let prep = try Workspace.exec(podman, ["run", "--name", name] + runArgs + [base, "sh", "-ec", """
            rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
            echo 'deb [trusted=yes] http://127.0.0.1:\(f.port)/ ./' > /etc/apt/sources.list.d/local.list
            apt-get update -qq && apt-get install -y -qq uidmap > /dev/null
            rm -rf /etc/apt/sources.list.d/local.list /var/lib/apt/lists/*
            useradd -u 1000 -m ci
            grep -q '^ci:' /etc/subuid || echo ci:100000:65536 >> /etc/subuid
            grep -q '^ci:' /etc/subgid || echo ci:100000:65536 >> /etc/subgid
            chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap
            """])
        guard prep.status == 0 else { print("cannot prepare the job image: \(prep)"); return nil }
        let mnt = try Workspace.exec(podman, ["mount", name])
        guard mnt.status == 0 else { return nil }
        let root = mnt.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let caps = try Workspace.exec("/bin/sh", ["-c", "setcap cap_setuid+ep '\(root)/usr/bin/newuidmap' && setcap cap_setgid+ep '\(root)/usr/bin/newgidmap'"])
        _ = try Workspace.exec(podman, ["umount", name])
        guard caps.status == 0 else { print("setcap: \(caps)"); return nil }
        return try Workspace.exec(podman, ["commit", "-q", name, image]).status == 0 ? image : nil
    }

    @Test(arguments: Place.allCases)
    func buildsTheHostsImage(_ place: Place) throws {
        let f: Fixture
        do { f = try Self.fixture() } catch let s as Skip { print("skip \(place): \(s.why)"); return }
        if [.rootlessPodman, .insideCtr].contains(place) && !Who.rootless.available {
            print("skip \(place): no ctrtest user (\(TestEnv.setupHint))"); return
        }
        let out = "\(f.w.dir)/out-\(String(describing: place).filter { $0.isLetter || $0.isNumber })"
        _ = try Workspace.exec("/bin/rm", ["-rf", out])
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        chmod(out, 0o777)
        let mounts = ["-v", "\(TestEnv.binary):/usr/local/bin/ctr:ro", "-v", "\(TestEnv.debianTar):/fx/debian.tar:ro",
                      "-v", "\(f.ctx):/ctx:ro", "-v", "\(f.w.dir)/in.sh:/in.sh:ro", "-v", "\(out):/out"]
        let run: RunResult
        switch place {
        case .rootPodman, .dockerSeccomp, .containerLevel:
            guard let image = try Self.podmanImage(as: nil) else { print("skip \(place): podman cannot import the fixture"); return }
            let seccomp = place == .dockerSeccomp ? ["--security-opt", "seccomp=\(Self.repo)/Tests/Fixtures/seccomp-docker-default.json"] : []
            // kaniko's way: the build replaces this container's own files with the image's
            let iso = place == .containerLevel ? ["-e", "ISOLATION=container"] : []
            run = try Workspace.exec(Self.podman, ["run", "--rm"] + Self.runArgs + seccomp + iso + mounts + [image, "sh", "/in.sh"], cwd: "/tmp")
        case .user1000:
            guard let image = try Self.subidImage(f) else { print("skip \(place): cannot make the job image with subordinate ids (setcap from libcap2-bin?)"); return }
            run = try Workspace.exec(Self.podman, ["run", "--rm", "--user", "1000"] + Self.runArgs + mounts + [image, "sh", "/in.sh"], cwd: "/tmp")
        case .rootlessPodman:
            guard let image = try Self.podmanImage(as: "ctrtest") else { print("skip \(place): rootless podman cannot import the fixture"); return }
            run = try Self.asUser("ctrtest", [Self.podman, "run", "--rm"] + Self.runArgs + mounts + [image, "sh", "/in.sh"])
        case .insideCtr:
            let w = try Workspace(.rootless)
            expectOK(try w.ctr(["import", "--tag", "deb:fixture", TestEnv.debianTar]), "import")
            run = try w.ctr(["run", "--rm", "--network", "host"] + mounts + ["deb:fixture", "sh", "/in.sh"])
        }
        func text(_ name: String) -> String { (try? String(contentsOfFile: "\(out)/\(name)", encoding: .utf8)) ?? "" }
        guard FileManager.default.fileExists(atPath: "\(out)/import.log") else {
            // the engine itself could not start the container here: not ctr's to answer for
            print("skip \(place): the container did not start: \(run)"); return
        }
        // the script's own exit status: podman run, with other podmans running, sometimes
        // loses its container's ("no such exit code (container in state running)")
        var waited = 0
        while access("\(out)/status", F_OK) != 0 && waited < 900 { sleep(1); waited += 1 }
        let status = Int32(text("status").trimmingCharacters(in: .whitespacesAndNewlines)) ?? run.status
        #expect(status == 0, "\(place): \(run)\nimport: \(text("import.log"))\nbase: \(text("base.log"))\napp: \(text("app.log"))\nstages: \(text("stages.log"))")
        #expect(text("info.txt").contains("isolation for build RUN: \(place.level)"), "\(text("info.txt"))")
        let note = text("base.log").components(separatedBy: "\n").filter { $0.hasPrefix("note: RUN steps get") }
        #expect(note.count == 1 && note[0].hasPrefix("note: RUN steps get \(place.buildLevel) isolation"), "\(text("base.log"))")
        if place == .containerLevel { #expect(text("stages.log").contains("STEP 5/5"), "\(text("stages.log"))") }
        guard status == 0 else { return }
        let base = try ImageListing(ociArchive: "\(out)/base.tar", scratch: "\(out)/x-base")
        let app = try ImageListing(ociArchive: "\(out)/app.tar", scratch: "\(out)/x-app")
        #expect(base == f.base, "\(place), stage base:\n\(base.difference(from: f.base))")
        #expect(app == f.app, "\(place), final stage:\n\(app.difference(from: f.app))")
        // and no layer holds much more than the host's does (an unchanged tree is no entry)
        for (got, want) in [(base, f.base!), (app, f.app!)] {
            for (i, (g, w)) in zip(got.entryCounts, want.entryCounts).enumerated() {
                #expect(g <= w + max(8, w / 10), "\(place): layer \(i) has \(g) entries, the host's \(w)")
            }
        }
    }

    /// A user in Docker's default profile has no level at all: a Dockerfile with RUN fails
    /// before its first step, with the ways out; one without RUN builds.
    @Test func refusedBeforeAnyStep() throws {
        let f: Fixture
        do { f = try Self.fixture() } catch let s as Skip { print("skip: \(s.why)"); return }
        guard let image = try Self.podmanImage(as: nil) else { print("skip: podman cannot import the fixture"); return }
        let out = "\(f.w.dir)/out-refused"
        _ = try Workspace.exec("/bin/rm", ["-rf", out])
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        chmod(out, 0o777)
        let script = """
            export HOME=/tmp; cd /tmp; mkdir -p run norun
            printf 'FROM deb:fixture\\nCOPY f.txt /f\\nRUN true\\n' > run/Dockerfile
            printf 'FROM deb:fixture\\nCOPY f.txt /f\\n' > norun/Dockerfile
            cp /ctx/f.txt run/ && cp /ctx/f.txt norun/
            ctr --root /tmp/store import --tag deb:fixture /fx/debian.tar > /out/import.log 2>&1
            ctr --root /tmp/store build run > /out/run.log 2>&1; echo $? > /out/run.status
            ctr --root /tmp/store append --base deb:fixture --add /ctx/f.txt:/appended.txt --chown 1000:1000 \\
              --change 'CMD ["cat", "/appended.txt"]' -t oci:/out/appended:app > /out/append.log 2>&1; echo $? > /out/append.status
            ctr --root /tmp/store build norun > /out/norun.log 2>&1; echo $? > /out/norun.status
            """
        try Data(script.utf8).write(to: URL(fileURLWithPath: "\(out)/in.sh"))
        let run = try Workspace.exec(Self.podman, ["run", "--rm", "--user", "1000"] + Self.runArgs
            + ["--security-opt", "seccomp=\(Self.repo)/Tests/Fixtures/seccomp-docker-default.json",
               "-v", "\(TestEnv.binary):/usr/local/bin/ctr:ro", "-v", "\(TestEnv.debianTar):/fx/debian.tar:ro",
               "-v", "\(f.ctx):/ctx:ro", "-v", "\(out):/out", image, "sh", "/out/in.sh"], cwd: "/tmp")
        func text(_ name: String) -> String { ((try? String(contentsOfFile: "\(out)/\(name)", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
        var waited = 0
        while access("\(out)/norun.status", F_OK) != 0 && waited < 300 { sleep(1); waited += 1 }
        guard FileManager.default.fileExists(atPath: "\(out)/import.log") else { print("skip: the container did not start: \(run)"); return }
        #expect(text("run.status") != "0" && text("run.status") != "", "\(text("run.log"))")
        let log = text("run.log")
        #expect(log.contains("RUN cannot be sandboxed here") && log.contains("Run the job as root"), "\(log)")
        #expect(!log.contains("STEP"), "no step ran: \(log)")
        #expect(log.split(separator: "\n").count == 1, "one line: \(log)")
        #expect(text("norun.status") == "0", "import: \(text("import.log"))\nbuild: \(text("norun.log"))")
        // assembling needs no sandbox: ctr append works here, and its layout runs on the host
        #expect(text("append.status") == "0", "append: \(text("append.log"))")
        let w = try Workspace(.root)
        let ran = try w.ctr("run", "--rm", "oci:\(out)/appended:app")
        let want = (try? String(contentsOfFile: "\(f.ctx)/f.txt", encoding: .utf8)) ?? "?"
        #expect(ran.status == 0 && ran.stdout == want, "the appended image: \(ran)")
        let owner = try w.ctr("run", "--rm", "oci:\(out)/appended:app", "stat", "-c", "%u", "/appended.txt")
        #expect(owner.stdout == "1000\n", "\(owner)")
    }
}
