import Errors
import Foundation
import Testing
@testable import Layers

private let emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
private let abcSHA = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
private let sha512Hex = String(repeating: "0123456789abcdef", count: 8)

// MARK: - Digest

@Suite struct DigestTests {
    @Test func sha256KnownVectors() {
        #expect(Digest.sha256(Data()).string == "sha256:" + emptySHA)
        #expect(Digest.sha256([UInt8]()).string == "sha256:" + emptySHA)
        #expect(Digest.sha256(Data("abc".utf8)).string == "sha256:" + abcSHA)
        #expect(Digest.sha256(Array("abc".utf8)).encoded == abcSHA)
        // A non-contiguous sequence takes the copying path.
        #expect(Digest.sha256("abc".utf8.lazy.map { $0 }).encoded == abcSHA)
        #expect(Digest.sha256(Data("abd".utf8)).encoded != abcSHA)
    }

    @Test func incrementalHasherMatchesOneShot() {
        let h = SHA256Hasher()
        h.update(Data("a".utf8))
        h.update(Data())
        "bc".utf8.withContiguousStorageIfAvailable { h.update(UnsafeRawBufferPointer($0)) }
        #expect(h.finalize().encoded == abcSHA)
        // finalize() resets: the next digest starts from scratch.
        #expect(h.finalize().encoded == emptySHA)
        let big = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        h.update(big.prefix(12345))
        h.update(big.dropFirst(12345))
        #expect(h.finalize() == Digest.sha256(big))
    }

    @Test func constructors() {
        let d = Digest(sha256Hex: abcSHA)
        #expect(d.algorithm == "sha256")
        #expect(d.encoded == abcSHA)
        #expect(d.string == "sha256:" + abcSHA)
        #expect(d.description == d.string)
        #expect(d.short == "ba7816bf8f01")
        let bytes: [UInt8] = [0xde, 0xad, 0xbe, 0xef] + [UInt8](repeating: 0x0f, count: 28)
        #expect(Digest(sha256Bytes: bytes).encoded == "deadbeef" + String(repeating: "0f", count: 28))
    }

    static let valid: [(String, String, String)] = [
        ("sha256:" + abcSHA, "sha256", abcSHA),
        ("sha256:" + emptySHA, "sha256", emptySHA),
        ("sha512:" + sha512Hex, "sha512", sha512Hex),
    ]

    @Test(arguments: valid)
    func parsesValid(input: String, algorithm: String, encoded: String) throws {
        let d = try Digest(parsing: input)
        #expect(d.algorithm == algorithm)
        #expect(d.encoded == encoded)
        #expect(d.string == input)
    }

    static let invalid: [(String, String)] = [
        ("", "empty digest"),
        (abcSHA, "missing ':'"),
        (":" + abcSHA, "missing algorithm"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm \"md5\""),
        ("SHA256:" + abcSHA, "unsupported algorithm"),
        ("sha256:", "missing hex"),
        ("sha256:" + abcSHA.uppercased(), "lowercase"),
        ("sha256:zz", "invalid hex character 'z'"),
        ("sha256:" + abcSHA.dropLast(), "must be 64 characters, got 63"),
        ("sha256:" + abcSHA + "0", "must be 64 characters, got 65"),
        ("sha512:" + abcSHA, "must be 128 characters, got 64"),
        ("sha256:" + abcSHA + ":x", "invalid hex character ':'"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(input: String, reason: String) {
        do {
            let d = try Digest(parsing: input)
            Issue.record("parsed \(input) as \(d)")
        } catch {
            #expect(error.code == .invalidInput)
            #expect(error.reason?.contains(reason) == true, "reason was: \(error.reason ?? "none")")
            #expect(error.description == "invalid digest \"\(input)\": \(error.reason ?? "")")
        }
    }

    @Test func comparableAndHashable() throws {
        let a = Digest(sha256Hex: abcSHA)
        let e = Digest(sha256Hex: emptySHA)
        #expect(a < e)
        #expect(!(e < a))
        #expect([e, a].sorted() == [a, e])
        #expect(Set([a, e, Digest(sha256Hex: abcSHA)]).count == 2)
        #expect(try Digest(parsing: "sha512:" + sha512Hex) > e)
    }

    @Test func codableAsString() throws {
        let d = Digest(sha256Hex: abcSHA)
        let json = try CanonicalJSON.encode(["d": d])
        #expect(String(decoding: json, as: UTF8.self) == "{\"d\":\"sha256:\(abcSHA)\"}")
        let back = try JSONDecoder().decode([String: Digest].self, from: json)
        #expect(back["d"] == d)
    }

    @Test func decodingInvalidThrowsDataCorrupted() {
        let json = Data("[\"sha256:ABC\"]".utf8)
        do {
            let v = try JSONDecoder().decode([Digest].self, from: json)
            Issue.record("decoded \(v)")
        } catch DecodingError.dataCorrupted(let ctx) {
            #expect(ctx.debugDescription == "invalid digest \"sha256:ABC\": hex must be lowercase")
            #expect(ctx.codingPath.count == 1)
        } catch {
            Issue.record("wrong error \(error)")
        }
    }
}

// MARK: - Reference

struct RefCase: Sendable, CustomStringConvertible {
    var input: String
    var registry: String
    var repository: String
    var tag: String?
    var digest: String?
    var string: String
    var familiar: String
    var description: String { input }
}

private let dg = "sha256:" + abcSHA

@Suite struct ReferenceTests {
    static let normalisation: [RefCase] = [
        RefCase(input: "busybox", registry: "docker.io", repository: "library/busybox", tag: "latest",
                string: "docker.io/library/busybox:latest", familiar: "busybox:latest"),
        RefCase(input: "docker.io/busybox", registry: "docker.io", repository: "library/busybox",
                tag: "latest", string: "docker.io/library/busybox:latest", familiar: "busybox:latest"),
        RefCase(input: "index.docker.io/library/busybox:1", registry: "docker.io",
                repository: "library/busybox", tag: "1", string: "docker.io/library/busybox:1",
                familiar: "busybox:1"),
        RefCase(input: "library/busybox:1.36.1-musl", registry: "docker.io", repository: "library/busybox",
                tag: "1.36.1-musl", string: "docker.io/library/busybox:1.36.1-musl",
                familiar: "busybox:1.36.1-musl"),
        RefCase(input: "team/app", registry: "docker.io", repository: "team/app", tag: "latest",
                string: "docker.io/team/app:latest", familiar: "team/app:latest"),
        RefCase(input: "docker.io/library/a/b", registry: "docker.io", repository: "library/a/b",
                tag: "latest", string: "docker.io/library/a/b:latest", familiar: "library/a/b:latest"),
        RefCase(input: "localhost/app", registry: "localhost", repository: "app", tag: "latest",
                string: "localhost/app:latest", familiar: "localhost/app:latest"),
        RefCase(input: "localhost:5000/a/b:c", registry: "localhost:5000", repository: "a/b", tag: "c",
                string: "localhost:5000/a/b:c", familiar: "localhost:5000/a/b:c"),
        // Without a '/', "localhost:5000" is the repository "localhost" with tag "5000" (as in Docker).
        RefCase(input: "localhost:5000", registry: "docker.io", repository: "library/localhost",
                tag: "5000", string: "docker.io/library/localhost:5000", familiar: "localhost:5000"),
        RefCase(input: "127.0.0.1:5000/team/app@" + dg, registry: "127.0.0.1:5000",
                repository: "team/app", tag: nil, digest: dg, string: "127.0.0.1:5000/team/app@" + dg,
                familiar: "127.0.0.1:5000/team/app@" + dg),
        RefCase(input: "example.com/team/busybox:1", registry: "example.com", repository: "team/busybox",
                tag: "1", string: "example.com/team/busybox:1", familiar: "example.com/team/busybox:1"),
        RefCase(input: "[::1]:5000/x:y", registry: "[::1]:5000", repository: "x", tag: "y",
                string: "[::1]:5000/x:y", familiar: "[::1]:5000/x:y"),
        RefCase(input: "busybox:1.36@" + dg, registry: "docker.io", repository: "library/busybox",
                tag: "1.36", digest: dg, string: "docker.io/library/busybox:1.36@" + dg,
                familiar: "busybox:1.36@" + dg),
        RefCase(input: "ghcr.io/a__b.c-d---e/f_g:V1_x.y-z", registry: "ghcr.io",
                repository: "a__b.c-d---e/f_g", tag: "V1_x.y-z",
                string: "ghcr.io/a__b.c-d---e/f_g:V1_x.y-z", familiar: "ghcr.io/a__b.c-d---e/f_g:V1_x.y-z"),
        // An uppercase first component can only be a host (docker's splitDockerDomain rule).
        RefCase(input: "Registry/app:1", registry: "Registry", repository: "app", tag: "1",
                string: "Registry/app:1", familiar: "Registry/app:1"),
        RefCase(input: "my-registry.example.com:443/x", registry: "my-registry.example.com:443",
                repository: "x", tag: "latest", string: "my-registry.example.com:443/x:latest",
                familiar: "my-registry.example.com:443/x:latest"),
    ]

    @Test(arguments: normalisation)
    func normalises(c: RefCase) throws {
        let r = try Reference(parsing: c.input)
        #expect(r.registry == c.registry)
        #expect(r.repository == c.repository)
        #expect(r.tag == c.tag)
        #expect(r.digest?.string == c.digest)
        #expect(r.string == c.string)
        #expect(r.description == c.string)
        #expect(r.familiar == c.familiar)
        #expect(r.name == c.registry + "/" + c.repository)
        // The normalised and the familiar forms parse back to the same reference.
        #expect(try Reference(parsing: r.string) == r)
        #expect(try Reference(parsing: r.familiar) == r)
    }

    static let familiarNames: [(String, String)] = [
        ("busybox", "busybox"),
        ("docker.io/library/busybox", "busybox"),
        ("team/app", "team/app"),
        ("docker.io/library/team/app", "library/team/app"),
        ("quay.io/library/busybox", "quay.io/library/busybox"),
        ("localhost/busybox", "localhost/busybox"),
    ]

    @Test(arguments: familiarNames)
    func familiarName(input: String, expected: String) throws {
        #expect(try Reference(parsing: input).familiarName == expected)
    }

    @Test func noDefaultTag() throws {
        let r = try Reference(parsing: "busybox", defaultTag: false)
        #expect(r.tag == nil)
        #expect(r.digest == nil)
        #expect(r.string == "docker.io/library/busybox")
        #expect(r.familiar == "busybox")
        let pinned = try Reference(parsing: "busybox@" + dg)
        #expect(pinned.tag == nil, "a digest suppresses the default tag")
    }

    @Test func withTagAndDigest() throws {
        let r = try Reference(parsing: "busybox:1@" + dg)
        let t = r.withTag("2")
        #expect(t.tag == "2")
        #expect(t.digest == nil)
        #expect(t.string == "docker.io/library/busybox:2")
        let d = Digest(sha256Hex: emptySHA)
        let p = t.withDigest(d)
        #expect(p.tag == "2")
        #expect(p.digest == d)
        #expect(p.string == "docker.io/library/busybox:2@sha256:" + emptySHA)
        let m = Reference(registry: "example.com", repository: "a/b", tag: nil, digest: nil)
        #expect(m.string == "example.com/a/b")
    }

    static let invalid: [(String, String)] = [
        ("", "empty reference"),
        ("UPPER", "repository name must be lowercase"),
        ("docker.io/Team/app", "repository name must be lowercase"),
        ("example.com/team/Busybox:1", "repository name must be lowercase"),
        ("busybox:bad!tag", "invalid tag \"bad!tag\""),
        ("busybox:.tag", "invalid tag \".tag\""),
        ("busybox:-tag", "invalid tag"),
        ("busybox:" + String(repeating: "a", count: 129), "tag longer than 128 characters"),
        ("a:", "empty tag"),
        ("@sha256:zz", "bad digest"),
        ("busybox@sha256:abc", "bad digest: sha256 hex must be 64 characters"),
        ("busybox@", "empty digest"),
        (abcSHA, "cannot be a 64-character hexadecimal string"),
        (":tag", "empty repository name"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("-a", "invalid repository path component \"-a\""),
        ("a..b", "invalid repository path component \"a..b\""),
        ("a___b", "invalid repository path component"),
        ("a b", "invalid character ' '"),
        ("exa_mple.com/a", "invalid registry host"),
        ("localhost:abc/a", "invalid registry port \"abc\""),
        ("[zz]:5000/a", "invalid IPv6"),
        ("example.com/", "empty repository path"),
        (String(repeating: "a", count: 256), "longer than 255 characters"),
        ("http://127.0.0.1:5000/team/app:1", "http:// is not part of an image name"),
        ("docker://busybox", "docker:// is not part of an image name"),
    ]

    /// pull and push take containers-transports' docker:// in front, as podman and skopeo do
    @Test func registryReferenceMayCarryDockerTransport() throws {
        let r = try Reference(parsingRegistryReference: "docker://127.0.0.1:5000/team/app:1")
        #expect(r.string == "127.0.0.1:5000/team/app:1")
        #expect(try Reference(parsingRegistryReference: "busybox").string == "docker.io/library/busybox:latest")
        #expect(throws: CtrError.self) { try Reference(parsingRegistryReference: "oci://x") }
    }

    @Test(arguments: invalid)
    func rejects(input: String, reason: String) {
        do {
            let r = try Reference(parsing: input)
            Issue.record("parsed \"\(input)\" as \(r)")
        } catch {
            #expect(error.code == .invalidInput)
            #expect(error.reason?.contains(reason) == true, "reason was: \(error.reason ?? "none")")
            #expect(error.description == "invalid reference \"\(input)\": \(error.reason ?? "")")
        }
    }

    static let tags: [(String, Bool)] = [
        ("latest", true), ("1.36.1", true), ("_x", true), ("V1-rc.2_b", true),
        (String(repeating: "a", count: 128), true),
        ("", false), (".x", false), ("-x", false), ("a/b", false), ("a:b", false), ("a@b", false),
        (String(repeating: "a", count: 129), false), ("é", false),
    ]

    @Test(arguments: tags)
    func tagValidation(tag: String, valid: Bool) {
        #expect(Reference.isValidTag(tag) == valid)
    }
}
