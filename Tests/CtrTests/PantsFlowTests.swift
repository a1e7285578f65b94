import Foundation
import Testing

/// What Pants' OCI backend does with umoci, skopeo and runc, with ctr alone (issue 15): a
/// Python base pinned by digest copied from the registry into a layout, a zipapp added on it
/// with its entrypoint, the image run from the layout, published to the TLS registry and
/// pulled back by digest; a second store and temp dir give the same digests.
@Suite(.serialized) struct PantsFlowTests {
    static let pythonTar = "\(TestEnv.fixtures)/python-bookworm.tar"

    @Test func layoutAppendRunPublish() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, access(Self.pythonTar, R_OK) == 0 else { print("skip: no \(Self.pythonTar) (\(TestEnv.setupHint))"); return }
        guard TestRegistry.available, let reg = TestRegistry.secure else { print("skip: \(TestRegistry.skipReason)"); return }
        let w = try Workspace(who)
        try w.trust(reg)
        let creds = "\(TestRegistry.user):\(TestRegistry.password)"
        let tag = "t\(UUID().uuidString.prefix(8).lowercased())"
        // the base, published once (as a registry's python image would be)
        expectOK(try w.ctrHome(["import", "-q", "--tag", "python:fixture", Self.pythonTar]))
        let pushed = try w.ctrHome(["push", "-q", "--creds", creds, "python:fixture", "\(reg.addr)/library/python:\(tag)"])
        expectOK(pushed, "push the Python base")
        let baseDigest = pushed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(baseDigest.hasPrefix("sha256:"))
        // the artifact: a zipapp (what a .pex is: a zip with a __main__ and a shebang)
        expectOK(try w.bash("""
            set -e; mkdir -p \(w.dir)/src/hello && cd \(w.dir)/src
            printf 'import sys, json\\nprint(json.dumps({"hello": sys.argv[1:]}))\\n' > hello/__main__.py
            python3 -m zipapp hello -o \(w.dir)/hello.pyz -p '/usr/bin/env python3'
            """), "zipapp")

        var appDigests: [String] = []
        for n in ["one", "two"] {
            let d = "\(w.dir)/\(n)"
            let store = "\(d)/store"
            let env = ["SOURCE_DATE_EPOCH": "1700000000", "TMPDIR": d]
            expectOK(try w.bash("mkdir -p \(d) && cp -p \(w.dir)/hello.pyz \(d)/app.pex"))
            // 1. the base by digest into a layout (skopeo copy docker://…@sha256 oci:…)
            let copy = try w.ctrHome(["copy", "-q", "--creds", creds, "docker://\(reg.addr)/library/python@\(baseDigest)", "oci:\(d)/base:python"], root: store)
            expectOK(copy, "copy by digest into a layout")
            #expect(copy.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == baseDigest, "the layout's manifest is the pinned one: \(copy)")
            // 2. the pex on it, its entrypoint set (umoci insert + umoci config)
            let app = try w.ctrHome(["append", "--base", "oci:\(d)/base:python", "--add", "\(d)/app.pex:/app/app.pex", "--chmod", "0755",
                                     "--change", "ENTRYPOINT [\"/app/app.pex\"]", "--change", "ENV PORT=8080", "-t", "oci:\(d)/out:app"],
                                    env: env, root: store)
            expectOK(app, "append the pex")
            // 3. run it from the layout (runc)
            let run = try w.ctrHome(["run", "--rm", "oci:\(d)/out:app", "a", "b"], root: store)
            #expect(run.status == 0 && run.stdout == "{\"hello\": [\"a\", \"b\"]}\n", "\(run)")
            // 4. publish (skopeo copy oci: docker://)
            let pub = try w.ctrHome(["push", "-q", "--creds", creds, "oci:\(d)/out:app", "\(reg.addr)/team/app:\(tag)-\(n)"], root: store)
            expectOK(pub, "publish")
            appDigests.append(pub.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(appDigests.count == 2 && appDigests[0] == appDigests[1] && appDigests[0].hasPrefix("sha256:"),
                "two stores, two temp dirs, one digest: \(appDigests)")
        // 5. pulled back by digest into a third store, it runs
        let pulled = "\(w.dir)/pulled"
        let p = try w.ctrHome(["pull", "-q", "--creds", creds, "\(reg.addr)/team/app@\(appDigests[0])"], root: pulled)
        expectOK(p, "pull by digest")
        let r = try w.ctrHome(["run", "--rm", "\(reg.addr)/team/app@\(appDigests[0])", "back"], root: pulled)
        #expect(r.status == 0 && r.stdout == "{\"hello\": [\"back\"]}\n", "\(r)")
        // append's base straight from the registry by digest: its blobs are fetched and
        // verified, nothing is unpacked (no user namespace needed); run unpacks on demand
        let fifth = "\(w.dir)/fifth"
        let direct = try w.ctrHome(["append", "--creds", creds, "--base", "\(reg.addr)/library/python@\(baseDigest)",
                                    "--add", "\(w.dir)/hello.pyz:/app/app.pex", "--chmod", "0755",
                                    "--change", "ENTRYPOINT [\"/app/app.pex\"]", "-t", "direct:1"], root: fifth)
        expectOK(direct, "append on a registry base")
        let unpacked = (try? FileManager.default.contentsOfDirectory(atPath: "\(fifth)/layers/sha256")) ?? []
        #expect(unpacked.isEmpty, "append unpacked \(unpacked.count) layer(s)")
        let ranDirect = try w.ctrHome(["run", "--rm", "direct:1", "d"], root: fifth)
        #expect(ranDirect.stdout == "{\"hello\": [\"d\"]}\n", "\(ranDirect)")
        let afterRun = (try? FileManager.default.contentsOfDirectory(atPath: "\(fifth)/layers/sha256")) ?? []
        #expect(!afterRun.isEmpty, "run unpacks into \(fifth)/layers/sha256 (the place checked above)")
        // docker://REF is the registry's, pulled as needed, for run as for copy
        let viaTransport = try w.ctrHome(["run", "--rm", "--creds", creds, "docker://\(reg.addr)/team/app@\(appDigests[0])", "again"], root: "\(w.dir)/fourth")
        #expect(viaTransport.status == 0 && viaTransport.stdout == "{\"hello\": [\"again\"]}\n", "\(viaTransport)")
    }
}
