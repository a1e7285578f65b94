import Errors
import Foundation
import Testing
@testable import Layers

private func text(_ d: Data) -> String { String(decoding: d, as: UTF8.self) }

private let configDigest = "sha256:6fd955f66c231c1a946653170d096a28ac2b2052a02080c0b84ec082a07f7d12"
private let layerDigest = "sha256:7b2699543f22d5b8dc8d66a5873eb246767bca37232dee1e7a3b8c9956bceb0c"

/// A Docker v2 schema 2 manifest as served by Docker Hub (busybox), pretty-printed.
private let dockerManifestJSON = """
{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "\(configDigest)"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2220094,
         "digest": "\(layerDigest)"
      }
   ]
}
"""

private let ociIndexJSON = """
{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "size": 610,
      "platform": { "architecture": "amd64", "os": "linux" }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      "size": 611,
      "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "\(configDigest)",
      "size": 1203,
      "platform": {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.5458",
        "os.features": ["win32k"]
      },
      "annotations": { "org.opencontainers.image.ref.name": "1.0" }
    }
  ],
  "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" }
}
"""

private let imageConfigJSON = """
{
  "architecture": "amd64",
  "config": {
    "User": "nginx",
    "ExposedPorts": { "80/tcp": {}, "443/tcp": {} },
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25.3"],
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "Volumes": { "/var/cache/nginx": {} },
    "WorkingDir": "/",
    "Labels": { "maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>" },
    "StopSignal": "SIGQUIT",
    "ArgsEscaped": true,
    "Healthcheck": { "Test": ["CMD", "curl", "-f", "http://localhost/"], "Interval": 30000000000, "Retries": 3 },
    "Hostname": "",
    "AttachStdin": false
  },
  "created": "2023-12-19T21:57:14.365093171Z",
  "history": [
    { "created": "2023-12-19T03:20:27Z", "created_by": "/bin/sh -c #(nop) ADD file:1a2b in / " },
    { "created": "2023-12-19T03:20:27Z", "created_by": "/bin/sh -c #(nop)  CMD [\\"sh\\"]", "empty_layer": true },
    { "created": "2023-12-19T21:57:14Z", "created_by": "EXPOSE map[80/tcp:{}]", "comment": "buildkit.dockerfile.v0", "empty_layer": true }
  ],
  "os": "linux",
  "rootfs": {
    "type": "layers",
    "diff_ids": ["\(layerDigest)"]
  }
}
"""

@Suite struct MediaTypeTests {
    static let table: [(MediaType, String, Bool, Bool, Bool, Compression?)] = [
        (.ociIndex, "application/vnd.oci.image.index.v1+json", true, false, false, nil),
        (.dockerManifestList, "application/vnd.docker.distribution.manifest.list.v2+json", true, false, false, nil),
        (.ociManifest, "application/vnd.oci.image.manifest.v1+json", false, true, false, nil),
        (.dockerManifest, "application/vnd.docker.distribution.manifest.v2+json", false, true, false, nil),
        (.ociConfig, "application/vnd.oci.image.config.v1+json", false, false, true, nil),
        (.dockerConfig, "application/vnd.docker.container.image.v1+json", false, false, true, nil),
        (.ociEmpty, "application/vnd.oci.empty.v1+json", false, false, false, nil),
        (.ociLayer, "application/vnd.oci.image.layer.v1.tar", false, false, false, Compression.none),
        (.ociLayerGzip, "application/vnd.oci.image.layer.v1.tar+gzip", false, false, false, .gzip),
        (.ociLayerZstd, "application/vnd.oci.image.layer.v1.tar+zstd", false, false, false, .zstd),
        (.ociLayerNondistributable, "application/vnd.oci.image.layer.nondistributable.v1.tar",
         false, false, false, Compression.none),
        (.ociLayerNondistributableGzip, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
         false, false, false, .gzip),
        (.ociLayerNondistributableZstd, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
         false, false, false, .zstd),
        (.dockerLayer, "application/vnd.docker.image.rootfs.diff.tar", false, false, false, Compression.none),
        (.dockerLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip", false, false, false, .gzip),
        (.dockerLayerForeignGzip, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         false, false, false, .gzip),
        (MediaType("text/plain"), "text/plain", false, false, false, nil),
    ]

    @Test(arguments: table)
    func classification(mt: MediaType, raw: String, isIndex: Bool, isManifest: Bool, isConfig: Bool,
                        compression: Compression?) throws {
        #expect(mt.rawValue == raw)
        #expect(mt.description == raw)
        #expect(mt.isIndex == isIndex)
        #expect(mt.isManifest == isManifest)
        #expect(mt.isConfig == isConfig)
        #expect(mt.isLayer == (compression != nil))
        #expect(mt.layerCompression == compression)
        #expect(text(try CanonicalJSON.encode([mt])) == "[\"\(raw)\"]")
        #expect(try JSONDecoder().decode([MediaType].self, from: Data("[\"\(raw)\"]".utf8)) == [mt])
    }
}

@Suite struct PlatformTests {
    static let valid: [(String, String, String, String?, String)] = [
        ("linux/amd64", "linux", "amd64", nil, "linux/amd64"),
        ("linux/arm64/v8", "linux", "arm64", "v8", "linux/arm64/v8"),
        ("linux/arm/v7", "linux", "arm", "v7", "linux/arm/v7"),
        ("Linux/x86_64", "linux", "amd64", nil, "linux/amd64"),
        ("linux/aarch64", "linux", "arm64", nil, "linux/arm64"),
    ]

    @Test(arguments: valid)
    func parses(input: String, os: String, arch: String, variant: String?, description: String) throws {
        let p = try Platform(parsing: input)
        #expect(p.os == os)
        #expect(p.architecture == arch)
        #expect(p.variant == variant)
        #expect(p.description == description)
    }

    static let invalid: [(String, String)] = [
        ("", "expected os/architecture"),
        ("linux", "expected os/architecture"),
        ("linux/arm/v7/x", "expected os/architecture"),
        ("linux/", "empty component"),
        ("/amd64", "empty component"),
        ("linux/am d64", "invalid characters"),
    ]

    @Test(arguments: invalid)
    func rejects(input: String, reason: String) {
        do {
            let p = try Platform(parsing: input)
            Issue.record("parsed \(input) as \(p)")
        } catch {
            #expect(error.reason?.contains(reason) == true, "reason was: \(error.reason ?? "none")")
            #expect(error.description.hasPrefix("invalid platform \"\(input)\""))
        }
    }

    static let matchTable: [(String, String, Bool)] = [
        ("linux/amd64", "linux/amd64", true),
        ("linux/amd64", "linux/arm64", false),
        ("linux/amd64", "windows/amd64", false),
        ("linux/arm64", "linux/arm64/v8", true),
        ("linux/arm64/v8", "linux/arm64", true),
        ("linux/arm64", "linux/arm64/v9", false),
        ("linux/arm64/v8", "linux/arm64/v9", false),
        ("linux/arm/v7", "linux/arm/v6", false),
        ("linux/arm/v7", "linux/arm", true),
        ("linux/arm/v7", "linux/arm/v7", true),
    ]

    @Test(arguments: matchTable)
    func matching(a: String, b: String, expected: Bool) throws {
        let pa = try Platform(parsing: a), pb = try Platform(parsing: b)
        #expect(pa.matches(pb) == expected)
        #expect(pb.matches(pa) == expected)
    }

    @Test func current() {
        let c = Platform.current
        #expect(c.os == "linux")
        #if arch(x86_64)
        #expect(c.description == "linux/amd64")
        #elseif arch(arm64)
        #expect(c.description == "linux/arm64/v8")
        #endif
        #expect(c.matches(c))
    }

    @Test func codingKeys() throws {
        let p = Platform(os: "windows", architecture: "amd64", variant: nil,
                         osVersion: "10.0.17763", osFeatures: ["win32k"])
        #expect(text(try CanonicalJSON.encode(p))
            == #"{"architecture":"amd64","os":"windows","os.features":["win32k"],"os.version":"10.0.17763"}"#)
    }
}

@Suite struct OCITypesTests {
    @Test func dockerManifestRoundTrip() throws {
        let m = try CanonicalJSON.decode(Manifest.self, from: Data(dockerManifestJSON.utf8), what: "manifest")
        #expect(m.schemaVersion == 2)
        #expect(m.mediaType == .dockerManifest)
        #expect(m.config.mediaType == .dockerConfig)
        #expect(m.config.size == 1457)
        #expect(m.config.digest.string == configDigest)
        #expect(m.layers.count == 1)
        #expect(m.layers[0].mediaType.layerCompression == .gzip)
        #expect(m.layers[0].size == 2_220_094)
        #expect(m.layers[0].digest.string == layerDigest)
        #expect(m.layers[0].urls == nil)
        #expect(m.subject == nil)

        let canonical = try CanonicalJSON.encode(m)
        let expected = """
            {"config":{"digest":"\(configDigest)","mediaType":"application/vnd.docker.container.image.v1+json",\
            "size":1457},"layers":[{"digest":"\(layerDigest)",\
            "mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2220094}],\
            "mediaType":"application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2}
            """
        #expect(text(canonical) == expected)
        #expect(try CanonicalJSON.decode(Manifest.self, from: canonical, what: "manifest") == m)
    }

    @Test func ociIndexRoundTrip() throws {
        let idx = try CanonicalJSON.decode(Index.self, from: Data(ociIndexJSON.utf8), what: "index")
        #expect(idx.schemaVersion == 2)
        #expect(idx.mediaType == .ociIndex)
        #expect(idx.manifests.count == 3)
        #expect(idx.manifests.map { $0.platform?.description } == ["linux/amd64", "linux/arm64/v8", "windows/amd64"])
        #expect(idx.manifests[0].size == 610)
        #expect(idx.manifests[2].platform?.osVersion == "10.0.17763.5458")
        #expect(idx.manifests[2].platform?.osFeatures == ["win32k"])
        #expect(idx.manifests[2].annotations?["org.opencontainers.image.ref.name"] == "1.0")
        #expect(idx.annotations == ["org.opencontainers.image.created": "2024-01-01T00:00:00Z"])
        let arm = idx.manifests.first { $0.platform.map { $0.matches(try! Platform(parsing: "linux/arm64")) } ?? false }
        #expect(arm?.size == 611)

        let out = text(try CanonicalJSON.encode(idx))
        #expect(out.contains(#""platform":{"architecture":"amd64","os":"windows","os.features":["win32k"],"os.version":"10.0.17763.5458"}"#))
        #expect(out.contains(#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#))
        #expect(!out.contains("subject"))
        #expect(!out.contains("artifactType"))
        #expect(try CanonicalJSON.decode(Index.self, from: Data(out.utf8), what: "index") == idx)
    }

    @Test func imageConfigRoundTrip() throws {
        let c = try CanonicalJSON.decode(ImageConfig.self, from: Data(imageConfigJSON.utf8), what: "config")
        #expect(c.architecture == "amd64")
        #expect(c.os == "linux")
        #expect(c.created == "2023-12-19T21:57:14.365093171Z")
        let cc = try #require(c.config)
        #expect(cc.user == "nginx")
        #expect(cc.exposedPorts.map { Set($0.keys) } == ["80/tcp", "443/tcp"])
        #expect(cc.volumes == ["/var/cache/nginx": EmptyObject()])
        #expect(cc.entrypoint == ["/docker-entrypoint.sh"])
        #expect(cc.cmd == ["nginx", "-g", "daemon off;"])
        #expect(cc.env?.count == 2)
        #expect(cc.workingDir == "/")
        #expect(cc.stopSignal == "SIGQUIT")
        #expect(cc.argsEscaped == true)
        #expect(cc.labels?["maintainer"] == "NGINX Docker Maintainers <docker-maint@nginx.com>")
        #expect(cc.healthcheck == HealthConfig(test: ["CMD", "curl", "-f", "http://localhost/"],
                                               interval: 30_000_000_000, retries: 3))
        #expect(cc.onBuild == nil)
        #expect(c.rootfs == RootFS(diffIDs: [try Digest(parsing: layerDigest)]))
        let h = try #require(c.history)
        #expect(h.count == 3)
        #expect(h[0].emptyLayer == nil)
        #expect(h[1].createdBy == "/bin/sh -c #(nop)  CMD [\"sh\"]")
        #expect(h[1].emptyLayer == true)
        #expect(h[2].comment == "buildkit.dockerfile.v0")
        #expect(h.filter { $0.emptyLayer != true }.count == c.rootfs.diffIDs.count)

        let out = text(try CanonicalJSON.encode(c))
        #expect(out.contains(#""ExposedPorts":{"443/tcp":{},"80/tcp":{}}"#))
        #expect(out.contains(#""Volumes":{"/var/cache/nginx":{}}"#))
        #expect(out.contains(#""rootfs":{"diff_ids":[""# + layerDigest + #""],"type":"layers"}"#))
        #expect(out.contains(#""empty_layer":true"#))
        #expect(out.contains(#""created_by":"/bin/sh -c #(nop) ADD file:1a2b in / ""#))
        #expect(!out.contains("Hostname"), "unknown Docker keys are dropped")
        #expect(try CanonicalJSON.decode(ImageConfig.self, from: Data(out.utf8), what: "config") == c)
    }

    @Test func imageConfigToleratesMissingFields() throws {
        let json = #"{"rootfs":{"type":"layers","diff_ids":[]}}"#
        let c = try CanonicalJSON.decode(ImageConfig.self, from: Data(json.utf8), what: "config")
        #expect(c.architecture == "")
        #expect(c.os == "")
        #expect(c.history == nil)
        #expect(c.config == nil)
        #expect(c.rootfs.diffIDs.isEmpty)
        #expect(text(try CanonicalJSON.encode(c)) == #"{"architecture":"","os":"","rootfs":{"diff_ids":[],"type":"layers"}}"#)
    }

    @Test func emptyObjectEncodesAsBraces() throws {
        #expect(text(try CanonicalJSON.encode(EmptyObject())) == "{}")
        #expect(text(try CanonicalJSON.encode(["a": EmptyObject()])) == #"{"a":{}}"#)
        #expect(try JSONDecoder().decode(EmptyObject.self, from: Data(#"{"x":1}"#.utf8)) == EmptyObject())
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(EmptyObject.self, from: Data("[]".utf8))
        }
    }

    @Test func builtManifestOmitsNilFields() throws {
        let d = try Digest(parsing: layerDigest)
        let m = Manifest(config: Descriptor(mediaType: .ociConfig, digest: d, size: 2),
                         layers: [Descriptor(mediaType: .ociLayerGzip, digest: d, size: 3,
                                             annotations: ["k": "v"])])
        let expected = #"{"config":{"digest":"\#(layerDigest)","mediaType":"application/vnd.oci.image.config.v1+json","size":2},"layers":[{"annotations":{"k":"v"},"digest":"\#(layerDigest)","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#
        #expect(text(try CanonicalJSON.encode(m)) == expected)
    }
}

@Suite struct CanonicalJSONTests {
    @Test func deterministicSortedUnescaped() throws {
        let annotations = [
            "zeta": "z", "alpha": "https://example.com/a/b", "mid": "m", "Beta": "B", "alpha.b": "x",
        ]
        let idx = Index(manifests: [], annotations: annotations)
        let a = try CanonicalJSON.encode(idx)
        let b = try CanonicalJSON.encode(idx)
        #expect(a == b)
        let expected = #"{"annotations":{"Beta":"B","alpha":"https://example.com/a/b","alpha.b":"x","mid":"m","zeta":"z"},"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
        #expect(text(a) == expected)
        #expect(!text(a).contains("\\/"))
        #expect(Digest.sha256(a) == Digest.sha256(b))
        // A dictionary built in another insertion order still encodes to the same bytes.
        var other: [String: String] = [:]
        for k in annotations.keys.sorted().reversed() { other[k] = annotations[k] }
        #expect(try CanonicalJSON.encode(Index(manifests: [], annotations: other)) == a)
    }

    @Test func decodeErrorNamesWhatAndPath() throws {
        let bad = dockerManifestJSON.replacingOccurrences(of: layerDigest, with: "sha256:nothex")
        do {
            _ = try CanonicalJSON.decode(Manifest.self, from: Data(bad.utf8), what: "manifest \(configDigest)")
            Issue.record("decoded a bad manifest")
        } catch let e as CtrError {
            #expect(e.code == .invalidInput)
            #expect(e.keyPath == "layers[0].digest")
            #expect(e.description.hasPrefix("invalid manifest \(configDigest): at layers[0].digest: "))
            #expect(e.description.contains("invalid digest \"sha256:nothex\""))
            #expect(!e.description.contains("\n"))
        }
    }

    static let errorTable: [(String, String, String)] = [
        (#"{"schemaVersion":2,"layers":[]}"#, "config", "missing required key \"config\""),
        (#"{"schemaVersion":"2","config":{},"layers":[]}"#, "schemaVersion", "expected a number"),
        ("{\"schemaVersion\":2,\n\"config\":", "", "not valid JSON"),
        ("[]", "", "expected"),
    ]

    @Test(arguments: errorTable)
    func decodeErrors(json: String, path: String, reason: String) {
        do {
            _ = try CanonicalJSON.decode(Manifest.self, from: Data(json.utf8), what: "manifest x")
            Issue.record("decoded \(json)")
        } catch let e as CtrError {
            #expect(e.keyPath == path)
            #expect(e.reason?.contains(reason) == true, "reason was: \(e.reason ?? "none")")
            #expect(e.description.hasPrefix("invalid manifest x: "))
            #expect(!e.description.contains("\n"))
        } catch {
            Issue.record("wrong error type \(error)")
        }
    }
}
