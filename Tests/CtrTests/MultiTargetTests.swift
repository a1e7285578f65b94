import Foundation
import Testing

/// Several `--target`s in one build (issue 15): the stages they share are built once (even
/// with --no-cache), each target gets its own `-t` (by `{target}`, or one per target in order)
/// and its own `-o`; a count that does not fit is one line.
@Suite struct MultiTargetTests {
    @Test func severalTargetsOneRun() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip: \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        expectOK(try w.ctr("import", "--tag", "bb:1", TestEnv.busyboxTar))
        let ctx = "\(w.dir)/ctx"
        try FileManager.default.createDirectory(atPath: ctx, withIntermediateDirectories: true)
        try Data("""
            FROM bb:1 AS base
            RUN echo base-$$-$RANDOM > /base
            FROM base AS api
            RUN echo api > /role
            FROM base AS worker
            RUN echo worker > /role
            FROM bb:1 AS unused
            RUN echo never > /never

            """.utf8).write(to: URL(fileURLWithPath: "\(ctx)/Dockerfile"))
        _ = try w.bash("chmod -R a+rwX \(ctx)")
        let b = try w.ctr("build", "--no-cache", "--target", "api", "--target", "base", "--target", "worker",
                          "-t", "mt-{target}:1", "-o", "type=oci,tar=false,dest=\(w.dir)/out/{target}", ctx)
        expectOK(b, "build")
        #expect(b.lines.count == 3 && b.lines.allSatisfy { $0.count == 64 }, "one image id per target: \(b.stdout)")
        #expect(b.stderr.components(separatedBy: "RUN echo base-").count - 1 == 1, "the shared step ran once: \(b.stderr)")
        #expect(!b.stderr.contains("never"), "a stage no target needs is not built: \(b.stderr)")
        var bases = Set<String>()
        for (t, role) in [("base", ""), ("api", "api\n"), ("worker", "worker\n")] {
            let r = try w.ctr("run", "--rm", "mt-\(t):1", "sh", "-c", "cat /base /role 2>/dev/null; true")
            expectOK(r, t)
            #expect(r.stdout.hasSuffix(role) && r.stdout.hasPrefix("base-"), "\(t): \(r.stdout)")
            bases.insert(String(r.stdout.split(separator: "\n").first ?? ""))
            let layout = try w.ctr("run", "--rm", "oci:\(w.dir)/out/\(t)", "sh", "-c", "cat /role 2>/dev/null; true")
            #expect(layout.stdout == role, "-o for \(t): \(layout)")
        }
        #expect(bases.count == 1, "the three share one base layer: \(bases)")
        // names paired in order
        let paired = try w.ctr("build", "--target", "api", "--target", "worker", "-t", "p-a:1", "-t", "p-w:1", ctx)
        expectOK(paired)
        let pw = try w.ctr("run", "--rm", "p-w:1", "cat", "/role")
        #expect(pw.stdout == "worker\n", "\(pw)")
        // a count that does not fit
        let bad = try w.ctr("build", "--target", "api", "--target", "worker", "-t", "only:1", ctx)
        expectOneLineError(bad, mentions: "-t")
        let badTarget = try w.ctr("build", "--target", "api", "--target", "nope", "-t", "x-{target}", ctx)
        expectOneLineError(badTarget, mentions: "nope")
    }
}
