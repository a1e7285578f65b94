import Foundation
import Testing

/// Faults a real registry will not produce, from a small in-process server: wrong blobs, cut
/// connections, 5xx and 429 then success, bad passwords, oversized manifests, indexes.
@Suite(.serialized) struct RegistryFaultTests {
    /// The busybox image as bytes: manifest, config, layer.
    struct Image {
        var manifest: Data
        var config: Data
        var layer: Data
        var layerDigest: String
        var configDigest: String
        var manifestDigest: String
    }

    static func digest(_ d: Data) -> String { "sha256:" + sha256Hex(d) }

    func prepared() throws -> (Workspace, Image)? {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.haveBusybox else { print("skip: \(TestEnv.setupHint)"); return nil }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "bb", TestEnv.busyboxTar]))
        expectOK(try w.ctrHome(["save", "--format", "oci-dir", "-o", "\(w.dir)/layout", "bb"]))
        let idx = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(w.dir)/layout/index.json"))) as! [String: Any]
        let md = ((idx["manifests"] as! [[String: Any]])[0]["digest"] as! String)
        func blob(_ d: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: "\(w.dir)/layout/blobs/sha256/\(d.dropFirst(7))")) }
        let manifest = try blob(md)
        let m = try JSONSerialization.jsonObject(with: manifest) as! [String: Any]
        let cd = (m["config"] as! [String: Any])["digest"] as! String
        let ld = ((m["layers"] as! [[String: Any]])[0])["digest"] as! String
        return (w, Image(manifest: manifest, config: try blob(cd), layer: try blob(ld), layerDigest: ld, configDigest: cd, manifestDigest: md))
    }

    /// A registry serving `img` under "test/bb:1", with `fault` consulted first.
    final class Fake: @unchecked Sendable {
        let img: Image
        var extraBlobs: [String: Data] = [:]
        var manifests: [String: (Data, String)] = [:]
        let lock = NSLock()
        var counts: [String: Int] = [:]
        let fault: @Sendable (FaultServer.Request, Int, Fake) -> FaultServer.Reply?

        init(_ img: Image, fault: @escaping @Sendable (FaultServer.Request, Int, Fake) -> FaultServer.Reply? = { _, _, _ in nil }) {
            self.img = img
            self.fault = fault
            manifests["1"] = (img.manifest, "application/vnd.oci.image.manifest.v1+json")
            manifests[img.manifestDigest] = (img.manifest, "application/vnd.oci.image.manifest.v1+json")
        }

        func handle(_ r: FaultServer.Request) -> FaultServer.Reply {
            lock.lock()
            let key = "\(r.method) \(r.path)"
            counts[key, default: 0] += 1
            let n = counts[key]!
            lock.unlock()
            if let f = fault(r, n, self) { return f }
            if r.path == "/v2/" { return .respond(status: 200, headers: [:], body: Data("{}".utf8)) }
            if r.path.hasPrefix("/v2/test/bb/manifests/") {
                let ref = String(r.path.dropFirst("/v2/test/bb/manifests/".count))
                guard let (m, type) = manifests[ref] else { return .respond(status: 404, headers: [:], body: Data(#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.utf8)) }
                return .respond(status: 200, headers: ["Content-Type": type, "Docker-Content-Digest": RegistryFaultTests.digest(m)], body: m)
            }
            if r.path.hasPrefix("/v2/test/bb/blobs/") {
                let d = String(r.path.dropFirst("/v2/test/bb/blobs/".count))
                let blob = d == img.layerDigest ? img.layer : d == img.configDigest ? img.config : extraBlobs[d]
                guard let blob else { return .respond(status: 404, headers: [:], body: Data(#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#.utf8)) }
                if let range = r.headers["range"], range.hasPrefix("bytes="), let from = Int(range.dropFirst(6).dropLast()), from < blob.count {
                    return .respond(status: 206, headers: ["Content-Range": "bytes \(from)-\(blob.count - 1)/\(blob.count)"], body: blob.subdata(in: from..<blob.count))
                }
                return .respond(status: 200, headers: [:], body: blob)
            }
            return .respond(status: 404, headers: [:], body: Data())
        }
    }

    func serve(_ fake: Fake) throws -> FaultServer {
        try FaultServer { fake.handle($0) }
    }

    func expectNothingStored(_ w: Workspace, _ root: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let fm = FileManager.default
        let blobs = (try? fm.contentsOfDirectory(atPath: "\(root)/blobs/sha256")) ?? []
        let layers = (try? fm.contentsOfDirectory(atPath: "\(root)/layers/sha256")) ?? []
        let tmp = ((try? fm.contentsOfDirectory(atPath: "\(root)/layers")) ?? []).filter { $0 != "sha256" }
        let ingest = (try? fm.contentsOfDirectory(atPath: "\(root)/ingest")) ?? []
        #expect(blobs.isEmpty && layers.isEmpty && tmp.isEmpty && ingest.isEmpty,
                "nothing enters the store: \(blobs) \(layers) \(tmp) \(ingest)", sourceLocation: sourceLocation)
    }

    @Test func wrongBlobIsRejected() throws {
        guard let (w, img) = try prepared() else { return }
        let fake = Fake(img) { r, _, f in
            guard r.path.hasSuffix(f.img.layerDigest) else { return nil }
            var bad = f.img.layer
            bad[bad.count / 2] ^= 0x5a
            return .respond(status: 200, headers: [:], body: bad)
        }
        let s = try serve(fake)
        let root = "\(w.dir)/s"
        let r = try w.ctrHome(["pull", "\(s.addr)/test/bb:1"], root: root)
        expectOneLineError(r, mentions: img.layerDigest)
        // the unpack fails first (bad gzip), and the error says why: other bytes than the digest names
        var bad = img.layer
        bad[bad.count / 2] ^= 0x5a
        #expect(r.stderr.contains("failed verification: what the registry sent hashes to \(Self.digest(bad))"), "\(r)")
        expectNothingStored(w, root)
    }

    /// A layer published broken (its bytes match its digest, but they are not valid gzip) is
    /// reported as that, not as a transfer fault.
    @Test func layerPublishedBrokenIsSaidSo() throws {
        guard let (w, img) = try prepared() else { return }
        var bad = img.layer
        bad[bad.count / 2] ^= 0x5a
        var m = try JSONSerialization.jsonObject(with: img.manifest) as! [String: Any]
        m["layers"] = [["mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Self.digest(bad), "size": bad.count]]
        let manifest = try JSONSerialization.data(withJSONObject: m)
        let fake = Fake(img)
        fake.manifests["broken"] = (manifest, "application/vnd.oci.image.manifest.v1+json")
        fake.extraBlobs[Self.digest(bad)] = bad
        let s = try serve(fake)
        let root = "\(w.dir)/s"
        let r = try w.ctrHome(["pull", "\(s.addr)/test/bb:broken"], root: root)
        expectOneLineError(r, mentions: "layer \(Self.digest(bad))")
        #expect(r.stderr.contains("the blob matches its digest: the image was published with this layer broken"), "\(r)")
        expectNothingStored(w, root)
    }

    @Test(arguments: [true, false])
    func cutConnectionResumes(rangeSupported: Bool) throws {
        guard let (w, img) = try prepared() else { return }
        let fake = Fake(img) { r, n, f in
            guard r.path.hasSuffix(f.img.layerDigest), r.method == "GET" else { return nil }
            if n == 1 { return .cut(status: 200, headers: [:], body: f.img.layer, after: f.img.layer.count / 2) }
            if !rangeSupported { return .respond(status: 200, headers: [:], body: f.img.layer) }
            return nil
        }
        let s = try serve(fake)
        let r = try w.ctrHome(["pull", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s")
        expectOK(r)
        let gets = s.log.filter { $0.path.hasSuffix(img.layerDigest) }
        #expect(gets.count == 2, "one retry")
        #expect(gets.last?.headers["range"]?.hasPrefix("bytes=") == true, "the retry asks for the rest: \(gets.map(\.headers))")
        expectOK(try w.ctrHome(["unpack", "\(s.addr)/test/bb:1", "\(w.dir)/u"], root: "\(w.dir)/s"))
        #expect(w.stat("\(w.dir)/u/rootfs/bin/busybox")?.st_size ?? 0 > 500_000)
    }

    /// On a terminal a layer's line shows the bytes so far, the total and the rate while it
    /// downloads, and the result lines stay below the last drawing.
    @Test func terminalProgressWhileDownloading() throws {
        guard TestEnv.have("script"), let (w, img) = try prepared() else { return }
        let fake = Fake(img) { r, _, f in
            guard r.path.hasSuffix(f.img.layerDigest), r.method == "GET" else { return nil }
            return .pause(status: 200, headers: [:], body: f.img.layer, after: f.img.layer.count / 2, seconds: 0.6)
        }
        let s = try serve(fake)
        let cmd = "CTR_ROOT=\(w.dir)/tty TERM=xterm \(TestEnv.binary) pull \(s.addr)/test/bb:1"
        let tty = try w.sh(["script", "-qec", cmd, "/dev/null"], env: ["HOME": w.home])
        expectOK(tty)
        let short = String(img.layerDigest.dropFirst(7).prefix(12))
        // sizes as docker prints them: 1000-based, one decimal
        func size(_ n: Int) -> String {
            n < 1000 ? "\(n)B" : n < 1_000_000 ? String(format: "%.1fkB", Double(n) / 1e3) : String(format: "%.1fMB", Double(n) / 1e6)
        }
        let half = size(img.layer.count / 2), total = size(img.layer.count)
        #expect(tty.stdout.contains("\(short): downloading  \(half) / \(total)  "), "bytes so far and total: \(tty.stdout.debugDescription)")
        #expect(tty.stdout.range(of: #"downloading  [0-9.]+[kM]?B / [0-9.]+[kM]?B  [0-9.]+[kM]?B/s"#, options: .regularExpression) != nil,
                "a rate: \(tty.stdout.debugDescription)")
        // after the last drawing come the result lines, and nothing draws over them
        let tail = tty.stdout.components(separatedBy: "\u{1B}[").last ?? ""
        #expect(tail.contains("Digest: sha256:") && tail.contains("Status: Downloaded newer image"), "\(tty.stdout.debugDescription)")
    }

    /// A pull stopped by a signal (SIGTERM here; Ctrl-C's SIGINT is ignored by a background
    /// job of a script) ends at once and leaves nothing in the store.
    @Test func stoppedPullLeavesNothing() throws {
        guard let (w, img) = try prepared() else { return }
        let fake = Fake(img) { r, _, f in
            guard r.path.hasSuffix(f.img.layerDigest), r.method == "GET" else { return nil }
            return .pause(status: 200, headers: [:], body: f.img.layer, after: f.img.layer.count / 2, seconds: 20)
        }
        let s = try serve(fake)
        let root = "\(w.dir)/s"
        let r = try w.bash("""
            start=$(date +%s%N)
            HOME=\(w.home) XDG_RUNTIME_DIR=\(w.dir)/run CTR_ROOT=\(root) \(TestEnv.binary) pull \(s.addr)/test/bb:1 2>err & pid=$!
            # wait until half the layer is in
            for i in $(seq 1 100); do grep -q downloading err 2>/dev/null && ls -a \(root)/layers 2>/dev/null | grep -q tmp && break; sleep 0.1; done
            sleep 0.3
            kill -TERM $pid
            wait $pid; echo "status=$?"
            echo "ms=$(( ($(date +%s%N) - start) / 1000000 ))"
            """)
        #expect(r.stdout.contains("status=143"), "ends as SIGTERM asks: \(r)")
        let ms = Int(r.stdout.split(separator: "=").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 99999
        #expect(ms < 10_000, "does not wait for the stalled transfer: \(r)")
        expectNothingStored(w, root)
        if !r.stdout.contains("status=143") || ms >= 10_000 { print(try w.bash("cat err; find \(root) | head -30").stdout) }
    }

    @Test func serverErrorsAndRateLimitsAreRetried() throws {
        guard let (w, img) = try prepared() else { return }
        let fake = Fake(img) { r, n, f in
            if r.path.contains("/manifests/") && n == 1 {
                return .respond(status: 500, headers: [:], body: Data(#"{"errors":[{"code":"UNKNOWN","message":"try again"}]}"#.utf8))
            }
            if r.path.hasSuffix(f.img.layerDigest) && n == 1 {
                return .respond(status: 429, headers: ["Retry-After": "1"], body: Data())
            }
            if r.path.hasSuffix(f.img.configDigest) && n == 1 {
                return .respond(status: 503, headers: [:], body: Data())
            }
            return nil
        }
        let s = try serve(fake)
        let start = Date()
        let r = try w.ctrHome(["pull", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s")
        expectOK(r)
        #expect(Date().timeIntervalSince(start) >= 1.0, "Retry-After was honoured")
        #expect(s.log.filter { $0.path.contains("/manifests/") }.count == 2)
        #expect(s.log.filter { $0.path.hasSuffix(img.layerDigest) }.count == 2)

        // a registry that keeps failing: its error after the retries, one line
        let broken = try FaultServer { r in
            r.path == "/v2/" ? .respond(status: 200, headers: [:], body: Data())
                : .respond(status: 500, headers: [:], body: Data(#"{"errors":[{"code":"UNKNOWN","message":"storage is down"}]}"#.utf8))
        }
        let b = try w.ctrHome(["pull", "\(broken.addr)/test/bb:1"], root: "\(w.dir)/b")
        expectOneLineError(b, mentions: "storage is down")
        #expect(broken.log.filter { $0.path.contains("/manifests/") }.count == 5, "five attempts")
    }

    @Test func badPasswordIsAnAuthenticationError() throws {
        guard let (w, img) = try prepared() else { return }
        let good = "Basic " + Data("tester:right".utf8).base64EncodedString()
        let fake = Fake(img) { r, _, _ in
            r.headers["authorization"] == good ? nil
                : .respond(status: 401, headers: ["WWW-Authenticate": #"Basic realm="fake""#],
                           body: Data(#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.utf8))
        }
        let s = try serve(fake)
        let bad = try w.ctrHome(["pull", "--creds", "tester:wrong", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s")
        expectOneLineError(bad, mentions: "authentication failed for tester")
        expectOneLineError(try w.ctrHome(["pull", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s"), mentions: "ctr login")
        expectOK(try w.ctrHome(["pull", "--creds", "tester:right", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s"))
    }

    @Test func bearerTokensFromTheRealmAreCachedPerScope() throws {
        guard let (w, img) = try prepared() else { return }
        let tokens = TokenLog()
        let fake = Fake(img) { r, _, _ in
            if r.path.hasPrefix("/token") {
                // the token server: needs the user's password, hands out a token per scope
                tokens.add(r.path)
                let basic = "Basic " + Data("tester:right".utf8).base64EncodedString()
                if let a = r.headers["authorization"], a != basic {
                    return .respond(status: 401, headers: [:], body: Data(#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.utf8))
                }
                let who = r.headers["authorization"] == nil ? "anon" : "tester"
                return .respond(status: 200, headers: ["Content-Type": "application/json"], body: Data(#"{"token":"tok-\#(who)"}"#.utf8))
            }
            let auth = r.headers["authorization"] ?? ""
            if auth != "Bearer tok-tester" && auth != "Bearer tok-anon" {
                return .respond(status: 401, headers: ["WWW-Authenticate": #"Bearer realm="http://\#(r.headers["host"] ?? "")/token",service="fake-registry",scope="repository:test/bb:pull""#],
                                body: Data(#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.utf8))
            }
            return nil
        }
        let s = try serve(fake)
        let r = try w.ctrHome(["pull", "--creds", "tester:right", "\(s.addr)/test/bb:1"], root: "\(w.dir)/s")
        expectOK(r)
        let asked = tokens.all
        #expect(asked.contains { $0.contains("service=fake-registry") && $0.contains("scope=repository:test/bb:pull") }, "\(asked)")
        #expect(asked.count == 1, "one token for the pull scope, reused for every request: \(asked)")
        let authed = s.log.filter { $0.headers["authorization"] == "Bearer tok-tester" }
        #expect(authed.count >= 3, "manifest, config and layer carried the token")
        // anonymous: a token without credentials
        let anon = try w.ctrHome(["pull", "\(s.addr)/test/bb:1"], root: "\(w.dir)/anon")
        expectOK(anon)
        // wrong password at the token server
        let bad = try w.ctrHome(["pull", "--creds", "tester:wrong", "\(s.addr)/test/bb:1"], root: "\(w.dir)/bad")
        expectOneLineError(bad, mentions: "authentication failed for tester")
    }

    /// A push uploads its blobs in parallel; they share one token for the push scope (the
    /// token server is slow, so the uploads ask at the same time).
    @Test func parallelUploadsShareOneToken() throws {
        guard let (w, img) = try prepared() else { return }
        let tokens = TokenLog()
        let fake = Fake(img) { r, _, _ in
            if r.path.hasPrefix("/token") {
                tokens.add(r.path)
                usleep(300_000)
                return .respond(status: 200, headers: ["Content-Type": "application/json"], body: Data(#"{"token":"tok"}"#.utf8))
            }
            if r.path == "/v2/" { return nil }
            if r.headers["authorization"] != "Bearer tok" {
                return .respond(status: 401, headers: ["WWW-Authenticate": #"Bearer realm="http://\#(r.headers["host"] ?? "")/token",service="fake""#],
                                body: Data(#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.utf8))
            }
            let p = r.path.split(separator: "?").first.map(String.init) ?? r.path
            if r.method == "HEAD" && p.hasPrefix("/v2/test/pushed/blobs/") { return .respond(status: 404, headers: [:], body: Data()) }
            if r.method == "POST" && p == "/v2/test/pushed/blobs/uploads/" {
                return .respond(status: 202, headers: ["Location": "/v2/test/pushed/blobs/uploads/\(UUID().uuidString)", "Range": "0-0"], body: Data())
            }
            if r.method == "PATCH" && p.hasPrefix("/v2/test/pushed/blobs/uploads/") {
                return .respond(status: 202, headers: ["Location": p, "Range": "0-\(max(r.body.count - 1, 0))"], body: Data())
            }
            if r.method == "PUT" && p.hasPrefix("/v2/test/pushed/blobs/uploads/") {
                let d = r.path.components(separatedBy: "digest=").last?.removingPercentEncoding ?? ""
                return .respond(status: 201, headers: ["Docker-Content-Digest": d, "Location": "/v2/test/pushed/blobs/\(d)"], body: Data())
            }
            if r.method == "PUT" && p.hasPrefix("/v2/test/pushed/manifests/") {
                return .respond(status: 201, headers: ["Docker-Content-Digest": RegistryFaultTests.digest(r.body)], body: Data())
            }
            return nil
        }
        let s = try serve(fake)
        let r = try w.ctrHome(["push", "bb", "\(s.addr)/test/pushed:1"])
        expectOK(r)
        let puts = s.log.filter { $0.method == "PUT" && $0.path.contains("/blobs/uploads/") }
        #expect(puts.count == 2, "config and layer uploaded: \(s.log.map { "\($0.method) \($0.path)" })")
        let push = tokens.all.filter { $0.contains("push") }
        #expect(push.count == 1, "one token request for the push scope: \(tokens.all)")
    }

    final class TokenLog: @unchecked Sendable {
        private let lock = NSLock()
        private var paths: [String] = []
        func add(_ p: String) { lock.lock(); paths.append(p); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return paths }
    }

    @Test func oversizedAndMismatchedManifestsAreRefused() throws {
        guard let (w, img) = try prepared() else { return }
        var m = try JSONSerialization.jsonObject(with: img.manifest) as! [String: Any]
        m["annotations"] = ["padding": String(repeating: "x", count: 5 << 20)]
        let huge = try JSONSerialization.data(withJSONObject: m)
        let fake = Fake(img)
        fake.manifests["huge"] = (huge, "application/vnd.oci.image.manifest.v1+json")
        let s = try serve(fake)
        expectOneLineError(try w.ctrHome(["pull", "\(s.addr)/test/bb:huge"], root: "\(w.dir)/s"), mentions: "4 MiB")

        let liar = Fake(img) { r, _, f in
            r.path.contains("/manifests/") ? .respond(status: 200, headers: ["Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                                              "Docker-Content-Digest": f.img.configDigest], body: f.img.manifest) : nil
        }
        let s2 = try serve(liar)
        expectOneLineError(try w.ctrHome(["pull", "\(s2.addr)/test/bb:1"], root: "\(w.dir)/s2"), mentions: "Docker-Content-Digest")
        // by digest, a registry answering with other content
        let other = "sha256:" + String(repeating: "0", count: 64)
        let wrong = Fake(img)
        wrong.manifests[other] = (img.manifest, "application/vnd.oci.image.manifest.v1+json")
        let s3 = try serve(wrong)
        let r = try w.ctrHome(["pull", "\(s3.addr)/test/bb@\(other)"], root: "\(w.dir)/s3")
        expectOneLineError(r, mentions: other)
        expectNothingStored(w, "\(w.dir)/s3")
    }

    @Test func platformIsPickedFromAnIndex() throws {
        guard let (w, img) = try prepared() else { return }
        // an arm64 variant: same layer, its own config
        var cfg = try JSONSerialization.jsonObject(with: img.config) as! [String: Any]
        cfg["architecture"] = "arm64"
        cfg["variant"] = "v8"
        let armConfig = try JSONSerialization.data(withJSONObject: cfg)
        var am = try JSONSerialization.jsonObject(with: img.manifest) as! [String: Any]
        am["config"] = ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": Self.digest(armConfig), "size": armConfig.count]
        let armManifest = try JSONSerialization.data(withJSONObject: am)
        let index: [String: Any] = ["schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            ["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifestDigest, "size": img.manifest.count,
             "platform": ["os": "linux", "architecture": "amd64"]],
            ["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Self.digest(armManifest), "size": armManifest.count,
             "platform": ["os": "linux", "architecture": "arm64", "variant": "v8"]],
        ]]
        let indexData = try JSONSerialization.data(withJSONObject: index)
        let fake = Fake(img)
        fake.manifests["multi"] = (indexData, "application/vnd.oci.image.index.v1+json")
        fake.manifests[Self.digest(armManifest)] = (armManifest, "application/vnd.oci.image.manifest.v1+json")
        fake.extraBlobs[Self.digest(armConfig)] = armConfig
        let s = try serve(fake)
        let arm = try w.ctrHome(["pull", "--platform", "linux/arm64", "\(s.addr)/test/bb:multi"], root: "\(w.dir)/a")
        expectOK(arm)
        #expect(arm.stderr.contains("Digest: \(Self.digest(indexData))"), "the index digest is what the tag resolved to: \(arm)")
        let inspect = try w.ctrHome(["inspect", "\(s.addr)/test/bb:multi"], root: "\(w.dir)/a")
        #expect(inspect.stdout.contains("\"Architecture\" : \"arm64\""), "\(inspect.stdout.prefix(300))")
        #if arch(x86_64)
        // run warns that the image is not for this host, as docker and podman do (the layer is
        // this host's busybox, so it runs all the same)
        let foreign = try w.ctrHome(["run", "--rm", "--network", "none", "\(s.addr)/test/bb:multi", "true"], root: "\(w.dir)/a")
        expectOK(foreign)
        #expect(foreign.stderr.contains("warning: the image's platform (linux/arm64/v8) does not match this host's (linux/amd64)"), "\(foreign)")
        #endif
        let native = try w.ctrHome(["pull", "\(s.addr)/test/bb:multi"], root: "\(w.dir)/b")
        expectOK(native)
        #expect(try w.ctrHome(["inspect", "\(s.addr)/test/bb:multi"], root: "\(w.dir)/b").stdout.contains("\"Architecture\" : \"amd64\""))
        let none = try w.ctrHome(["pull", "--platform", "linux/s390x", "\(s.addr)/test/bb:multi"], root: "\(w.dir)/c")
        expectOneLineError(none, mentions: "linux/arm64/v8")
        // a build for arm64: the base is pulled for it (the index's arm64 image), so it is not
        // refused; the same base already in the store for amd64 is refused, not relabelled
        let ctx = "\(w.dir)/armctx"
        expectOK(try w.bash("mkdir -p \(ctx) && printf 'FROM \(s.addr)/test/bb:multi\\nLABEL built=yes\\n' > \(ctx)/Dockerfile && chmod -R a+rwX \(ctx)"))
        let armBuild = try w.ctrHome(["build", "--pull", "always", "--platform", "linux/arm64", "-t", "armbuilt:1", ctx], root: "\(w.dir)/d")
        expectOK(armBuild, "a base pulled for the build's platform")
        #expect(try w.ctrHome(["inspect", "--format", "{{.Architecture}}", "armbuilt:1"], root: "\(w.dir)/d").stdout == "arm64\n")
        let refused = try w.ctrHome(["build", "-q", "--pull", "never", "--platform", "linux/arm64", ctx], root: "\(w.dir)/b")
        expectOneLineError(refused, mentions: "the image is linux/amd64, the build is for linux/arm64")
    }
}
