import Foundation
import Testing

/// RUN --mount=type=bind from the build context sees what COPY sees: what .dockerignore
/// excludes is not in the context (as in BuildKit), so no mount shows it; a rootless rw mount
/// can write a context file whose group has no id in the build's user namespace.
@Suite(.serialized) struct BuildContextMountTests {
    let builds = BuildTests()

    /// What the build left in the store's scratch space (nothing, once it ended).
    func scratchLeft(_ w: Workspace) throws -> String {
        try w.bash("find \(w.store)/build-tmp -mindepth 1 2>/dev/null | head -5").stdout
    }

    @Test(arguments: BuildTests.modes)
    func ignoredFilesAreNotInBindMounts(_ who: Who) throws {
        guard let w = try builds.prepared(who) else { return }
        try builds.write(w, "ctx/.env", "SECRET=1\n")
        try builds.write(w, "ctx/.git/config", "[core]\n")
        try builds.write(w, "ctx/app/main.sh", "echo main\n")
        try builds.write(w, "ctx/app/notes.md", "ignored\n")
        try builds.write(w, "ctx/app/README.md", "kept by an exception\n")
        try builds.write(w, "ctx/docs/draft.txt", "ignored with its dir\n")
        try builds.write(w, "ctx/docs/keep.txt", "kept by an exception\n")
        try builds.write(w, "ctx/.dockerignore", ".env\n.git\n**/*.md\n!app/README.md\ndocs\n!docs/keep.txt\n")
        try builds.write(w, "ctx/Dockerfile", #"""
            FROM busybox:local
            RUN --mount=type=bind,target=/ctx sh -c 'cd /ctx && find . | sort > /ro.txt; cat .env .git/config > /leak-ro 2>/dev/null; true'
            RUN --mount=type=bind,target=/ctx,rw sh -c 'cd /ctx && find . | sort > /rw.txt; cat .env .git/config > /leak-rw 2>/dev/null; echo changed > app/main.sh; cat app/main.sh > /rw-wrote'
            RUN --mount=type=bind,source=app,target=/app sh -c 'cd /app && find . | sort > /sub.txt'
            RUN --mount=type=bind,source=docs,target=/docs sh -c 'cd /docs && find . | sort > /docs.txt'
            COPY . /copied/
            RUN cd /copied && find . | sort > /copy.txt
            """#)
        let b = try builds.build(w, ["-t", "ign:1", "\(w.dir)/ctx"])
        expectOK(b, "build")
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "ign:1", "sh", "-c",
                               "for f in ro rw sub docs copy; do echo \"== $f\"; cat /$f.txt; done; echo '== leaks'; cat /leak-ro /leak-rw; echo '== wrote'; cat /rw-wrote"])
        expectOK(r)
        let expected = [".", "./.dockerignore", "./Dockerfile", "./app", "./app/README.md", "./app/main.sh", "./docs", "./docs/keep.txt"]
        func section(_ name: String) -> [String] {
            let lines = r.lines
            guard let i = lines.firstIndex(of: "== \(name)") else { return [] }
            return Array(lines[(i + 1)...].prefix { !$0.hasPrefix("== ") })
        }
        #expect(section("copy") == expected, "COPY . takes what the context holds: \(r.stdout)")
        #expect(section("ro") == expected, "a read-only mount of the context shows the same: \(r.stdout)")
        #expect(section("rw") == expected, "and so does a writable one: \(r.stdout)")
        #expect(section("sub") == [".", "./README.md", "./main.sh"], "a mount of a subdirectory too: \(r.stdout)")
        #expect(section("docs") == [".", "./keep.txt"], "an excluded dir shows only what a ! pattern keeps: \(r.stdout)")
        #expect(section("leaks").isEmpty, "no ignored content reached a layer: \(r.stdout)")
        #expect(section("wrote") == ["changed"], "the rw mount takes writes: \(r.stdout)")
        // the context is as it was, and the view went with the build
        #expect(try String(contentsOfFile: "\(w.dir)/ctx/app/main.sh", encoding: .utf8) == "echo main\n")
        #expect(try scratchLeft(w).isEmpty, "the build's scratch dir is gone")

        // a mount that names an excluded file fails, naming it, as in BuildKit
        try builds.write(w, "ctx/Dockerfile", "FROM busybox:local\nRUN --mount=type=bind,source=.env,target=/e cat /e\n")
        let named = try builds.build(w, ["-q", "-t", "ign:2", "\(w.dir)/ctx"])
        expectOneLineError(named, mentions: "Dockerfile:2: RUN --mount=type=bind,source=.env,target=/e: .env is not in the build context (.dockerignore excludes it)")
        try builds.write(w, "ctx/Dockerfile", "FROM busybox:local\nRUN --mount=type=bind,source=.git,target=/g cat /g/config\n")
        expectOneLineError(try builds.build(w, ["-q", "-t", "ign:3", "\(w.dir)/ctx"]), mentions: ".git is not in the build context")
        // a failed build leaves no scratch behind either
        try builds.write(w, "ctx/Dockerfile", "FROM busybox:local\nRUN --mount=type=bind,target=/ctx false\n")
        #expect(try builds.build(w, ["-q", "-t", "ign:4", "\(w.dir)/ctx"]).status != 0)
        #expect(try scratchLeft(w).isEmpty, "the failed build's scratch dir is gone")
    }

    /// A context file of yours whose group is root (unmapped in your user namespace): a rootless
    /// rw mount used to fail with "Value too large for defined data type" when the step wrote
    /// it (overlay's copy-up keeps the owner, which has no id in the namespace).
    @Test(arguments: [Who.rootless, Who.nosub])
    func rwMountWritesAFileOfAnUnmappedGroup(_ who: Who) throws {
        guard TestEnv.amRoot else { print("skip \(who): chowning a context file to group root needs the tests to run as root"); return }
        guard let w = try builds.prepared(who) else { return }
        try builds.write(w, "ctx/f.txt", "data\n")
        try builds.write(w, "ctx/sub/g.txt", "g\n")
        try builds.write(w, "ctx/Dockerfile", #"""
            FROM busybox:local
            RUN --mount=type=bind,rw,target=/ctx sh -c 'echo more >> /ctx/f.txt && echo more >> /ctx/sub/g.txt && cat /ctx/f.txt /ctx/sub/g.txt > /seen'
            """#)
        let uid = TestEnv.uid(of: who.user!)!
        #expect(chown("\(w.dir)/ctx/f.txt", uid, 0) == 0 && chown("\(w.dir)/ctx/sub", uid, 0) == 0)
        let b = try builds.build(w, ["-t", "rw:1", "\(w.dir)/ctx"])
        expectOK(b, "build")
        #expect(!b.stderr.contains("Value too large"), "\(b.stderr)")
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "rw:1", "cat", "/seen"])
        #expect(r.lines == ["data", "more", "g", "more"], "\(r)")
        // the context is as it was, owners included
        #expect(try String(contentsOfFile: "\(w.dir)/ctx/f.txt", encoding: .utf8) == "data\n")
        #expect(try String(contentsOfFile: "\(w.dir)/ctx/sub/g.txt", encoding: .utf8) == "g\n")
        #expect(w.stat("\(w.dir)/ctx/f.txt").map { ($0.st_uid, $0.st_gid) } ?? (0, 1) == (uid, 0))
        #expect(try scratchLeft(w).isEmpty, "the build's scratch dir is gone")
    }
}
