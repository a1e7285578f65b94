import Foundation
import Testing
@testable import Layers

/// Tables for the names ctr writes into and reads from OCI layouts, the manifest schema
/// check, and ENV replacement (issue 11, points 9 and 10).
@Suite struct NamesAndSchemaTests {
    @Test(arguments: [
        ("latest", true), ("1.0", true), ("docker.io/library/a:1", true), ("a--b", true), ("v1+build", true),
        ("../x", false), ("a/../b", false), ("/abs", false), ("", false), ("a//b", false), ("a b", false),
        ("a:", false), ("-a", false), ("a---b", false),
    ])
    func refNameGrammar(_ name: String, _ valid: Bool) {
        #expect(Annotations.isValidRefName(name) == valid, "\(name)")
    }

    @Test(arguments: [
        (#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, nil as String?, nil as String?),
        (#"{"schemaVersion":2,"manifests":[]}"#, nil, nil),
        (#"{"schemaVersion":1,"name":"x","fsLayers":[{"blobSum":"sha256:00"}]}"#, nil, "Docker schema 1"),
        (#"{"schemaVersion":1}"#, "application/vnd.docker.distribution.manifest.v1+prettyjws", "Docker schema 1"),
        (#"{"schemaVersion":1,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, nil, "has schemaVersion 1"),
        (#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, nil, "has no schemaVersion"),
        (#"{"schemaVersion":3}"#, nil, "has schemaVersion 3"),
        ("not json", nil, nil),
    ])
    func manifestSchema(_ json: String, _ media: String?, _ problem: String?) {
        let p = ManifestSchema.problem(Data(json.utf8), mediaType: media.map { MediaType($0) })
        if let problem {
            #expect(p?.contains(problem) == true, "\(json): \(p ?? "nil")")
        } else {
            #expect(p == nil, "\(json): \(p ?? "nil")")
        }
    }

    func entry(_ full: String?, _ ref: String?) -> Descriptor {
        var a: [String: String] = [:]
        if let full { a[Annotations.containerdName] = full }
        if let ref { a[Annotations.refName] = ref }
        return Descriptor(mediaType: .ociManifest, digest: Digest.sha256(Data((full ?? ref ?? "").utf8)), size: 1, annotations: a)
    }

    @Test func sharedTagsGetFullNames() {
        let out = unambiguousRefNames([
            entry("docker.io/library/a:1", "1"), entry("docker.io/library/b:1", "1"),
            entry("docker.io/library/c:2", "2"), entry("docker.io/library/c:2", "2"), entry(nil, "3"),
        ]).map { $0.annotations?[Annotations.refName] }
        #expect(out == ["docker.io/library/a:1", "docker.io/library/b:1", "2", "2", "3"])
    }

    @Test(arguments: [
        (["a=1", "b=2"], "a", "3", ["a=3", "b=2"]),
        (["a=1", "b=2"], "c", "3", ["a=1", "b=2", "c=3"]),
        (["PATH=/bin", "a=1", "b=2", "a=0"], "a", "4", ["PATH=/bin", "a=4", "b=2"]),
        (["a", "b=2"], "a", "1", ["a=1", "b=2"]),
        (["ab=1"], "a", "2", ["ab=1", "a=2"]),
    ])
    func envReplacedInPlace(_ env: [String], _ name: String, _ value: String, _ want: [String]) {
        var c = ContainerConfig()
        c.env = env
        c.setEnv(name, value)
        #expect(c.env == want)
    }
}
