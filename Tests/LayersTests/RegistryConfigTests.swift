import Errors
import Foundation
import Testing
@testable import Layers

// MARK: - Helpers

/// A scratch directory for one test; `defer { t.cleanup() }` removes it (and keeps it alive until then).
private struct TempDir: Sendable {
    let root: String

    init() {
        var template = Array("/tmp/ctr-regcfg-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp failed") }
        root = String(cString: p)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }

    /// Absolute path for `rel` (absolute paths are returned unchanged).
    func path(_ rel: String) -> String { rel.hasPrefix("/") ? rel : root + "/" + rel }

    @discardableResult
    func dir(_ rel: String) -> String {
        let p = path(rel)
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    @discardableResult
    func write(_ rel: String, _ text: String, mode: Int = 0o644) -> String {
        let p = path(rel)
        try! FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: p))
        chmod(p, mode_t(mode))
        return p
    }
}

private func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

private func ref(_ s: String) -> Reference { try! Reference(parsing: s, defaultTag: false) }

private func mode(of path: String) -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { return -1 }
    return Int(st.st_mode & 0o7777)
}

private func jsonObject(_ path: String) -> [String: Any] {
    let data = FileManager.default.contents(atPath: path) ?? Data()
    return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
}

private let digestA = "sha256:" + String(repeating: "a", count: 64)

// MARK: - TOML errors in registries.conf

/// The TOML target's errors (its own tests are in TOMLTests) come out of registries.conf
/// reading as they are: FILE:LINE first.
@Suite struct RegistriesConfTOMLErrorTests {
    @Test func tomlErrorsNameFileAndLine() {
        let e = #expect(throws: CtrError.self) {
            try RegistriesConf.parse("[[registry]]\nlocation = \"x\"\n[[registry]]\nlocation = 'y\n", file: "/etc/containers/registries.conf")
        }
        #expect(e == CtrError.at(file: "/etc/containers/registries.conf", line: 4,
                                 "unterminated literal string (use ''' for strings that span lines)"))
        #expect(e?.description.hasPrefix("/etc/containers/registries.conf:4: ") == true)
    }
}

// MARK: - registries.conf parsing

@Suite struct RegistriesConfParseTests {
    @Test func parsesV2() throws {
        let text = """
        unqualified-search-registries = ["registry.fedoraproject.org", "quay.io/", "docker.io"]
        short-name-mode = "enforcing"
        credential-helpers = ["pass", "containers-auth.json"]

        [[registry]]
        prefix = "docker.io"
        location = "mirror.example.com:5000"
        insecure = true

        [[registry.mirror]]
        location = "cache.local:5000/"
        insecure = true

        [[registry.mirror]]
        location = "cache2.local"
        pull-from-mirror = "digest-only"

        [[registry]]
        location = "blocked.example.com"
        blocked = true
        unknown-key = "ignored"

        [aliases]
        "fedora" = "registry.fedoraproject.org/fedora"
        busybox = "docker.io/busybox"
        """
        let conf = try RegistriesConf.parse(text, file: "v2.conf")
        #expect(conf.unqualifiedSearchRegistries == ["registry.fedoraproject.org", "quay.io", "docker.io"])
        #expect(conf.unqualifiedSearchRegistriesOrigin == "v2.conf")
        #expect(conf.shortNameMode == .enforcing)
        #expect(conf.credentialHelpers == ["pass", "containers-auth.json"])
        #expect(conf.registries.map(\.prefix) == ["blocked.example.com", "docker.io"])
        let blocked = conf.registries[0]
        #expect(blocked.location == "blocked.example.com")
        #expect(blocked.blocked && !blocked.insecure)
        #expect(blocked.line == 18)
        let hub = conf.registries[1]
        #expect(hub.location == "mirror.example.com:5000")
        #expect(hub.insecure && !hub.blocked && !hub.mirrorByDigestOnly)
        #expect(hub.mirrors == [
            Mirror(location: "cache.local:5000", insecure: true, pullFromMirror: nil),
            Mirror(location: "cache2.local", insecure: false, pullFromMirror: .digestOnly),
        ])
        #expect(hub.file == "v2.conf")
        #expect(hub.line == 5)
        #expect(hub.origin == "v2.conf:5")
        #expect(conf.aliases == ["fedora": "registry.fedoraproject.org/fedora", "busybox": "docker.io/library/busybox"])
        #expect(conf.aliasOrigin("busybox") == "v2.conf")
    }

    @Test func defaultsWhenUnset() throws {
        let conf = try RegistriesConf.parse("# nothing here\n")
        #expect(conf.shortNameMode == .permissive)
        #expect(conf.credentialHelpers == ["containers-auth.json"])
        #expect(conf.registries.isEmpty)
        #expect(conf.unqualifiedSearchRegistries.isEmpty)
        #expect(conf.unqualifiedSearchRegistriesOrigin == nil)
    }

    @Test func parsesV1() throws {
        let text = """
        [registries.search]
        registries = ["docker.io", "quay.io"]

        [registries.insecure]
        registries = ["insecure.example.com:5000", "both.example.com"]

        [registries.block]
        registries = ["blocked.example.com", "both.example.com/"]
        """
        let conf = try RegistriesConf.parse(text, file: "v1.conf")
        #expect(conf.unqualifiedSearchRegistries == ["docker.io", "quay.io"])
        #expect(conf.registries.map(\.prefix) == ["blocked.example.com", "both.example.com", "insecure.example.com:5000"])
        #expect(conf.registries.map(\.location) == conf.registries.map(\.prefix))
        #expect(conf.registries.map(\.blocked) == [true, true, false])
        #expect(conf.registries.map(\.insecure) == [false, true, true])
        #expect(conf.isInsecure(host: "insecure.example.com:5000"))
        #expect(!conf.isInsecure(host: "quay.io"))
        #expect(conf.isBlocked(ref("both.example.com/x/y:1")))
        #expect(!conf.isBlocked(ref("quay.io/x/y:1")))
    }

    static let mixing: [String] = [
        "[registries.search]\nregistries = [\"docker.io\"]\n\n[[registry]]\nlocation = \"quay.io\"\n",
        // containers/image testdata/mixing-v1-v2-empty.conf: empty arrays count as set.
        "unqualified-search-registries = []\n\n[registries.search]\nregistries = []\n\n[registries.block]\nregistries = []\n",
        "unqualified-search-registries = [\"quay.io\"]\n[registries.search]\nregistries = [\"docker.io\"]\n",
        "[registries.insecure]\nregistries = [\"a.example.com\"]\n[aliases]\nx = \"quay.io/x\"\n",
    ]

    @Test(arguments: mixing)
    func mixingV1AndV2IsAnError(text: String) {
        do {
            _ = try RegistriesConf.parse(text, file: "/etc/containers/registries.conf")
            Issue.record("expected an error")
        } catch let e as CtrError {
            #expect(e.message.contains("mixing sysregistry v1/v2 is not supported"))
            #expect(e.description.hasPrefix("/etc/containers/registries.conf:"))
            #expect(e.line != nil)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func v1InDropInIsAnError() {
        #expect(throws: CtrError.self) {
            try RegistriesConf.parse("[registries.search]\nregistries = [\"docker.io\"]\n", file: "d.conf", dropIn: true)
        }
        #expect(throws: Never.self) {
            try RegistriesConf.parse("[registries.search]\nregistries = [\"docker.io\"]\n", file: "main.conf", dropIn: false)
        }
    }

    static let semanticErrors: [(String, Int, String)] = [
        ("[[registry]]\nlocation = \"https://quay.io\"", 2, "URI schemes are not supported"),
        ("[[registry]]\ninsecure = true", 1, "both location and prefix are unset"),
        ("[[registry]]\nprefix = \"example.com\"", 1, "location is unset and prefix is not in the format"),
        ("[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\nlocation = \"m.com\"\npull-from-mirror = \"sometimes\"", 5, "unsupported pull-from-mirror value"),
        ("[[registry]]\nlocation = \"a.com\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.com\"\npull-from-mirror = \"tag-only\"", 6, "cannot set mirror usage mirror-by-digest-only"),
        ("[[registry]]\nlocation = \"a.com\"\npull-from-mirror = \"all\"", 3, "must not be set for a non-mirror registry"),
        ("[[registry]]\nlocation = \"a.com\"\ninsecure = true\n[[registry]]\nprefix = \"a.com/ns\"\nlocation = \"a.com\"", 4, "conflicting 'insecure' setting"),
        ("[[registry]]\nlocation = \"a.com\"\n[[registry]]\nprefix = \"a.com/ns\"\nlocation = \"a.com\"\nblocked = true", 3, "conflicting 'blocked' setting"),
        ("[[registry]]\nprefix = \"*.example.com:5000\"", 1, "Wildcarded prefix should be in the format"),
        ("short-name-mode = \"prompt\"", 1, "invalid short-name mode"),
        ("unqualified-search-registries = [\"docker.io\", \"not a host\"]", 1, "invalid unqualified-search-registries entry"),
        ("[aliases]\n\"docker.io/busybox\" = \"docker.io/library/busybox\"", 2, "must not contain registry"),
        ("[aliases]\nbusybox = \"busybox\"", 2, "must contain registry and repository"),
        ("[aliases]\nbusybox = \"docker.io/library/busybox:latest\"", 2, "must not contain tag"),
        ("[aliases]\n\"busybox:1\" = \"docker.io/library/busybox\"", 2, "must not contain tag"),
        ("[[registry]]\nlocation = \"a.com\"\ninsecure = \"yes\"", 3, "expected a boolean"),
        ("registry = 5", 1, "expected an array of tables"),
        ("[[registry]]\nlocation = \"a.com\"\n[[registry.mirror]]\ninsecure = true", 3, "mirror location is unset"),
        ("unqualified-search-registries = \"docker.io\"", 1, "expected an array of strings"),
        ("unqualified-search-registries = [\"docker.io\", 5]", 1, "expected an array of strings, found an element that is an integer"),
        ("registry = [5]", 1, "expected an array of tables, found an element that is an integer"),
        ("[registries.search]\nregistries = [\"https://docker.io\"]", 2, "URI schemes are not supported"),
    ]

    @Test(arguments: semanticErrors)
    func reportsSemanticErrors(text: String, line: Int, fragment: String) {
        do {
            _ = try RegistriesConf.parse(text, file: "test.conf")
            Issue.record("expected an error for \(text.debugDescription)")
        } catch let e as CtrError {
            #expect(e.line == line, "\(e)")
            #expect(e.message.contains(fragment), "\(e)")
            #expect(e.description.hasPrefix("test.conf:\(line): "))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func firstEntryForAPrefixWins() throws {
        let conf = try RegistriesConf.parse("""
        [[registry]]
        location = "dup.example.com"
        [[registry]]
        prefix = "dup.example.com"
        location = "second.example.com"
        [[registry]]
        location = "a.example.com"
        """)
        #expect(conf.registries.map(\.prefix) == ["a.example.com", "dup.example.com"])
        #expect(conf.registry(matching: "dup.example.com/x")?.location == "dup.example.com")
    }

    @Test func inlineRegistryArray() throws {
        let conf = try RegistriesConf.parse(#"registry = [{ location = "a.example.com", insecure = true, mirror = [{ location = "m.example.com" }] }]"#)
        #expect(conf.registries.count == 1)
        #expect(conf.registries[0].insecure)
        #expect(conf.registries[0].mirrors.map(\.location) == ["m.example.com"])
    }
}

// MARK: - Prefix matching and rewriting

@Suite struct RegistryMatchingTests {
    static let prefixCases: [(String, String, Int?)] = [
        ("docker.io", "docker.io", "docker.io".count),
        ("docker.io", "example.com", nil),
        ("example.com:5000", "example.com:5000", "example.com:5000".count),
        ("example.com:50000", "example.com:5000", nil),
        ("example.com:5000", "example.com", "example.com".count),  // containers/image quirk
        ("example.com/foo", "example.com", "example.com".count),
        ("example.com/foo/bar:baz", "example.com", "example.com".count),
        ("example.com/foo@" + digestA, "example.com", "example.com".count),
        ("docker.io", "docker.io/library", nil),
        ("docker.io/library/busybox", "docker.io/library", "docker.io/library".count),
        ("docker.io/libraryy", "docker.io/library", nil),
        ("docker.io/library/busybox2", "docker.io/library/busybox", nil),
        ("example.com/foo:bar", "example.com/foo:bar", "example.com/foo:bar".count),
        ("example.com/foo:bar2", "example.com/foo:bar", nil),
        ("example.com/foo", "*", nil),
        // wildcards
        ("docker.io", "*.io", "docker.io".count),
        ("docker.io/foo", "*.com", nil),
        ("example.com/foo", "*.co", nil),
        ("example.com/foo", "*.example.com", nil),
        ("example.com/foo", "*.com", "example.com".count),
        ("yet.another.example.com/foo", "**.example.com", nil),
        ("yet.another.example.com/foo/bar", "*.another.example.com", "yet.another.example.com".count),
        ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.example.com", "another.example.com".count),
        ("example.net/namespace-ends-in.com/foo/bar/bbq:baz", "*.com", nil),
        ("another.example.com/namespace.com/foo/bar/bbq:baz", "*.namespace.com", nil),
        ("sub.example.com/foo/bar", "*.com", "sub.example.com".count),
        ("not.quite.simple-prefix.com:5000/with/path", "*.simple-prefix.com", "not.quite.simple-prefix.com".count),
        ("yet.another.example.com/foo/bar@" + digestA, "*.example.com", "yet.another.example.com".count),
    ]

    @Test(arguments: prefixCases)
    func prefixMatching(ref: String, prefix: String, expected: Int?) {
        #expect(RegistriesConf.matchingPrefixLength(ref, prefix) == expected)
    }

    static let lookupConf = """
    [[registry]]
    prefix = "example.com"
    location = "loc-host.com"
    [[registry]]
    prefix = "example.com/team"
    location = "loc-team.com/t"
    [[registry]]
    prefix = "example.com/team/app"
    location = "loc-app.com"
    [[registry]]
    prefix = "*.example.com"
    location = "loc-wild.com"
    [[registry]]
    prefix = "*.sub.example.com"
    [[registry]]
    location = "docker.io"
    """

    static let longest: [(String, String?)] = [
        ("example.com/team/app:1", "example.com/team/app"),
        ("example.com/team/app/sub:1", "example.com/team/app"),
        ("example.com/team/app2:1", "example.com/team"),
        ("example.com/team:1", "example.com/team"),
        ("example.com/other:1", "example.com"),
        ("example.com:5000/x:1", "example.com"),
        ("a.example.com/x:1", "*.example.com"),
        ("x.sub.example.com/y:1", "*.sub.example.com"),
        ("sub.example.com/y:1", "*.example.com"),
        ("busybox", "docker.io"),
        ("quay.io/x/y:1", nil),
    ]

    @Test(arguments: longest)
    func longestPrefixWins(reference: String, expected: String?) throws {
        let conf = try RegistriesConf.parse(Self.lookupConf)
        #expect(conf.registry(for: try Reference(parsing: reference))?.prefix == expected)
    }

    @Test func equalLengthPrefixesGoToTheFirstInPrefixOrder() throws {
        // Both are 9 bytes long and match; entries are kept sorted by prefix, and the first one wins.
        let conf = try RegistriesConf.parse("""
        [[registry]]
        location = "a.tie.com"
        [[registry]]
        prefix = "*.tie.com"
        location = "wild.tie.example"
        """)
        #expect(conf.registry(for: ref("a.tie.com/x:1"))?.prefix == "*.tie.com")
        #expect(conf.registry(for: ref("b.tie.com/x:1"))?.prefix == "*.tie.com")
    }

    static let rewrites: [(String, String, String, String)] = [
        ("docker.io", "mirror.example.com:5000", "busybox", "mirror.example.com:5000/library/busybox:latest"),
        ("docker.io", "mirror.example.com:5000", "docker.io/library/busybox", "mirror.example.com:5000/library/busybox:latest"),
        ("docker.io/library", "quay.io/libs", "docker.io/library/alpine:3.19", "quay.io/libs/alpine:3.19"),
        ("example.com/foo", "example.com/bar/baz", "example.com/foo/img@" + digestA, "example.com/bar/baz/img@" + digestA),
        ("*.example.com", "wild.local:5000", "a.b.example.com/ns/img:1", "wild.local:5000/ns/img:1"),
        ("*.example.com", "", "a.example.com/img:1", "a.example.com/img:1"),
        ("registry.com:5000", "other.com", "registry.com:5000/img:tag", "other.com/img:tag"),
        ("registry.com", "other.com/", "registry.com/img:tag", "other.com/img:tag"),
    ]

    @Test(arguments: rewrites)
    func locationRewrite(prefix: String, location: String, reference: String, expected: String) throws {
        var text = "[[registry]]\nprefix = \"\(prefix)\"\n"
        if !location.isEmpty { text += "location = \"\(location)\"\n" }
        let conf = try RegistriesConf.parse(text)
        let sources = try conf.pullSources(for: try Reference(parsing: reference))
        #expect(sources.count == 1)
        #expect(sources.last?.reference.string == expected)
        #expect(sources.last?.isMirror == false)
    }

    @Test func nonCanonicalRewriteIsAnError() throws {
        let conf = try RegistriesConf.parse("[[registry]]\nprefix = \"example.com\"\nlocation = \"docker.io\"\n", file: "r.conf")
        #expect(throws: CtrError.self) { try conf.pullSources(for: ref("example.com/foo:1")) }
    }

    @Test func noEntryMeansTheReferenceItself() throws {
        let conf = try RegistriesConf.parse("")
        let r = ref("quay.io/a/b:1")
        #expect(try conf.pullSources(for: r) == [PullSource(reference: r, location: "quay.io", insecure: false, isMirror: false)])
    }

    static let mirrorConf = """
    [[registry]]
    prefix = "docker.io"
    location = "primary.example.com"
    [[registry.mirror]]
    location = "all.mirror"
    [[registry.mirror]]
    location = "digest.mirror"
    pull-from-mirror = "digest-only"
    insecure = true
    [[registry.mirror]]
    location = "tag.mirror"
    pull-from-mirror = "tag-only"
    [[registry.mirror]]
    location = "explicit-all.mirror"
    pull-from-mirror = "all"

    [[registry]]
    prefix = "quay.io"
    location = "quay.io"
    mirror-by-digest-only = true
    [[registry.mirror]]
    location = "q1.mirror"
    [[registry.mirror]]
    location = "q2.mirror/ns"
    """

    static let mirrorCases: [(String, [String])] = [
        ("docker.io/library/busybox:1", [
            "all.mirror/library/busybox:1", "tag.mirror/library/busybox:1",
            "explicit-all.mirror/library/busybox:1", "primary.example.com/library/busybox:1",
        ]),
        ("docker.io/library/busybox@" + digestA, [
            "all.mirror/library/busybox@" + digestA, "digest.mirror/library/busybox@" + digestA,
            "explicit-all.mirror/library/busybox@" + digestA, "primary.example.com/library/busybox@" + digestA,
        ]),
        ("docker.io/library/busybox:1@" + digestA, [
            "all.mirror/library/busybox:1@" + digestA, "digest.mirror/library/busybox:1@" + digestA,
            "explicit-all.mirror/library/busybox:1@" + digestA, "primary.example.com/library/busybox:1@" + digestA,
        ]),
        ("quay.io/a/b:1", ["quay.io/a/b:1"]),
        ("quay.io/a/b@" + digestA, ["q1.mirror/a/b@" + digestA, "q2.mirror/ns/a/b@" + digestA, "quay.io/a/b@" + digestA]),
    ]

    @Test(arguments: mirrorCases)
    func mirrorOrderAndDigestRules(reference: String, expected: [String]) throws {
        let conf = try RegistriesConf.parse(Self.mirrorConf)
        let sources = try conf.pullSources(for: ref(reference))
        #expect(sources.map(\.reference.string) == expected)
        #expect(sources.map(\.isMirror) == expected.indices.map { $0 < expected.count - 1 })
        // Only digest.mirror is insecure.
        #expect(sources.map(\.insecure) == expected.map { $0.hasPrefix("digest.mirror") })
        // Entry-level API gives the same order.
        let entry = try #require(conf.registry(for: ref(reference)))
        #expect(try entry.pullSources(for: ref(reference)).map(\.reference.string) == expected)
    }

    static let accessConf = """
    [[registry]]
    location = "blocked.example.com"
    blocked = true
    [[registry]]
    prefix = "docker.io"
    location = "docker.io"
    blocked = true
    [[registry.mirror]]
    location = "mirror.local:5000"
    [[registry]]
    location = "insecure.example.com:5000"
    insecure = true
    [[registry]]
    prefix = "partly.example.com/private"
    location = "partly.example.com/private"
    blocked = true
    """

    static let blockedCases: [(String, Bool)] = [
        ("blocked.example.com/x:1", true),
        ("partly.example.com/private/x:1", true),
        ("partly.example.com/public/x:1", false),
        ("quay.io/x:1", false),
        ("busybox", true),
    ]

    @Test(arguments: blockedCases)
    func blocked(reference: String, expected: Bool) throws {
        let conf = try RegistriesConf.parse(Self.accessConf)
        #expect(conf.isBlocked(try Reference(parsing: reference)) == expected)
    }

    static let insecureCases: [(String, Bool)] = [
        ("insecure.example.com:5000", true),
        ("insecure.example.com", false),
        ("insecure.example.com:50001", false),
        ("quay.io", false),
    ]

    @Test(arguments: insecureCases)
    func insecureHosts(host: String, expected: Bool) throws {
        let conf = try RegistriesConf.parse(Self.accessConf)
        #expect(conf.isInsecure(host: host) == expected)
    }

    @Test func blockedRegistryStillListsMirrors() throws {
        let conf = try RegistriesConf.parse(Self.accessConf)
        let sources = try conf.pullSources(for: ref("docker.io/library/busybox:1"))
        #expect(sources.map(\.reference.string) == ["mirror.local:5000/library/busybox:1", "docker.io/library/busybox:1"])
        #expect(sources.map(\.blocked) == [false, true])
        #expect(sources.map(\.isMirror) == [true, false])
    }
}

// MARK: - Loading files and drop-ins

@Suite struct RegistriesConfLoadTests {
    /// System file, system drop-ins, user drop-ins under a temp root.
    private func layout() -> (TempDir, system: String, systemDir: String, home: String) {
        let t = TempDir()
        let system = t.write("etc/registries.conf", """
        unqualified-search-registries = ["sys.example.com"]
        [[registry]]
        location = "sys-only.example.com"
        insecure = true
        [[registry]]
        prefix = "shared.example.com"
        location = "from-system.example.com"
        [aliases]
        gone = "sys.example.com/gone"
        kept = "sys.example.com/kept"
        """)
        t.write("etc/registries.conf.d/10-a.conf", """
        [[registry]]
        prefix = "shared.example.com"
        location = "from-dropin.example.com"
        [aliases]
        gone = ""
        """)
        t.write("etc/registries.conf.d/20-b.conf", "unqualified-search-registries = [\"dropin.example.com\"]\nshort-name-mode = \"disabled\"\n")
        t.write("etc/registries.conf.d/30-ignored.txt", "this is not toml [[[")
        t.dir("etc/registries.conf.d/sub.conf")
        t.write("etc/registries.conf.d/sub.conf/nested.conf", "this is not toml [[[")
        t.write("home/.config/containers/registries.conf.d/05-user.conf", "[[registry]]\nlocation = \"user-dropin.example.com\"\n")
        return (t, system, t.path("etc/registries.conf.d"), t.path("home"))
    }

    @Test func systemFileThenDropInsThenUserDropIns() throws {
        let (t, system, systemDir, home) = layout()
        defer { t.cleanup() }
        let conf = try RegistriesConf.loadDefault(environment: [:], home: home, systemFile: system, systemDropInDirectory: systemDir)
        #expect(conf.files == [system, t.path("etc/registries.conf.d/10-a.conf"), t.path("etc/registries.conf.d/20-b.conf"),
                               t.path("home/.config/containers/registries.conf.d/05-user.conf")])
        #expect(conf.registry(matching: "shared.example.com/x")?.location == "from-dropin.example.com")
        #expect(conf.registry(matching: "sys-only.example.com/x")?.insecure == true)
        #expect(conf.registry(matching: "user-dropin.example.com/x") != nil)
        #expect(conf.unqualifiedSearchRegistries == ["dropin.example.com"])
        #expect(conf.unqualifiedSearchRegistriesOrigin == t.path("etc/registries.conf.d/20-b.conf"))
        #expect(conf.shortNameMode == .disabled)
        #expect(conf.aliases == ["kept": "sys.example.com/kept"])
        #expect(conf.registries.map(\.prefix) == conf.registries.map(\.prefix).sorted())
    }

    @Test func userFileReplacesSystemFileAndSystemDropIns() throws {
        let (t, system, systemDir, home) = layout()
        defer { t.cleanup() }
        let user = t.write("home/.config/containers/registries.conf", "unqualified-search-registries = [\"user.example.com\"]\n")
        let conf = try RegistriesConf.loadDefault(environment: [:], home: home, systemFile: system, systemDropInDirectory: systemDir)
        #expect(conf.files == [user, t.path("home/.config/containers/registries.conf.d/05-user.conf")])
        #expect(conf.registry(matching: "sys-only.example.com/x") == nil)
        #expect(conf.registry(matching: "shared.example.com/x") == nil)
        #expect(conf.registry(matching: "user-dropin.example.com/x") != nil)
        #expect(conf.unqualifiedSearchRegistries == ["user.example.com"])
        #expect(conf.shortNameMode == .permissive)
    }

    @Test func containersRegistriesConfNamesTheMainFile() throws {
        let (t, system, systemDir, home) = layout()
        defer { t.cleanup() }
        t.write("home/.config/containers/registries.conf", "unqualified-search-registries = [\"user.example.com\"]\n")
        let custom = t.write("custom.conf", "[[registry]]\nlocation = \"custom.example.com\"\n")
        let conf = try RegistriesConf.loadDefault(environment: ["CONTAINERS_REGISTRIES_CONF": custom], home: home,
                                                  systemFile: system, systemDropInDirectory: systemDir)
        #expect(conf.files.first == custom)
        #expect(conf.files.count == 4)  // drop-ins still apply, as in containers/image
        #expect(conf.registry(matching: "custom.example.com/x") != nil)
        #expect(conf.registry(matching: "sys-only.example.com/x") == nil)
        #expect(conf.unqualifiedSearchRegistries == ["dropin.example.com"])
    }

    @Test func missingExplicitFileIsAnError() {
        let (t, system, systemDir, home) = layout()
        defer { t.cleanup() }
        let missing = t.path("nope.conf")
        do {
            _ = try RegistriesConf.loadDefault(environment: ["CONTAINERS_REGISTRIES_CONF": missing], home: home,
                                               systemFile: system, systemDropInDirectory: systemDir)
            Issue.record("expected an error")
        } catch let e as CtrError {
            #expect(e.file == missing)
            #expect(e.description.contains("no such file"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func missingDefaultFilesAreAnEmptyConfiguration() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let conf = try RegistriesConf.loadDefault(environment: [:], home: t.path("home"), systemFile: t.path("no/registries.conf"),
                                                  systemDropInDirectory: t.path("no/registries.conf.d"))
        #expect(conf.registries.isEmpty)
        #expect(conf.files.isEmpty)
    }

    @Test func dropInErrorsNameTheDropIn() {
        let t = TempDir()
        defer { t.cleanup() }
        let main = t.write("r.conf", "unqualified-search-registries = [\"docker.io\"]\n")
        let dropIn = t.write("d/1.conf", "[registries.block]\nregistries = [\"x.example.com\"]\n")
        do {
            _ = try RegistriesConf.load(RegistriesConfSources(mainFile: main, dropInDirectories: [t.path("d")]))
            Issue.record("expected an error")
        } catch let e as CtrError {
            #expect(e.description.hasPrefix(dropIn + ":2: "))
            #expect(e.message.contains("v2 format"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    static let sourceCases: [([String: String], Bool, String, Bool, [String])] = [
        ([:], false, "etc/registries.conf", false, ["etc/registries.conf.d", "home/.config/containers/registries.conf.d"]),
        ([:], true, "home/.config/containers/registries.conf", false, ["home/.config/containers/registries.conf.d"]),
        (["CONTAINERS_REGISTRIES_CONF": "/x.conf"], true, "/x.conf", true, ["etc/registries.conf.d", "home/.config/containers/registries.conf.d"]),
        (["REGISTRIES_CONFIG_PATH": "/legacy.conf"], false, "/legacy.conf", true, ["etc/registries.conf.d", "home/.config/containers/registries.conf.d"]),
        (["CONTAINERS_REGISTRIES_CONF": "", "REGISTRIES_CONFIG_PATH": "/legacy.conf"], false, "etc/registries.conf", false,
         ["etc/registries.conf.d", "home/.config/containers/registries.conf.d"]),
        (["XDG_CONFIG_HOME": "/elsewhere"], false, "etc/registries.conf", false, ["etc/registries.conf.d", "home/.config/containers/registries.conf.d"]),
    ]

    @Test(arguments: sourceCases)
    func defaultSources(env: [String: String], userFile: Bool, main: String, required: Bool, dirs: [String]) {
        let t = TempDir()
        defer { t.cleanup() }
        if userFile { t.write("home/.config/containers/registries.conf", "") }
        let s = RegistriesConf.defaultSources(environment: env, home: t.path("home"), systemFile: t.path("etc/registries.conf"),
                                              systemDropInDirectory: t.path("etc/registries.conf.d"))
        #expect(s == RegistriesConfSources(mainFile: t.path(main), mainFileRequired: required, dropInDirectories: dirs.map(t.path)))
    }

    @Test func loadPathsMainThenDropIns() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let a = t.write("a.conf", "[[registry]]\nlocation = \"a.example.com\"\n")
        let b = t.write("b.conf", "[[registry]]\nprefix = \"a.example.com\"\nlocation = \"b.example.com\"\n")
        let conf = try RegistriesConf.load(paths: [t.path("missing.conf"), a, b, t.path("gone.conf")])
        #expect(conf.files == [a, b])
        #expect(conf.registry(matching: "a.example.com/x")?.location == "b.example.com")
    }
}

// MARK: - Auth files

@Suite struct AuthFileTests {
    private func env(_ t: TempDir, _ vars: [String: String]) -> AuthEnvironment {
        AuthEnvironment(environment: vars.mapValues { $0.isEmpty || $0.hasPrefix("/") ? $0 : t.path($0) }, home: t.path("home"), uid: 4242)
    }

    static let pathCases: [([String: String], [String], [Bool])] = [
        (["REGISTRY_AUTH_FILE": "/x/auth.json", "XDG_RUNTIME_DIR": "run"], ["/x/auth.json"], [false]),
        (["XDG_RUNTIME_DIR": "run"], ["run/containers/auth.json", "home/.config/containers/auth.json", "home/.docker/config.json", "home/.dockercfg"],
         [false, false, false, true]),
        (["XDG_RUNTIME_DIR": "missing"], ["home/.config/containers/auth.json", "home/.docker/config.json", "home/.dockercfg"], [false, false, true]),
        ([:], ["/run/containers/4242/auth.json", "home/.config/containers/auth.json", "home/.docker/config.json", "home/.dockercfg"],
         [false, false, false, true]),
        (["XDG_CONFIG_HOME": "cfg", "DOCKER_CONFIG": "dock", "XDG_RUNTIME_DIR": "run"],
         ["run/containers/auth.json", "cfg/containers/auth.json", "dock/config.json", "home/.dockercfg"], [false, false, false, true]),
        (["REGISTRY_AUTH_FILE": "", "XDG_RUNTIME_DIR": "run"],
         ["run/containers/auth.json", "home/.config/containers/auth.json", "home/.docker/config.json", "home/.dockercfg"], [false, false, false, true]),
    ]

    @Test(arguments: pathCases)
    func searchPaths(vars: [String: String], expected: [String], legacy: [Bool]) {
        let t = TempDir()
        defer { t.cleanup() }
        t.dir("run")
        let paths = AuthFile.searchPaths(env: env(t, vars))
        #expect(paths.map(\.path) == expected.map(t.path))
        #expect(paths.map(\.legacyFormat) == legacy)
    }

    /// One entry per file, with the same registry in several files.
    private func priorityLayout() -> TempDir {
        let t = TempDir()
        t.write("run/containers/auth.json", """
        {"auths": {"a.example.com": {"auth": "\(b64("runA:pw"))"}, "g.example.com": {}}}
        """)
        t.write("home/.config/containers/auth.json", """
        {"auths": {"a.example.com": {"auth": "\(b64("cfgA:pw"))"}, "b.example.com": {"auth": "\(b64("cfgB:pw"))"},
                   "g.example.com": {"auth": "\(b64("cfgG:pw"))"}}}
        """)
        t.write("home/.docker/config.json", """
        {"auths": {"b.example.com": {"auth": "\(b64("dockB:pw"))"}, "c.example.com": {"auth": "\(b64("dockC:pw"))"}}}
        """)
        t.write("dock/config.json", """
        {"auths": {"c.example.com": {"auth": "\(b64("dockerConfigC:pw"))"}}}
        """)
        t.write("home/.dockercfg", """
        {"d.example.com": {"auth": "\(b64("legD:pw"))", "email": "x@example.com"}, "https://e.example.com/v1/": {"auth": "\(b64("legE:pw"))"}}
        """)
        return t
    }

    static let priorityCases: [([String: String], String, String?)] = [
        (["XDG_RUNTIME_DIR": "run"], "a.example.com", "runA"),
        (["XDG_RUNTIME_DIR": "run"], "b.example.com", "cfgB"),
        (["XDG_RUNTIME_DIR": "run"], "c.example.com", "dockC"),
        (["XDG_RUNTIME_DIR": "run"], "d.example.com", "legD"),
        (["XDG_RUNTIME_DIR": "run"], "e.example.com", "legE"),
        (["XDG_RUNTIME_DIR": "run"], "f.example.com", nil),
        (["XDG_RUNTIME_DIR": "run"], "g.example.com", "cfgG"),  // an empty entry falls through to the next file
        (["XDG_RUNTIME_DIR": "missing"], "a.example.com", "cfgA"),
        (["XDG_RUNTIME_DIR": "run", "DOCKER_CONFIG": "dock"], "c.example.com", "dockerConfigC"),
        (["XDG_RUNTIME_DIR": "run", "DOCKER_CONFIG": "dock"], "b.example.com", "cfgB"),
        (["XDG_RUNTIME_DIR": "run", "REGISTRY_AUTH_FILE": "home/.docker/config.json"], "a.example.com", nil),
        (["XDG_RUNTIME_DIR": "run", "REGISTRY_AUTH_FILE": "home/.docker/config.json"], "b.example.com", "dockB"),
        (["XDG_RUNTIME_DIR": "run", "REGISTRY_AUTH_FILE": "home/.docker/config.json"], "d.example.com", nil),
    ]

    @Test(arguments: priorityCases)
    func readOrder(vars: [String: String], registry: String, expectedUser: String?) throws {
        let t = priorityLayout()
        defer { t.cleanup() }
        let c = try AuthFile.credentials(for: registry, reference: nil, env: env(t, vars))
        #expect(c?.username == expectedUser)
        if expectedUser != nil { #expect(c?.password == "pw") }
    }

    static let urlKeyCases: [(String, String, Bool)] = [
        ("https://index.docker.io/v1/", "docker.io", true),
        ("index.docker.io", "docker.io", true),
        ("registry-1.docker.io", "docker.io", true),
        ("docker.io", "docker.io", true),
        ("https://index.docker.io/v1/", "index.docker.io", true),
        ("http://localhost:5000", "localhost:5000", true),
        ("https://quay.io/v2/", "quay.io", true),
        ("example.com:5000/v2/", "example.com:5000", true),
        ("example.com:5000/v1/", "example.com:5000", true),
        ("quay.io", "https://quay.io", true),
        ("example.com:5000", "example.com", false),
        ("https://example.com:5000", "example.com", false),
        ("example.com/ns", "example.com", false),
        ("https://other.com/v1/", "example.com", false),
        ("docker.io", "quay.io", false),
    ]

    @Test(arguments: urlKeyCases)
    func urlFormKeys(key: String, registry: String, found: Bool) throws {
        let t = TempDir()
        defer { t.cleanup() }
        let file = t.write("auth.json", "{\"auths\": {\"\(key)\": {\"auth\": \"\(b64("u:p"))\"}}}")
        let c = try AuthFile.credentials(for: registry, reference: nil, env: env(t, ["REGISTRY_AUTH_FILE": file]))
        #expect((c != nil) == found)
        if found { #expect(c == Credentials(username: "u", password: "p")) }
    }

    static let repoKeyCases: [(String, String?)] = [
        ("quay.io/ns/repo:1", "C"),
        ("quay.io/ns/other:1", "B"),
        ("quay.io/ns/repo/sub:1", "C"),
        ("quay.io/nsx/repo:1", "A"),
        ("quay.io/other/x:1", "A"),
        ("busybox", "L"),
        ("docker.io/team/app:1", nil),
    ]

    @Test(arguments: repoKeyCases)
    func perRepositoryKeys(reference: String, expectedUser: String?) throws {
        let t = TempDir()
        defer { t.cleanup() }
        let file = t.write("auth.json", """
        {"auths": {"quay.io": {"auth": "\(b64("A:pw"))"}, "quay.io/ns": {"auth": "\(b64("B:pw"))"},
                   "quay.io/ns/repo": {"auth": "\(b64("C:pw"))"}, "docker.io/library": {"auth": "\(b64("L:pw"))"}}}
        """)
        let r = try Reference(parsing: reference)
        let c = try AuthFile.credentials(for: r.registry, reference: r, env: env(t, ["REGISTRY_AUTH_FILE": file]))
        #expect(c?.username == expectedUser)
    }

    @Test func registryLevelLookupIgnoresNamespaceKeys() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let file = t.write("auth.json", """
        {"auths": {"quay.io": {"auth": "\(b64("A:pw"))"}, "quay.io/ns": {"auth": "\(b64("B:pw"))"}}}
        """)
        let e = env(t, ["REGISTRY_AUTH_FILE": file])
        #expect(try AuthFile.credentials(for: "quay.io", reference: nil, env: e)?.username == "A")
        // A reference on another registry does not select keys.
        #expect(try AuthFile.credentials(for: "quay.io", reference: ref("docker.io/library/busybox:1"), env: e)?.username == "A")
    }

    static let entryCases: [(String, Credentials?)] = [
        (#"{"auth": "\#(b64("user:"))", "identitytoken": "tok"}"#, Credentials(username: "user", password: "", identityToken: "tok")),
        (#"{"identitytoken": "tok"}"#, nil),  // containers/image ignores a token without "auth"
        (#"{"auth": "\#(b64("user:pa:ss\u{0}\u{0}"))"}"#, Credentials(username: "user", password: "pa:ss")),
        (#"{"auth": "\#(b64("nocolon"))"}"#, nil),
        (#"{"auth": ""}"#, nil),
    ]

    @Test(arguments: entryCases)
    func entryDecoding(entry: String, expected: Credentials?) throws {
        let t = TempDir()
        defer { t.cleanup() }
        let file = t.write("auth.json", "{\"auths\": {\"quay.io\": \(entry)}}")
        #expect(try AuthFile.credentials(for: "quay.io", reference: nil, env: env(t, ["REGISTRY_AUTH_FILE": file])) == expected)
    }

    static let badFiles: [(String, String)] = [
        ("{ not json", "invalid JSON"),
        ("", "invalid JSON"),
        ("[1, 2]", "top level must be an object"),
        (#"{"auths": []}"#, "\"auths\" must be a JSON object"),
        (#"{"auths": {"quay.io": {"auth": "%%%"}}}"#, "not valid base64"),
        (#"{"auths": {"quay.io": {"auth": 5}}}"#, "must be a string"),
    ]

    @Test(arguments: badFiles)
    func badFilesAreOneLineErrorsNamingTheFile(content: String, fragment: String) {
        let t = TempDir()
        defer { t.cleanup() }
        let file = t.write("auth.json", content)
        do {
            _ = try AuthFile.credentials(for: "quay.io", reference: nil, env: env(t, ["REGISTRY_AUTH_FILE": file]))
            Issue.record("expected an error")
        } catch {
            let text = "\(error)"
            #expect(text.contains(file), "\(text)")
            #expect(text.contains(fragment), "\(text)")
            #expect(!text.contains("\n"))
        }
    }

    // MARK: writing

    static let loginKeys: [(String, String)] = [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://localhost:5000/", "localhost:5000"),
        ("quay.io/ns/repo", "quay.io/ns/repo"),
        ("quay.io/", "quay.io"),
        ("localhost:5000/ns", "localhost:5000/ns"),
    ]

    @Test(arguments: loginKeys)
    func loginKeyNormalisation(input: String, expected: String) throws {
        #expect(try AuthFile.loginKey(input) == expected)
    }

    @Test(arguments: ["quay.io/ns/repo:tag", "quay.io/x@" + digestA, "", "https://"])
    func badLoginKeys(input: String) {
        #expect(throws: CtrError.self) { try AuthFile.loginKey(input) }
    }

    @Test func storeCreatesPrivateFileAndDirectories() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.path("new/dir/auth.json")
        try AuthFile.store(Credentials(username: "u", password: "p"), for: "https://index.docker.io/v1/", path: path)
        #expect(mode(of: path) == 0o600)
        #expect(mode(of: t.path("new/dir")) == 0o700)
        #expect(mode(of: t.path("new")) == 0o700)
        let auths = jsonObject(path)["auths"] as? [String: Any]
        #expect(auths?.keys.sorted() == ["docker.io"])
        #expect((auths?["docker.io"] as? [String: Any])?["auth"] as? String == b64("u:p"))
        let back = try AuthFile.credentials(for: "docker.io", reference: nil, env: env(t, ["REGISTRY_AUTH_FILE": path]))
        #expect(back == Credentials(username: "u", password: "p"))
        // No temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.path("new/dir")) == ["auth.json"])
    }

    private static let richFile = """
    {
      "auths": {
        "quay.io": {"auth": "\(b64("old:old"))", "email": "x@example.com", "identitytoken": "stale"},
        "other.io": {"auth": "\(b64("o:o"))"},
        "docker.io": {"auth": "\(b64("d:d"))"},
        "https://index.docker.io/v1/": {"auth": "\(b64("d2:d2"))"}
      },
      "credHelpers": {"gcr.io": "gcloud"},
      "credsStore": "desktop",
      "HttpHeaders": {"User-Agent": "x"},
      "experimental": true,
      "num": 3
    }
    """

    private func checkOtherKeysKept(_ path: String) {
        let o = jsonObject(path)
        #expect(o["credHelpers"] as? [String: String] == ["gcr.io": "gcloud"])
        #expect(o["credsStore"] as? String == "desktop")
        #expect(o["HttpHeaders"] as? [String: String] == ["User-Agent": "x"])
        #expect(o["experimental"] as? Bool == true)
        #expect(o["num"] as? Int == 3)
        #expect(mode(of: path) == 0o600)
    }

    @Test func storePreservesEverythingElse() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.write("auth.json", Self.richFile, mode: 0o644)
        try AuthFile.store(Credentials(username: "new", password: "pw"), for: "quay.io", path: path)
        checkOtherKeysKept(path)
        let auths = try #require(jsonObject(path)["auths"] as? [String: Any])
        #expect(auths.keys.sorted() == ["docker.io", "https://index.docker.io/v1/", "other.io", "quay.io"])
        let quay = try #require(auths["quay.io"] as? [String: Any])
        #expect(quay["auth"] as? String == b64("new:pw"))
        #expect(quay["email"] as? String == "x@example.com")
        #expect(quay["identitytoken"] == nil)
        #expect((auths["other.io"] as? [String: Any])?["auth"] as? String == b64("o:o"))
    }

    @Test func storeIdentityToken() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.path("auth.json")
        try AuthFile.store(Credentials(username: "u", password: "", identityToken: "tok"), for: "quay.io", path: path)
        let e = env(t, ["REGISTRY_AUTH_FILE": path])
        #expect(try AuthFile.credentials(for: "quay.io", reference: nil, env: e) == Credentials(username: "u", password: "", identityToken: "tok"))
        try AuthFile.store(Credentials(username: "u", password: "p"), for: "quay.io", path: path)
        #expect(try AuthFile.credentials(for: "quay.io", reference: nil, env: e) == Credentials(username: "u", password: "p"))
    }

    @Test func storeRefusesARegistryKeptByAHelper() {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.write("auth.json", Self.richFile)
        #expect(throws: CtrError.self) { try AuthFile.store(Credentials(username: "u", password: "p"), for: "gcr.io", path: path) }
    }

    @Test func removeDropsTheRegistryAndItsURLForms() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.write("auth.json", Self.richFile, mode: 0o644)
        #expect(try AuthFile.remove(registry: "docker.io", path: path))
        checkOtherKeysKept(path)
        let auths = try #require(jsonObject(path)["auths"] as? [String: Any])
        #expect(auths.keys.sorted() == ["other.io", "quay.io"])
        #expect((auths["quay.io"] as? [String: Any])?["email"] as? String == "x@example.com")
        #expect(try AuthFile.remove(registry: "docker.io", path: path) == false)
        #expect(try AuthFile.remove(registry: "quay.io", path: t.path("missing.json")) == false)
        #expect(try AuthFile.remove(registry: "https://quay.io", path: path))
        #expect((jsonObject(path)["auths"] as? [String: Any])?.keys.sorted() == ["other.io"])
    }

    @Test func removeAllKeepsOtherKeys() throws {
        let t = TempDir()
        defer { t.cleanup() }
        let path = t.write("auth.json", Self.richFile, mode: 0o644)
        try AuthFile.removeAll(path: path)
        checkOtherKeysKept(path)
        #expect((jsonObject(path)["auths"] as? [String: Any])?.isEmpty == true)
        try AuthFile.removeAll(path: t.path("missing.json"))
        #expect(!FileManager.default.fileExists(atPath: t.path("missing.json")))
    }

    static let writePathCases: [([String: String], String)] = [
        (["REGISTRY_AUTH_FILE": "/custom/auth.json", "XDG_RUNTIME_DIR": "run"], "/custom/auth.json"),
        (["XDG_RUNTIME_DIR": "run"], "run/containers/auth.json"),
        (["XDG_RUNTIME_DIR": "missing"], "home/.config/containers/auth.json"),
        ([:], "home/.config/containers/auth.json"),
        (["XDG_CONFIG_HOME": "cfg"], "cfg/containers/auth.json"),
        (["REGISTRY_AUTH_FILE": "", "XDG_RUNTIME_DIR": "run"], "run/containers/auth.json"),
    ]

    @Test(arguments: writePathCases)
    func defaultWritePath(vars: [String: String], expected: String) {
        let t = TempDir()
        defer { t.cleanup() }
        t.dir("run")
        #expect(AuthFile.defaultWritePath(env: env(t, vars)) == t.path(expected))
    }

    /// root with no runtime dir writes where `podman login` does, which is also read first
    @Test func rootWithoutRuntimeDirWritesUnderRunContainers() {
        let t = TempDir()
        defer { t.cleanup() }
        let root = AuthEnvironment(environment: [:], home: t.path("home"), uid: 0)
        #expect(AuthFile.defaultWritePath(env: root) == "/run/containers/0/auth.json")
        #expect(AuthFile.searchPaths(env: root).first?.path == "/run/containers/0/auth.json")
        let withRuntime = AuthEnvironment(environment: ["XDG_RUNTIME_DIR": t.path("run")], home: t.path("home"), uid: 0)
        t.dir("run")
        #expect(AuthFile.defaultWritePath(env: withRuntime) == t.path("run/containers/auth.json"))
    }

    // MARK: credential helpers

    private static let fakeHelper = """
    #!/bin/sh
    [ "$1" = "get" ] || { echo "unexpected action $1" >&2; exit 3; }
    server=$(cat)
    case "$server" in
      fail.example.com) echo "boom: keychain locked"; exit 1 ;;
      missing.example.com) echo "credentials not found in native keychain"; exit 1 ;;
      token.example.com) printf '{"ServerURL":"%s","Username":"<token>","Secret":"tok-123"}' "$server" ;;
      *) printf '{"ServerURL":"%s","Username":"user@%s","Secret":"secret-%s"}' "$server" "$server" "$FAKE_SUFFIX" ;;
    esac
    """

    private func helperLayout(_ firstFile: String) -> (TempDir, AuthEnvironment) {
        let t = TempDir()
        t.write("bin/docker-credential-fake", Self.fakeHelper, mode: 0o755)
        t.write("run/containers/auth.json", firstFile)
        t.write("home/.config/containers/auth.json", """
        {"auths": {"missing.example.com": {"auth": "\(b64("file2:pw2"))"}, "absent.example.com": {"auth": "\(b64("file2a:pw"))"}}}
        """)
        let e = AuthEnvironment(environment: ["PATH": t.path("bin") + ":/usr/bin:/bin", "FAKE_SUFFIX": "X", "XDG_RUNTIME_DIR": t.path("run")],
                                home: t.path("home"), uid: 4242)
        return (t, e)
    }

    static let credHelperCases: [(String, Credentials?)] = [
        ("helped.example.com", Credentials(username: "user@helped.example.com", password: "secret-X")),
        ("token.example.com", Credentials(username: "", password: "", identityToken: "tok-123")),
        ("missing.example.com", Credentials(username: "file2", password: "pw2")),  // not found: next file
        ("absent.example.com", Credentials(username: "file2a", password: "pw")),  // helper not installed: next file
        ("docker.io", Credentials(username: "user@https://index.docker.io/v1/", password: "secret-X")),
        ("nothing.example.com", nil),
    ]

    @Test(arguments: credHelperCases)
    func credHelpers(registry: String, expected: Credentials?) throws {
        let (t, e) = helperLayout("""
        {"credHelpers": {"helped.example.com": "fake", "fail.example.com": "fake", "missing.example.com": "fake",
                         "token.example.com": "fake", "absent.example.com": "nonexistent", "https://index.docker.io/v1/": "fake"},
         "auths": {"missing.example.com": {"auth": "\(b64("shadowed:pw"))"}}}
        """)
        defer { t.cleanup() }
        #expect(try AuthFile.credentials(for: registry, reference: nil, env: e) == expected)
    }

    @Test func credHelperFailureNamesTheHelper() {
        let (t, e) = helperLayout(#"{"credHelpers": {"fail.example.com": "fake"}}"#)
        defer { t.cleanup() }
        do {
            _ = try AuthFile.credentials(for: "fail.example.com", reference: nil, env: e)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("docker-credential-fake"))
            #expect("\(error)".contains("boom: keychain locked"))
        }
    }

    static let credsStoreCases: [(String, Credentials?)] = [
        ("docker.io", Credentials(username: "user@https://index.docker.io/v1/", password: "secret-X")),
        ("quay.io", Credentials(username: "user@quay.io", password: "secret-X")),
        ("missing.example.com", Credentials(username: "samefile", password: "pw")),  // store has nothing: this file's auths
    ]

    @Test(arguments: credsStoreCases)
    func credsStore(registry: String, expected: Credentials?) throws {
        let (t, e) = helperLayout("""
        {"credsStore": "fake", "auths": {"https://index.docker.io/v1/": {}, "missing.example.com": {"auth": "\(b64("samefile:pw"))"}}}
        """)
        defer { t.cleanup() }
        #expect(try AuthFile.credentials(for: registry, reference: nil, env: e) == expected)
    }

    @Test func missingCredsStoreHelperIsNotAnError() throws {
        let (t, e) = helperLayout(#"{"credsStore": "desktop", "auths": {"https://index.docker.io/v1/": {}}}"#)
        defer { t.cleanup() }
        #expect(try AuthFile.credentials(for: "docker.io", reference: nil, env: e) == nil)
    }

    @Test func registriesConfCredentialHelpers() throws {
        let (t, e) = helperLayout(#"{"auths": {"fail.example.com": {"auth": "\#(b64("fromfile:pw"))"}}}"#)
        defer { t.cleanup() }
        #expect(try AuthFile.credentials(for: "x.example.com", env: e, helpers: ["fake"]) == Credentials(username: "user@x.example.com", password: "secret-X"))
        #expect(try AuthFile.credentials(for: "fail.example.com", env: e, helpers: ["nonexistent", "containers-auth.json"])?.username == "fromfile")
        // A failing helper is reported only when no later helper has credentials.
        #expect(try AuthFile.credentials(for: "fail.example.com", env: e, helpers: ["fake", "containers-auth.json"])?.username == "fromfile")
        #expect(throws: CtrError.self) { try AuthFile.credentials(for: "fail.example.com", env: e, helpers: ["fake"]) }
    }
}

// MARK: - certs.d

@Suite struct CertsDirTests {
    private func layout() -> TempDir {
        let t = TempDir()
        for f in ["ca.crt", "z-extra.crt", "client.cert", "client.key", "README", "b.cert", "b.key"] {
            t.write("b/reg.example.com:5000/\(f)", "-----BEGIN \(f)-----\n")
        }
        t.dir("b/reg.example.com:5000/dir.crt")
        t.write("a/both.example.com/ca.crt", "A\n")
        t.write("b/both.example.com/other.crt", "B\n")
        t.write("a/badcert.example.com/client.cert", "x")
        t.write("a/badkey.example.com/client.key", "x")
        return t
    }

    @Test func readsCAsAndClientPair() throws {
        let t = layout()
        defer { t.cleanup() }
        let m = try CertsDir.material(for: "reg.example.com:5000", dirs: [t.path("a"), t.path("b")])
        let d = t.path("b/reg.example.com:5000")
        #expect(m == TLSMaterial(caFiles: [d + "/ca.crt", d + "/z-extra.crt"], clientCert: d + "/b.cert", clientKey: d + "/b.key"))
        #expect(try m.caBundle() == Data("-----BEGIN ca.crt-----\n-----BEGIN z-extra.crt-----\n".utf8))
    }

    @Test func firstDirectoryWinsWithoutMerging() throws {
        let t = layout()
        defer { t.cleanup() }
        let m = try CertsDir.material(for: "both.example.com", dirs: [t.path("a"), t.path("b")])
        #expect(m == TLSMaterial(caFiles: [t.path("a/both.example.com/ca.crt")]))
        let reversed = try CertsDir.material(for: "both.example.com", dirs: [t.path("b"), t.path("a")])
        #expect(reversed.caFiles == [t.path("b/both.example.com/other.crt")])
    }

    @Test func nothingConfigured() throws {
        let t = layout()
        defer { t.cleanup() }
        let m = try CertsDir.material(for: "nothing.example.com", dirs: [t.path("a"), t.path("b"), t.path("missing")])
        #expect(m.isEmpty)
        #expect(try m.caBundle() == nil)
    }

    static let broken: [(String, String)] = [
        ("badcert.example.com", "missing key client.key for client certificate"),
        ("badkey.example.com", "missing client certificate client.cert for key"),
    ]

    @Test(arguments: broken)
    func unpairedFilesAreErrors(host: String, fragment: String) {
        let t = layout()
        defer { t.cleanup() }
        do {
            _ = try CertsDir.material(for: host, dirs: [t.path("a")])
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains(fragment), "\(error)")
            #expect("\(error)".contains(t.path("a/\(host)/")))
        }
    }

    @Test func certDirReplacesTheSearch() throws {
        let t = layout()
        defer { t.cleanup() }
        let m = try CertsDir.material(for: "both.example.com", dirs: [t.path("a")], certDir: t.path("b/reg.example.com:5000"))
        #expect(m.clientCert == t.path("b/reg.example.com:5000/b.cert"))
        #expect(m.caFiles.count == 2)
    }

    @Test(arguments: ["../etc", "", "a/b", ".hidden"])
    func invalidHosts(host: String) {
        #expect(throws: CtrError.self) { try CertsDir.material(for: host, dirs: ["/nonexistent"]) }
    }

    @Test func defaultDirsInContainersImageOrder() {
        #expect(CertsDir.defaultDirs(home: "/h") == ["/h/.config/containers/certs.d", "/etc/containers/certs.d", "/etc/docker/certs.d"])
    }
}
