import Errors
import Foundation
import TOML

// registries.conf(5) as containers/image (podman, skopeo, buildah) reads it: which files, in which
// order, how drop-ins merge, how a reference finds its [[registry]] (longest prefix, `*.` wildcards),
// how the prefix is rewritten to a location, and which mirrors a pull tries first.
//
// The file format is TOML (the TOML target reads it).

// MARK: - Errors

// MARK: - Model

/// How short names ("busybox") may be resolved; `short-name-mode`.
public enum ShortNameMode: String, Sendable, Equatable, CaseIterable {
    case enforcing, permissive, disabled
}

/// A mirror's `pull-from-mirror` restriction.
public enum PullFromMirror: String, Sendable, Equatable, CaseIterable {
    case all
    case digestOnly = "digest-only"
    case tagOnly = "tag-only"
}

/// One `[[registry.mirror]]`.
public struct Mirror: Sendable, Equatable {
    public var location: String
    public var insecure: Bool
    /// nil when not set (behaves as `.all`, unless the registry has `mirror-by-digest-only`).
    public var pullFromMirror: PullFromMirror?

    public init(location: String, insecure: Bool = false, pullFromMirror: PullFromMirror? = nil) {
        self.location = location
        self.insecure = insecure
        self.pullFromMirror = pullFromMirror
    }
}

/// One endpoint to try for a pull, with the reference rewritten for it.
public struct PullSource: Sendable, Equatable {
    /// The reference to request from this endpoint ("mirror.example.com:5000/library/busybox:1").
    public var reference: Reference
    /// The configured location of the endpoint (the reference's registry when the location is empty).
    public var location: String
    /// TLS verification off and plain HTTP allowed for this endpoint.
    public var insecure: Bool
    public var isMirror: Bool
    /// The endpoint is blocked by configuration: a pull must not contact it (containers/image still tries
    /// the mirrors of a blocked registry and fails only on the primary).
    public var blocked: Bool

    public init(reference: Reference, location: String, insecure: Bool, isMirror: Bool, blocked: Bool = false) {
        self.reference = reference
        self.location = location
        self.insecure = insecure
        self.isMirror = isMirror
        self.blocked = blocked
    }
}

/// One `[[registry]]` after validation and normalisation (trailing slashes dropped, prefix defaulted
/// to the location).
public struct RegistryEntry: Sendable, Equatable {
    /// "docker.io", "example.com:5000/team", "*.example.com".
    public var prefix: String
    /// Where references matching `prefix` really live. Empty only for a `*.` wildcard prefix
    /// (references are then used unchanged).
    public var location: String
    public var insecure: Bool
    public var blocked: Bool
    public var mirrorByDigestOnly: Bool
    public var mirrors: [Mirror]
    /// Where the entry was defined, for messages.
    public var file: String?
    public var line: Int?

    public init(prefix: String, location: String, insecure: Bool = false, blocked: Bool = false,
                mirrorByDigestOnly: Bool = false, mirrors: [Mirror] = [], file: String? = nil, line: Int? = nil) {
        self.prefix = prefix
        self.location = location
        self.insecure = insecure
        self.blocked = blocked
        self.mirrorByDigestOnly = mirrorByDigestOnly
        self.mirrors = mirrors
        self.file = file
        self.line = line
    }

    /// "FILE:LINE" of the definition, or "registries.conf".
    public var origin: String {
        guard let file else { return "registries.conf" }
        if let line { return "\(file):\(line)" }
        return file
    }

    /// The endpoints to try, in order: the mirrors that apply to `ref` (with `mirror-by-digest-only`,
    /// or a mirror's `pull-from-mirror = "digest-only"`, mirrors are used only for digest references;
    /// `"tag-only"` mirrors only for references without a digest), then the primary location. Each comes
    /// with `ref` rewritten: the matched prefix replaced by the endpoint's location.
    /// `ref` must match `prefix` (as returned by `RegistriesConf.registry(for:)`).
    public func pullSources(for ref: Reference) throws -> [PullSource] {
        let isDigested = ref.digest != nil
        var endpoints: [(location: String, insecure: Bool, mirror: Bool)] = []
        if mirrorByDigestOnly {
            if isDigested { endpoints += mirrors.map { ($0.location, $0.insecure, true) } }
        } else {
            for m in mirrors {
                switch m.pullFromMirror {
                case .digestOnly?: if !isDigested { continue }
                case .tagOnly?: if isDigested { continue }
                case .all?, nil: break
                }
                endpoints.append((m.location, m.insecure, true))
            }
        }
        endpoints.append((location, insecure, false))
        return try endpoints.map { ep in
            PullSource(reference: try rewrite(ref, toLocation: ep.location),
                       location: ep.location.isEmpty ? ref.registry : ep.location,
                       insecure: ep.insecure, isMirror: ep.mirror, blocked: !ep.mirror && blocked)
        }
    }

    /// `ref` with the matched prefix replaced by `location` (containers/image `rewriteReference`).
    public func rewrite(_ ref: Reference, toLocation location: String) throws -> Reference {
        let s = ref.string
        guard let n = RegistriesConf.matchingPrefixLength(s, prefix) else {
            throw CtrError.at(file: file ?? "registries.conf", line: line,
                              "invalid prefix '\(prefix)' for reference '\(s)'")
        }
        if location.isEmpty {
            guard prefix.hasPrefix("*.") else {
                throw CtrError.at(file: file ?? "registries.conf", line: line,
                                  "invalid prefix '\(prefix)' for empty location, should be in the format: *.example.com")
            }
            return ref
        }
        let rewritten = location + String(decoding: Array(s.utf8)[n...], as: UTF8.self)
        let parsed: Reference
        do {
            parsed = try Reference(parsing: rewritten, defaultTag: false)
        } catch {
            throw CtrError.at(file: file ?? "registries.conf", line: line,
                              "rewriting reference \(s) for location '\(location)': \(error)")
        }
        guard parsed.string == rewritten else {
            throw CtrError.at(file: file ?? "registries.conf", line: line,
                              "rewriting reference \(s) for location '\(location)': \"\(rewritten)\" is not a canonical reference (it would be \"\(parsed.string)\")")
        }
        return parsed
    }
}

/// Where registries.conf is read from: one main file, then the `*.conf` drop-ins of each directory.
public struct RegistriesConfSources: Sendable, Equatable {
    public var mainFile: String
    /// A missing main file is an error (it was named explicitly, e.g. by $CONTAINERS_REGISTRIES_CONF);
    /// otherwise a missing main file means an empty configuration.
    public var mainFileRequired: Bool
    public var dropInDirectories: [String]

    public init(mainFile: String, mainFileRequired: Bool = false, dropInDirectories: [String] = []) {
        self.mainFile = mainFile
        self.mainFileRequired = mainFileRequired
        self.dropInDirectories = dropInDirectories
    }
}

/// The merged registries configuration.
public struct RegistriesConf: Sendable, Equatable {
    public static let systemFile = "/etc/containers/registries.conf"
    public static let systemDropInDirectory = "/etc/containers/registries.conf.d"
    /// `credential-helpers` entry meaning "the auth.json files".
    public static let authFileHelper = "containers-auth.json"

    /// Unique prefixes, sorted by prefix (as containers/image keeps them).
    public var registries: [RegistryEntry] = []
    /// `unqualified-search-registries` (or v1 `[registries.search]`), in order.
    public var unqualifiedSearchRegistries: [String] = []
    /// The file that set `unqualifiedSearchRegistries`.
    public var unqualifiedSearchRegistriesOrigin: String?
    var shortNameModeSetting: ShortNameMode?
    var aliasTable: [String: AliasEntry] = [:]
    var credentialHelpersSetting: [String]?
    /// The files that were read, in order.
    public var files: [String] = []

    struct AliasEntry: Sendable, Equatable {
        /// nil: reset by an empty value in a later file.
        var value: String?
        var origin: String
    }

    public init() {}

    /// `short-name-mode`; "permissive" when no file sets it.
    public var shortNameMode: ShortNameMode { shortNameModeSetting ?? .permissive }

    /// `[aliases]`: short name → fully-qualified, normalised name ("docker.io/library/busybox").
    public var aliases: [String: String] { aliasTable.compactMapValues(\.value) }

    /// The file that defined the alias for `shortName`.
    public func aliasOrigin(_ shortName: String) -> String? {
        guard let e = aliasTable[shortName], e.value != nil else { return nil }
        return e.origin
    }

    /// `credential-helpers`; ["containers-auth.json"] when no file sets a non-empty list.
    public var credentialHelpers: [String] {
        if let h = credentialHelpersSetting, !h.isEmpty { return h }
        return [Self.authFileHelper]
    }

    // MARK: Lookup

    /// The `[[registry]]` whose prefix matches `ref`'s name ("docker.io/library/busybox") with the
    /// longest prefix, as containers/image's docker transport looks it up.
    public func registry(for ref: Reference) -> RegistryEntry? {
        registry(matching: ref.name)
    }

    /// The entry with the longest prefix matching `name`: a registry ("example.com:5000"), a namespace,
    /// a repository, or a full reference string. Ties go to the first in `registries` order.
    public func registry(matching name: String) -> RegistryEntry? {
        var best: RegistryEntry?
        var bestLength = 0
        for r in registries where Self.matchingPrefixLength(name, r.prefix) != nil {
            let length = r.prefix.utf8.count
            if length > bestLength {
                best = r
                bestLength = length
            }
        }
        return best
    }

    /// Whether TLS verification is off (and plain HTTP allowed) for `host` ("example.com:5000").
    /// Mirrors are insecure per endpoint: see `PullSource.insecure`.
    public func isInsecure(host: String) -> Bool {
        registry(matching: host)?.insecure ?? false
    }

    /// Whether TLS verification is off for `ref`'s repository (a namespaced prefix may differ from the host).
    public func isInsecure(_ ref: Reference) -> Bool {
        registry(for: ref)?.insecure ?? false
    }

    /// Whether pulling or pushing `ref` is blocked.
    public func isBlocked(_ ref: Reference) -> Bool {
        registry(for: ref)?.blocked ?? false
    }

    /// The endpoints to try for `ref`: the matching entry's mirrors and location (see
    /// `RegistryEntry.pullSources`), or just `ref` itself when no entry matches. Each source's
    /// `insecure`/`blocked` also account for the entry that matches the rewritten reference, as
    /// containers/image does when it connects to that endpoint.
    public func pullSources(for ref: Reference) throws -> [PullSource] {
        guard let entry = registry(for: ref) else {
            return [PullSource(reference: ref, location: ref.registry, insecure: false, isMirror: false)]
        }
        return try entry.pullSources(for: ref).map { s in
            var s = s
            if let physical = registry(for: s.reference) {
                s.insecure = s.insecure || physical.insecure
                s.blocked = physical.blocked
            } else {
                s.blocked = false
            }
            return s
        }
    }

    /// containers/image `refMatchingPrefix`: the length (in UTF-8 bytes) of the part of `ref` that
    /// `prefix` matches, or nil. A plain prefix matches when `ref` equals it or continues with ':', '/'
    /// or '@' (so "example.com" also matches "example.com:5000", as in containers/image). A
    /// "*.example.com" prefix matches any subdomain host ("a.b.example.com", with optional port/path),
    /// but not "example.com" itself; the length is then that of the host part.
    public static func matchingPrefixLength(_ ref: String, _ prefix: String) -> Int? {
        let r = Array(ref.utf8)
        let p = Array(prefix.utf8)
        if prefix.hasPrefix("*.") {
            let needle = Array(p.dropFirst())
            guard let index = firstIndex(of: needle, in: r) else { return nil }
            if r[..<index].contains(UInt8(ascii: "/")) { return nil }
            let end = index + needle.count
            if end == r.count { return end }
            switch r[end] {
            case UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"): return end
            default: return nil
            }
        }
        if r.count < p.count { return nil }
        if r.count == p.count { return r == p ? p.count : nil }
        guard r.starts(with: p) else { return nil }
        switch r[p.count] {
        case UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"): return p.count
        default: return nil
        }
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty ? 0 : nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return start }
        }
        return nil
    }

    // MARK: Loading

    /// The files containers/image reads for this environment:
    /// - $CONTAINERS_REGISTRIES_CONF (or the legacy $REGISTRIES_CONFIG_PATH) when set and non-empty: that
    ///   file (it must exist), then the drop-ins of the system and user registries.conf.d;
    /// - else, when `~/.config/containers/registries.conf` exists: it INSTEAD of the system file, with
    ///   only the user drop-ins (`~/.config/containers/registries.conf.d`);
    /// - else the system file, then the system drop-ins, then the user drop-ins.
    /// Like containers/image, the user paths are under `home` ($HOME); $XDG_CONFIG_HOME is not consulted.
    public static func defaultSources(environment: [String: String], home: String,
                                      systemFile: String = RegistriesConf.systemFile,
                                      systemDropInDirectory: String = RegistriesConf.systemDropInDirectory) -> RegistriesConfSources {
        let userFile = joinPath(home, ".config/containers/registries.conf")
        let userDir = joinPath(home, ".config/containers/registries.conf.d")
        // podman/buildah: the first of the two variables that is present wins, even when empty
        // (an empty path means "not overridden").
        let override = environment["CONTAINERS_REGISTRIES_CONF"] ?? environment["REGISTRIES_CONFIG_PATH"]
        if let override, !override.isEmpty {
            return RegistriesConfSources(mainFile: override, mainFileRequired: true,
                                         dropInDirectories: [systemDropInDirectory, userDir])
        }
        if pathExists(userFile) {
            return RegistriesConfSources(mainFile: userFile, dropInDirectories: [userDir])
        }
        return RegistriesConfSources(mainFile: systemFile, dropInDirectories: [systemDropInDirectory, userDir])
    }

    /// Loads the configuration the way podman does for this environment (see `defaultSources`).
    public static func loadDefault(environment: [String: String] = ProcessInfo.processInfo.environment,
                                   home: String? = nil,
                                   systemFile: String = RegistriesConf.systemFile,
                                   systemDropInDirectory: String = RegistriesConf.systemDropInDirectory) throws -> RegistriesConf {
        let home = home ?? environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return try load(defaultSources(environment: environment, home: home, systemFile: systemFile,
                                       systemDropInDirectory: systemDropInDirectory))
    }

    /// Loads `sources`: the main file (v1 or v2), then every drop-in (v2 only) in order.
    public static func load(_ sources: RegistriesConfSources) throws -> RegistriesConf {
        try load(mainFile: sources.mainFile, mainFileRequired: sources.mainFileRequired,
                 dropIns: try dropInFiles(in: sources.dropInDirectories))
    }

    /// Loads an explicit list: `paths[0]` is the main file (skipped when missing), the others are
    /// drop-ins (v2 only, skipped when missing), applied in order.
    public static func load(paths: [String]) throws -> RegistriesConf {
        guard let main = paths.first else { return RegistriesConf() }
        return try load(mainFile: main, mainFileRequired: false, dropIns: Array(paths.dropFirst()))
    }

    public static func load(mainFile: String, mainFileRequired: Bool, dropIns: [String]) throws -> RegistriesConf {
        var conf = RegistriesConf()
        if let text = try readConfigFile(mainFile, required: mainFileRequired) {
            conf = RegistriesConf(try decode(text, file: mainFile, dropIn: false))
        }
        for path in dropIns {
            // A drop-in that vanished between listing and reading is ignored, as in containers/image.
            guard let text = try readConfigFile(path, required: false) else { continue }
            conf.update(with: try decode(text, file: path, dropIn: true))
        }
        return conf
    }

    /// Parses one file's text (a main file, or a drop-in when `dropIn`, which must be v2).
    public static func parse(_ text: String, file: String = "registries.conf", dropIn: Bool = false) throws -> RegistriesConf {
        RegistriesConf(try decode(text, file: file, dropIn: dropIn))
    }

    /// Merges another file (a drop-in) into this configuration, as containers/image does: `[[registry]]`
    /// entries replace those with the same prefix, `unqualified-search-registries`,
    /// `credential-helpers` and `short-name-mode` replace earlier values when the file sets them,
    /// aliases merge (an empty value removes an alias).
    public mutating func merge(_ other: RegistriesConf) {
        update(with: ParsedFile(file: other.files.last ?? "registries.conf",
                                registries: other.registries,
                                unqualifiedSearch: other.unqualifiedSearchRegistriesOrigin == nil ? nil : other.unqualifiedSearchRegistries,
                                shortNameMode: other.shortNameModeSetting,
                                aliases: other.aliasTable,
                                credentialHelpers: other.credentialHelpersSetting))
    }

    /// `*.conf` files directly in each directory (sorted by name, no recursion), directories in order.
    /// A missing directory is skipped; an unreadable one is an error.
    public static func dropInFiles(in directories: [String]) throws -> [String] {
        var out: [String] = []
        for dir in directories {
            var st = stat()
            if lstat(dir, &st) != 0 {
                if errno == ENOENT || errno == ENOTDIR { continue }
                throw CtrError.at(file: dir, "reading registries.conf.d: \(String(cString: strerror(errno)))")
            }
            // Follow a symlinked directory; a non-directory is not a drop-in directory.
            guard stat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: dir)
            } catch {
                throw CtrError.at(file: dir, "reading registries.conf.d: \(describeIOError(error))")
            }
            for name in names.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where name.hasSuffix(".conf") {
                let path = joinPath(dir, name)
                var est = stat()
                if lstat(path, &est) == 0, (est.st_mode & S_IFMT) == S_IFDIR { continue }
                out.append(path)
            }
        }
        return out
    }

    // MARK: - Internals

    /// What one file says, before merging.
    struct ParsedFile {
        var file: String
        var registries: [RegistryEntry]
        var unqualifiedSearch: [String]?
        var shortNameMode: ShortNameMode?
        var aliases: [String: AliasEntry]
        var credentialHelpers: [String]?
    }

    init(_ f: ParsedFile) {
        registries = f.registries
        unqualifiedSearchRegistries = f.unqualifiedSearch ?? []
        unqualifiedSearchRegistriesOrigin = f.unqualifiedSearch == nil ? nil : f.file
        shortNameModeSetting = f.shortNameMode
        aliasTable = f.aliases
        credentialHelpersSetting = f.credentialHelpers
        files = [f.file]
    }

    mutating func update(with f: ParsedFile) {
        var byPrefix: [String: RegistryEntry] = [:]
        for r in registries { byPrefix[r.prefix] = r }
        for r in f.registries { byPrefix[r.prefix] = r }
        registries = byPrefix.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).map { byPrefix[$0]! }
        if let s = f.unqualifiedSearch {
            unqualifiedSearchRegistries = s
            unqualifiedSearchRegistriesOrigin = f.file
        }
        if let h = f.credentialHelpers { credentialHelpersSetting = h }
        if let m = f.shortNameMode { shortNameModeSetting = m }
        for (k, v) in f.aliases { aliasTable[k] = v }
        files.append(f.file)
    }

    static func readConfigFile(_ path: String, required: Bool) throws -> String? {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            if !required, isNoSuchFile(error) { return nil }
            throw CtrError.at(file: path, "cannot read registries configuration: \(describeIOError(error))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CtrError.at(file: path, "not valid UTF-8")
        }
        return text
    }

    // MARK: Decoding one file

    static func decode(_ text: String, file: String, dropIn: Bool) throws -> ParsedFile {
        // TOML's errors read "FILE:LINE: message" as ours do
        let root = try TOML.parse(text, file: file)
        let d = TOMLFieldReader(file: file)

        // v1: [registries.search|insecure|block] registries = [...]
        var v1: [String: [String]] = [:]
        var v1Line: Int?
        if let regs = try d.table(root, "registries", context: "") {
            for kind in ["search", "insecure", "block"] {
                guard let sub = try d.table(regs, kind, context: "registries.") else { continue }
                if let list = try d.stringArray(sub, "registries", context: "registries.\(kind).") {
                    v1[kind] = list
                    let l = sub.line(of: "registries")
                    if v1Line == nil || (l ?? .max) < v1Line! { v1Line = l }
                }
            }
        }

        // v2 keys (type-checked even when the file turns out to be v1).
        let registryTables = try d.tableArray(root, "registry", context: "")
        let search = try d.stringArray(root, "unqualified-search-registries", context: "")
        let helpers = try d.stringArray(root, "credential-helpers", context: "")
        let modeString = try d.string(root, "short-name-mode", context: "")
        let layerStoreHelper = try d.string(root, "additional-layer-store-auth-helper", context: "")
        let aliasesTable = try d.table(root, "aliases", context: "")
        let v2Set = registryTables != nil || search != nil || helpers != nil || !(modeString ?? "").isEmpty
            || !(layerStoreHelper ?? "").isEmpty || aliasesTable != nil

        var registries: [RegistryEntry] = []
        var unqualified = search
        var unqualifiedLine = root.line(of: "unqualified-search-registries")
        if !v1.isEmpty {
            if dropIn {
                throw CtrError.at(file: file, line: v1Line, "registry must be in v2 format but is in v1 (drop-in files must use [[registry]] tables)")
            }
            if v2Set {
                throw CtrError.at(file: file, line: v1Line, "mixing sysregistry v1/v2 is not supported ([registries.*] tables together with v2 keys such as [[registry]] or unqualified-search-registries)")
            }
            // ConvertToV2: blocked entries first, then insecure, in order of first mention.
            var order: [String] = []
            var byLocation: [String: RegistryEntry] = [:]
            func entry(_ raw: String) throws -> String {
                let location = try parseLocation(raw, file: file, line: v1Line)
                if byLocation[location] == nil {
                    byLocation[location] = RegistryEntry(prefix: location, location: location, file: file, line: v1Line)
                    order.append(location)
                }
                return location
            }
            for raw in v1["block"] ?? [] { byLocation[try entry(raw)]!.blocked = true }
            for raw in v1["insecure"] ?? [] { byLocation[try entry(raw)]!.insecure = true }
            registries = order.map { byLocation[$0]! }
            unqualified = v1["search"]
            unqualifiedLine = v1Line
        } else {
            for t in registryTables ?? [] {
                registries.append(try decodeRegistry(t, d: d))
            }
        }

        // postProcessRegistries: conflicting settings for the same location (or wildcard prefix).
        var seenByKey: [String: RegistryEntry] = [:]
        for r in registries {
            let key = r.location.isEmpty ? r.prefix : r.location
            if let other = seenByKey[key] {
                if other.insecure != r.insecure {
                    throw CtrError.at(file: file, line: r.line, "registry '\(r.location)' is defined multiple times with conflicting 'insecure' setting")
                }
                if other.blocked != r.blocked {
                    throw CtrError.at(file: file, line: r.line, "registry '\(r.location)' is defined multiple times with conflicting 'blocked' setting")
                }
            } else {
                seenByKey[key] = r
            }
        }

        if var list = unqualified {
            for (n, raw) in list.enumerated() {
                let host = try parseLocation(raw, file: file, line: unqualifiedLine)
                if host.isEmpty || Reference.hostProblem(host) != nil {
                    throw CtrError.at(file: file, line: unqualifiedLine, "invalid unqualified-search-registries entry \"\(host)\": must be a host[:port]")
                }
                list[n] = host
            }
            unqualified = list
        }

        // The first entry with a prefix wins; later ones are ignored. Then sort by prefix.
        var unique: [String: RegistryEntry] = [:]
        for r in registries where unique[r.prefix] == nil { unique[r.prefix] = r }
        registries = unique.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).map { unique[$0]! }

        var mode: ShortNameMode?
        if let modeString, !modeString.isEmpty {
            guard let m = ShortNameMode(rawValue: modeString) else {
                throw CtrError.at(file: file, line: root.line(of: "short-name-mode"),
                                  "invalid short-name mode: \"\(modeString)\" (use \"enforcing\", \"permissive\" or \"disabled\")")
            }
            mode = m
        }

        for r in registries where r.prefix.hasPrefix("*.") && r.prefix.contains(where: { "/@:".contains($0) }) {
            throw CtrError.at(file: file, line: r.line, "Wildcarded prefix should be in the format: *.example.com. Current prefix \"\(r.prefix)\" is incorrectly formatted")
        }

        var aliases: [String: AliasEntry] = [:]
        if let aliasesTable {
            for name in aliasesTable.keys {
                let line = aliasesTable.line(of: name)
                guard case .string(let value)? = aliasesTable[name] else {
                    throw CtrError.at(file: file, line: line, "aliases.\(TOML.quoteKey(name)): expected a string, found \(aliasesTable[name]!.typeName)")
                }
                try validateShortName(name, file: file, line: line)
                if value.isEmpty {
                    aliases[name] = AliasEntry(value: nil, origin: file)
                } else {
                    aliases[name] = AliasEntry(value: try parseAliasValue(value, file: file, line: line), origin: file)
                }
            }
        }

        return ParsedFile(file: file, registries: registries, unqualifiedSearch: unqualified, shortNameMode: mode,
                          aliases: aliases, credentialHelpers: helpers)
    }

    static func decodeRegistry(_ t: TOMLTable, d: TOMLFieldReader) throws -> RegistryEntry {
        let file = d.file
        let c = "registry."
        var prefix = try d.string(t, "prefix", context: c) ?? ""
        var location = try d.string(t, "location", context: c) ?? ""
        let insecure = try d.bool(t, "insecure", context: c) ?? false
        let blocked = try d.bool(t, "blocked", context: c) ?? false
        let byDigest = try d.bool(t, "mirror-by-digest-only", context: c) ?? false
        let primaryPull = try d.string(t, "pull-from-mirror", context: c) ?? ""

        location = try parseLocation(location, file: file, line: t.line(of: "location") ?? t.line)
        if prefix.isEmpty {
            if location.isEmpty {
                throw CtrError.at(file: file, line: t.line, "invalid condition: both location and prefix are unset")
            }
            prefix = location
        } else {
            prefix = try parseLocation(prefix, file: file, line: t.line(of: "prefix") ?? t.line)
            if !prefix.hasPrefix("*.") && location.isEmpty {
                throw CtrError.at(file: file, line: t.line, "invalid condition: location is unset and prefix is not in the format: *.example.com")
            }
        }
        if !primaryPull.isEmpty {
            throw CtrError.at(file: file, line: t.line(of: "pull-from-mirror") ?? t.line,
                              "pull-from-mirror must not be set for a non-mirror registry \"\(prefix)\"")
        }

        var mirrors: [Mirror] = []
        for m in try d.tableArray(t, "mirror", context: c) ?? [] {
            let mc = "registry.mirror."
            let mLocation = try parseLocation(try d.string(m, "location", context: mc) ?? "", file: file,
                                              line: m.line(of: "location") ?? m.line)
            if mLocation.isEmpty {
                throw CtrError.at(file: file, line: m.line, "invalid condition: mirror location is unset")
            }
            let mInsecure = try d.bool(m, "insecure", context: mc) ?? false
            let pull = try d.string(m, "pull-from-mirror", context: mc) ?? ""
            let pullLine = m.line(of: "pull-from-mirror") ?? m.line
            if byDigest && !pull.isEmpty {
                throw CtrError.at(file: file, line: pullLine, "cannot set mirror usage mirror-by-digest-only for the registry (\"\(prefix)\") and pull-from-mirror for per-mirror (\"\(mLocation)\") at the same time")
            }
            var pullFromMirror: PullFromMirror?
            if !pull.isEmpty {
                guard let p = PullFromMirror(rawValue: pull) else {
                    throw CtrError.at(file: file, line: pullLine, "unsupported pull-from-mirror value \"\(pull)\" for mirror \"\(mLocation)\" (use \"all\", \"digest-only\" or \"tag-only\")")
                }
                pullFromMirror = p
            }
            mirrors.append(Mirror(location: mLocation, insecure: mInsecure, pullFromMirror: pullFromMirror))
        }
        return RegistryEntry(prefix: prefix, location: location, insecure: insecure, blocked: blocked,
                             mirrorByDigestOnly: byDigest, mirrors: mirrors, file: file, line: t.line)
    }

    /// containers/image `parseLocation`: trailing slashes dropped, URL schemes rejected.
    static func parseLocation(_ input: String, file: String, line: Int?) throws -> String {
        var trimmed = Substring(input)
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        if trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://") {
            throw CtrError.at(file: file, line: line, "invalid location '\(input)': URI schemes are not supported")
        }
        return String(trimmed)
    }

    /// The left side of an alias: a repository without registry, tag or digest.
    static func validateShortName(_ name: String, file: String, line: Int?) throws {
        let ref: Reference
        do {
            ref = try Reference(parsing: name, defaultTag: false)
        } catch {
            throw CtrError.at(file: file, line: line, "invalid short name \"\(name)\": \(error.reason ?? error.message)")
        }
        if ref.digest != nil {
            throw CtrError.at(file: file, line: line, "invalid short name \"\(name)\": must not contain digest")
        }
        if ref.tag != nil {
            throw CtrError.at(file: file, line: line, "invalid short name \"\(name)\": must not contain tag")
        }
        if hasExplicitRegistry(name) {
            throw CtrError.at(file: file, line: line, "invalid short name \"\(name)\": must not contain registry")
        }
    }

    /// The right side of an alias: registry and repository, no tag or digest. Returns the normalised name.
    static func parseAliasValue(_ value: String, file: String, line: Int?) throws -> String {
        let ref: Reference
        do {
            ref = try Reference(parsing: value, defaultTag: false)
        } catch {
            throw CtrError.at(file: file, line: line, "invalid alias \"\(value)\": \(error.reason ?? error.message)")
        }
        if ref.digest != nil {
            throw CtrError.at(file: file, line: line, "invalid alias \"\(value)\": must not contain digest")
        }
        if ref.tag != nil {
            throw CtrError.at(file: file, line: line, "invalid alias \"\(value)\": must not contain tag")
        }
        if !hasExplicitRegistry(value) {
            throw CtrError.at(file: file, line: line, "invalid alias \"\(value)\": must contain registry and repository")
        }
        return ref.name
    }

    /// Whether the first path component names a registry (contains '.' or ':' or is "localhost").
    static func hasExplicitRegistry(_ s: String) -> Bool {
        guard let slash = s.firstIndex(of: "/") else { return false }
        let first = s[..<slash]
        return first.contains(".") || first.contains(":") || first == "localhost"
    }
}

// MARK: - Typed access to TOML fields with file:line errors

struct TOMLFieldReader {
    let file: String

    private func mismatch(_ t: TOMLTable, _ key: String, _ context: String, _ expected: String) -> CtrError {
        CtrError.at(file: file, line: t.line(of: key) ?? t.line,
                    "\(context)\(TOML.quoteKey(key)): expected \(expected), found \(t[key]!.typeName)")
    }

    func string(_ t: TOMLTable, _ key: String, context: String) throws -> String? {
        guard let v = t[key] else { return nil }
        guard case .string(let s) = v else { throw mismatch(t, key, context, "a string") }
        return s
    }

    func bool(_ t: TOMLTable, _ key: String, context: String) throws -> Bool? {
        guard let v = t[key] else { return nil }
        guard case .bool(let b) = v else { throw mismatch(t, key, context, "a boolean (true or false)") }
        return b
    }

    func stringArray(_ t: TOMLTable, _ key: String, context: String) throws -> [String]? {
        try array(t, key, context: context, expected: "an array of strings", of: "strings") {
            if case .string(let s) = $0 { return s } else { return nil }
        }
    }

    /// An array whose elements `element` accepts; `expected` names the array, `of` its elements.
    private func array<T>(_ t: TOMLTable, _ key: String, context: String, expected: String, of: String,
                          _ element: (TOMLValue) -> T?) throws -> [T]? {
        guard let v = t[key] else { return nil }
        guard case .array(let items) = v else { throw mismatch(t, key, context, expected) }
        return try items.map {
            guard let x = element($0) else {
                throw CtrError.at(file: file, line: t.line(of: key) ?? t.line,
                                  "\(context)\(TOML.quoteKey(key)): expected an array of \(of), found an element that is \($0.typeName)")
            }
            return x
        }
    }

    func table(_ t: TOMLTable, _ key: String, context: String) throws -> TOMLTable? {
        guard let v = t[key] else { return nil }
        guard case .table(let sub) = v else { throw mismatch(t, key, context, "a table") }
        return sub
    }

    /// `[[key]]` tables, or `key = [{...}, ...]`.
    func tableArray(_ t: TOMLTable, _ key: String, context: String) throws -> [TOMLTable]? {
        try array(t, key, context: context, expected: "an array of tables ([[\(context)\(key)]])", of: "tables") {
            if case .table(let sub) = $0 { return sub } else { return nil }
        }
    }
}
