import Foundation
import Testing

/// A registry that goes quiet: `ctr pull` gives up after CTR_REGISTRY_TIMEOUT seconds without
/// progress, counted across its retries, says on stderr that it is waiting and retrying, and
/// ends with one error line naming the registry. A slow transfer that keeps moving is not cut.
@Suite(.serialized) struct RegistryStallTests {
    let faults = RegistryFaultTests()
    /// CTR_REGISTRY_TIMEOUT for these tests, in seconds.
    static let limit = 4

    /// `ctr pull` with the short timeout, killed after 60 s if it does not end by itself (ctr
    /// used to wait five minutes): the result and the seconds it took.
    func pull(_ w: Workspace, _ ref: String, root: String) throws -> (RunResult, Double) {
        let start = Date()
        let r = try w.sh(["timeout", "-s", "KILL", "60", TestEnv.binary, "pull", ref],
                         env: ["HOME": w.home, "XDG_RUNTIME_DIR": "\(w.dir)/run", "CTR_ROOT": root,
                               "CTR_REGISTRY_TIMEOUT": String(Self.limit)])
        return (r, Date().timeIntervalSince(start))
    }

    func warnings(_ r: RunResult) -> [String] {
        r.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("warning: ") }
    }

    func lastLine(_ r: RunResult) -> String {
        r.stderr.split(separator: "\n").last.map(String.init) ?? ""
    }

    /// The registry answers /v2/ and then holds the manifest request open, sending nothing.
    @Test func stalledManifestRequestGivesUp() throws {
        guard let (w, img) = try faults.prepared() else { return }
        let fake = RegistryFaultTests.Fake(img) { r, _, _ in
            r.path.contains("/manifests/") ? .stall(status: nil, headers: [:], body: Data(), after: 0) : nil
        }
        let s = try faults.serve(fake)
        let root = "\(w.dir)/s"
        let (r, secs) = try pull(w, "\(s.addr)/test/bb:1", root: root)
        #expect(r.status != 0 && r.status != 137, "ctr ends by itself, with an error: \(r)")
        #expect(secs >= Double(Self.limit) - 0.2, "it waits the whole timeout: \(secs) s")
        #expect(secs < Double(Self.limit) + 5, "within the timeout and a margin, retries included: \(secs) s \(r)")
        // waiting, then retrying on a new connection, said on stderr
        #expect(warnings(r).contains { $0.contains("\(s.addr): nothing received for 2 s (getting manifest test/bb:1); retrying") },
                "a waiting/retrying line: \(r.stderr)")
        #expect(s.log.filter { $0.path.contains("/manifests/") }.count == 2, "one retry within the timeout: \(s.log.map(\.path))")
        // and one error line at the end, naming the registry
        expectOneLineError(r, mentions: s.addr)
        #expect(lastLine(r) == "Error: \(s.addr): nothing received for \(Self.limit) s (getting manifest test/bb:1); gave up (CTR_REGISTRY_TIMEOUT sets how long to wait)",
                "\(r.stderr)")
        faults.expectNothingStored(w, root)
    }

    /// The layer stops half way (some bytes, then nothing), and every resumed request stalls
    /// too: the timeout counts from the last byte, across the retries.
    @Test func blobStallingMidTransferGivesUp() throws {
        guard let (w, img) = try faults.prepared() else { return }
        let fake = RegistryFaultTests.Fake(img) { r, _, f in
            guard r.path.hasSuffix(f.img.layerDigest), r.method == "GET" else { return nil }
            // a resumed request (Range) gets the start again, and nothing new
            return .stall(status: 200, headers: [:], body: f.img.layer, after: f.img.layer.count / 2)
        }
        let s = try faults.serve(fake)
        let root = "\(w.dir)/s"
        let (r, secs) = try pull(w, "\(s.addr)/test/bb:1", root: root)
        #expect(r.status != 0 && r.status != 137, "ctr ends by itself, with an error: \(r)")
        #expect(secs < Double(Self.limit) + 5, "within the timeout and a margin: \(secs) s \(r)")
        #expect(warnings(r).contains { $0.contains("\(s.addr): nothing received for 2 s (getting blob \(img.layerDigest)); retrying") },
                "a waiting/retrying line: \(r.stderr)")
        let gets = s.log.filter { $0.path.hasSuffix(img.layerDigest) }
        #expect(gets.count == 2 && gets.last?.headers["range"] == "bytes=\(img.layer.count / 2)-", "one resumed retry: \(gets.map(\.headers))")
        expectOneLineError(r, mentions: s.addr)
        #expect(lastLine(r).hasPrefix("Error: \(s.addr): nothing received for \(Self.limit) s (getting blob \(img.layerDigest), \(img.layer.count / 2) of \(img.layer.count) bytes in); gave up"),
                "\(r.stderr)")
        faults.expectNothingStored(w, root)
    }

    /// A layer that takes twice the timeout to arrive but never stops for long is not cut.
    @Test func slowButMovingBlobIsNotCut() throws {
        guard let (w, img) = try faults.prepared() else { return }
        let fake = RegistryFaultTests.Fake(img) { r, _, f in
            guard r.path.hasSuffix(f.img.layerDigest), r.method == "GET" else { return nil }
            return .trickle(status: 200, headers: [:], body: f.img.layer, chunks: 14, interval: 0.75)
        }
        let s = try faults.serve(fake)
        let root = "\(w.dir)/s"
        let (r, secs) = try pull(w, "\(s.addr)/test/bb:1", root: root)
        expectOK(r)
        #expect(secs > 2 * Double(Self.limit), "the transfer took longer than the timeout: \(secs) s")
        #expect(warnings(r).isEmpty, "nothing to warn about: \(r.stderr)")
        #expect(s.log.filter { $0.path.hasSuffix(img.layerDigest) }.count == 1, "no retry")
    }

    /// A value that is not a number of seconds is refused, naming the variable.
    @Test func badTimeoutIsRefused() throws {
        guard let (w, _) = try faults.prepared() else { return }
        let r = try w.ctrHome(["pull", "127.0.0.1:1/test/bb:1"], env: ["CTR_REGISTRY_TIMEOUT": "soon"], root: "\(w.dir)/s")
        expectOneLineError(r, mentions: "CTR_REGISTRY_TIMEOUT=soon")
    }
}
