import Errors
import Foundation
import HostOS

// Registry credentials where podman and Docker users keep them, read the way containers/image's
// pkg/docker/config does (plus Docker's `credsStore`), and written the way `podman login` does.

/// Credentials for one registry. With an identity token (OAuth2 refresh token), `username` and
/// `password` may be empty.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var password: String
    public var identityToken: String?

    public init(username: String, password: String, identityToken: String? = nil) {
        self.username = username
        self.password = password
        self.identityToken = identityToken
    }
}

/// The process environment the credential lookup depends on; injectable for tests.
public struct AuthEnvironment: Sendable, Equatable {
    /// Environment variables: REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, XDG_CONFIG_HOME, DOCKER_CONFIG, PATH
    /// (for docker-credential-* helpers, which also get this environment).
    public var environment: [String: String]
    /// The home directory ($HOME).
    public var home: String
    public var uid: UInt32

    public init(environment: [String: String], home: String, uid: UInt32) {
        self.environment = environment
        self.home = home
        self.uid = uid
    }

    /// This process's environment.
    public static func current() -> AuthEnvironment {
        let env = ProcessInfo.processInfo.environment
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return AuthEnvironment(environment: env, home: home, uid: getuid())
    }

    /// The variable's value when set and non-empty.
    public func value(_ name: String) -> String? {
        guard let v = environment[name], !v.isEmpty else { return nil }
        return v
    }
}

/// One credentials file to read.
public struct AuthFileLocation: Sendable, Equatable {
    public var path: String
    /// `~/.dockercfg`: the top level is the map of registries (no "auths" wrapper).
    public var legacyFormat: Bool

    public init(path: String, legacyFormat: Bool = false) {
        self.path = path
        self.legacyFormat = legacyFormat
    }
}

public enum AuthFile {
    /// The `credential-helpers` entry (registries.conf) that stands for the auth files.
    public static let authFilesHelper = "containers-auth.json"
    /// Docker's key and credential-helper server URL for Docker Hub.
    public static let dockerHubIndexURL = "https://index.docker.io/v1/"

    // MARK: Where credentials are read from

    /// The files consulted, in order (containers/image `getAuthFilePaths`):
    /// - $REGISTRY_AUTH_FILE when set: only that file;
    /// - otherwise `$XDG_RUNTIME_DIR/containers/auth.json` (skipped when $XDG_RUNTIME_DIR names a missing
    ///   directory; `/run/containers/$UID/auth.json` when $XDG_RUNTIME_DIR is unset),
    ///   `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config/containers/auth.json`),
    ///   `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), and the legacy `~/.dockercfg`.
    public static func searchPaths(env: AuthEnvironment) -> [AuthFileLocation] {
        if let explicit = env.value("REGISTRY_AUTH_FILE") {
            return [AuthFileLocation(path: explicit)]
        }
        var paths: [AuthFileLocation] = []
        if let runtime = env.value("XDG_RUNTIME_DIR") {
            // containers/image warns and carries on ("Trying to pull image in the event that it is a public image").
            if pathExists(runtime) {
                paths.append(AuthFileLocation(path: joinPath(runtime, "containers/auth.json")))
            }
        } else {
            paths.append(AuthFileLocation(path: "/run/containers/\(env.uid)/auth.json"))
        }
        paths.append(AuthFileLocation(path: joinPath(configHome(env), "containers/auth.json")))
        if let docker = env.value("DOCKER_CONFIG") {
            paths.append(AuthFileLocation(path: joinPath(docker, "config.json")))
        } else {
            paths.append(AuthFileLocation(path: joinPath(env.home, ".docker/config.json")))
        }
        paths.append(AuthFileLocation(path: joinPath(env.home, ".dockercfg"), legacyFormat: true))
        return paths
    }

    static func configHome(_ env: AuthEnvironment) -> String {
        env.value("XDG_CONFIG_HOME") ?? joinPath(env.home, ".config")
    }

    // MARK: Reading

    /// Credentials for `registry` ("quay.io", "localhost:5000", "docker.io"); with `reference` (on that
    /// registry), per-repository and per-namespace keys ("quay.io/team/app", "quay.io/team") are
    /// preferred over the registry key. Nil when none are configured.
    ///
    /// `helpers` is registries.conf `credential-helpers`: "containers-auth.json" means the files from
    /// `searchPaths`; any other name is an external `docker-credential-NAME`. The first helper that has
    /// credentials wins; errors are reported only when none has.
    ///
    /// In each file, in order: `credHelpers[registry]` (the helper's answer is final for that file),
    /// then Docker's `credsStore` (when it has the credentials), then `auths`: the most specific
    /// exact key, then keys written as URLs ("https://index.docker.io/v1/", "http://host:5000",
    /// "host:5000/v2/"). The first file that yields credentials wins.
    public static func credentials(for registry: String, reference: Reference? = nil, env: AuthEnvironment,
                                   helpers: [String] = [AuthFile.authFilesHelper]) throws -> Credentials? {
        let registry = normalizedRegistry(registry)
        guard !registry.isEmpty else { throw CtrError.usage("empty registry name") }
        var key = registry
        if let reference, normalizedRegistry(reference.registry) == registry {
            key = registry + "/" + reference.repository
        }
        var errors: [String] = []
        for helper in helpers.isEmpty ? [authFilesHelper] : helpers {
            do {
                let found: Credentials?
                if helper == authFilesHelper {
                    found = try credentialsFromFiles(key: key, registry: registry, env: env)
                } else {
                    found = try CredentialHelper.get(helper: helper, serverURL: registry, env: env)
                }
                if let found { return found }
            } catch {
                errors.append("\(error)")
            }
        }
        if !errors.isEmpty { throw CtrError.authentication(errors.joined(separator: "; ")) }
        return nil
    }

    static func credentialsFromFiles(key: String, registry: String, env: AuthEnvironment) throws -> Credentials? {
        for location in searchPaths(env: env) {
            if let c = try credentials(inFile: location, key: key, registry: registry, env: env) {
                return c
            }
        }
        return nil
    }

    /// The credential helper an auth file names for `registry` (its `credHelpers` entry, or
    /// `credsStore`) when that helper is not installed, said for an error message:
    /// "docker-credential-NAME (credsStore in PATH)". Lookups pass such a helper by, as if the
    /// entry were not there, so anonymous pulls still work.
    public static func missingHelper(for registry: String, env: AuthEnvironment) -> String? {
        let registry = normalizedRegistry(registry)
        for location in searchPaths(env: env) {
            guard let contents = try? readFile(location) else { continue }
            var named: [(String, String)] = []
            if let (_, h) = match(contents.credHelpers, registry: registry, legacyFormat: false) { named.append((h, "credHelpers")) }
            if let h = contents.credsStore, !h.isEmpty { named.append((h, "credsStore")) }
            for (h, field) in named where CredentialHelper.find("docker-credential-" + h, path: env.environment["PATH"]) == nil {
                return "docker-credential-\(h) (\(field) in \(location.path))"
            }
        }
        return nil
    }

    /// Looks `key` (a registry, or "registry/namespace.../repo") up in one file.
    public static func credentials(inFile location: AuthFileLocation, key: String, registry: String,
                                   env: AuthEnvironment) throws -> Credentials? {
        guard let contents = try readFile(location) else { return nil }
        let path = location.path

        // credHelpers: exact registry key first, then Docker-style keys for the same host.
        if let (helperKey, helper) = match(contents.credHelpers, registry: registry, legacyFormat: false) {
            return try CredentialHelper.get(helper: helper, serverURL: helperKey, env: env)
        }
        if let store = contents.credsStore, !store.isEmpty {
            let serverURL = registry == "docker.io" ? dockerHubIndexURL : registry
            if let c = try CredentialHelper.get(helper: store, serverURL: serverURL, env: env) { return c }
        }

        // auths: "quay.io/a/b", "quay.io/a", "quay.io" (only the registry in legacy files).
        var candidates: [String] = []
        if location.legacyFormat {
            candidates = [registry]
        } else {
            var k = Substring(key)
            while true {
                candidates.append(String(k))
                guard let slash = k.lastIndex(of: "/") else { break }
                k = k[..<slash]
            }
        }
        for candidate in candidates {
            if let entry = contents.auths[candidate] {
                return try decode(entry, key: candidate, path: path)
            }
        }
        if let (k, entry) = match(contents.auths, registry: registry, legacyFormat: location.legacyFormat, exactFirst: false) {
            return try decode(entry, key: k, path: path)
        }
        return nil
    }

    /// The entry whose key is `registry`, or (containers/image `normalizeAuthFileKey`) whose key
    /// normalises to the same host: URL keys lose scheme and path, Docker Hub's host names are one.
    static func match<V>(_ map: [String: V], registry: String, legacyFormat: Bool, exactFirst: Bool = true) -> (String, V)? {
        if exactFirst, let v = map[registry] { return (registry, v) }
        let wanted = dockerHubAlias(registry)
        for k in map.keys.sorted() where normalizeFileKey(k, legacyFormat: legacyFormat) == wanted {
            return (k, map[k]!)
        }
        return nil
    }

    /// "https://index.docker.io/v1/" → "index.docker.io"; "http://host:5000" → "host:5000";
    /// "host:5000/v2/" → "host:5000" (Docker); "quay.io/team" stays (a namespace key).
    static func normalizeFileKey(_ key: String, legacyFormat: Bool) -> String {
        var stripped = Substring(key)
        var hadScheme = false
        for scheme in ["http://", "https://"] where stripped.hasPrefix(scheme) {
            stripped = stripped.dropFirst(scheme.count)
            hadScheme = true
        }
        if let slash = stripped.firstIndex(of: "/") {
            let path = stripped[slash...]
            // Docker also accepted API-version suffixes without a scheme ("host:5000/v2/").
            let apiPath = ["/", "/v1", "/v1/", "/v2", "/v2/"].contains(path)
            if legacyFormat || hadScheme || apiPath { stripped = stripped[..<slash] }
        }
        return dockerHubAlias(String(stripped))
    }

    /// All of Docker Hub's names compare as "index.docker.io".
    static func dockerHubAlias(_ host: String) -> String {
        switch host {
        case "docker.io", "registry-1.docker.io", "index.docker.io": return "index.docker.io"
        default: return host
        }
    }

    /// "https://quay.io/v2/" → "quay.io"; Docker Hub's names → "docker.io".
    public static func normalizedRegistry(_ s: String) -> String {
        var host = Substring(s)
        for scheme in ["http://", "https://"] where host.hasPrefix(scheme) {
            host = host.dropFirst(scheme.count)
            if let slash = host.firstIndex(of: "/") { host = host[..<slash] }
        }
        switch host {
        case "index.docker.io", "registry-1.docker.io": return "docker.io"
        default: return String(host)
        }
    }

    static func decode(_ entry: AuthEntry, key: String, path: String) throws -> Credentials? {
        guard let auth = entry.auth, !auth.isEmpty else { return nil }
        guard let data = Data(base64Encoded: auth) else {
            throw CtrError.authentication("\(path): the \"auth\" field of \"\(key)\" is not valid base64")
        }
        let decoded = String(decoding: data, as: UTF8.self)
        // Without a ':' the entry is skipped, as Docker and containers/image do.
        guard let colon = decoded.firstIndex(of: ":") else { return nil }
        let user = String(decoded[..<colon])
        let password = String(decoded[decoded.index(after: colon)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\u{0}"))
        let token = entry.identityToken.flatMap { $0.isEmpty ? nil : $0 }
        if user.isEmpty && password.isEmpty && token == nil { return nil }
        return Credentials(username: user, password: password, identityToken: token)
    }

    struct AuthEntry {
        var auth: String?
        var identityToken: String?
    }

    struct FileContents {
        var auths: [String: AuthEntry] = [:]
        var credHelpers: [String: String] = [:]
        var credsStore: String?
    }

    /// Nil when the file does not exist.
    static func readFile(_ location: AuthFileLocation) throws -> FileContents? {
        guard let object = try readJSONObject(location.path) else { return nil }
        let path = location.path
        var contents = FileContents()
        func entries(_ value: Any, name: String) throws -> [String: AuthEntry] {
            guard let map = value as? [String: Any] else {
                throw CtrError.authentication("\(path): \"\(name)\" must be a JSON object")
            }
            var out: [String: AuthEntry] = [:]
            for (k, v) in map {
                if v is NSNull { continue }
                guard let e = v as? [String: Any] else {
                    throw CtrError.authentication("\(path): the entry for \"\(k)\" must be a JSON object")
                }
                var entry = AuthEntry()
                for (field, target) in [("auth", \AuthEntry.auth), ("identitytoken", \AuthEntry.identityToken)] {
                    guard let raw = e[field], !(raw is NSNull) else { continue }
                    guard let s = raw as? String else {
                        throw CtrError.authentication("\(path): \"\(field)\" of \"\(k)\" must be a string")
                    }
                    entry[keyPath: target] = s
                }
                out[k] = entry
            }
            return out
        }
        if location.legacyFormat {
            contents.auths = try entries(object, name: "(top level)")
            return contents
        }
        if let auths = object["auths"], !(auths is NSNull) {
            contents.auths = try entries(auths, name: "auths")
        }
        if let helpers = object["credHelpers"], !(helpers is NSNull) {
            guard let map = helpers as? [String: Any] else {
                throw CtrError.authentication("\(path): \"credHelpers\" must be a JSON object of strings")
            }
            for (k, v) in map {
                guard let s = v as? String else {
                    throw CtrError.authentication("\(path): credHelpers[\"\(k)\"] must be a string")
                }
                contents.credHelpers[k] = s
            }
        }
        if let store = object["credsStore"], !(store is NSNull) {
            guard let s = store as? String else { throw CtrError.authentication("\(path): \"credsStore\" must be a string") }
            contents.credsStore = s
        }
        return contents
    }

    /// The top-level object of a JSON file, or nil when the file does not exist.
    static func readJSONObject(_ path: String) throws -> [String: Any]? {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            if isNoSuchFile(error) { return nil }
            // a directory we may not enter (/run/containers is root's) holds no credentials of ours
            if access(path, F_OK) != 0 && (errno == EACCES || errno == ENOTDIR) { return nil }
            throw CtrError.authentication("\(path): cannot read: \(describeIOError(error))")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw CtrError.authentication("\(path): invalid JSON: \(jsonErrorDetail(error))")
        }
        guard let dict = object as? [String: Any] else {
            throw CtrError.authentication("\(path): invalid JSON: the top level must be an object")
        }
        return dict
    }

    static func jsonErrorDetail(_ error: any Error) -> String {
        let ns = error as NSError
        let detail = (ns.userInfo["NSDebugDescription"] as? String) ?? ns.localizedDescription
        return detail.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    // MARK: Writing (ctr login / logout)

    /// Where `login` writes (as podman): $REGISTRY_AUTH_FILE; else `$XDG_RUNTIME_DIR/containers/auth.json`
    /// when that directory exists; root without $XDG_RUNTIME_DIR: `/run/containers/0/auth.json`;
    /// else `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/auth.json`). Each is
    /// also on the read path.
    public static func defaultWritePath(env: AuthEnvironment) -> String {
        if let explicit = env.value("REGISTRY_AUTH_FILE") { return explicit }
        if let runtime = env.value("XDG_RUNTIME_DIR") {
            if isDirectory(runtime) { return joinPath(runtime, "containers/auth.json") }
        } else if env.uid == 0 {
            return "/run/containers/0/auth.json"
        }
        return joinPath(configHome(env), "containers/auth.json")
    }

    /// The key `podman login` stores `s` under: URL forms become host[:port], Docker Hub's names
    /// become "docker.io"; "host/namespace/repo" keys are kept. Rejects tags and digests.
    public static func loginKey(_ s: String) throws -> String {
        var key = s.trimmingCharacters(in: .whitespaces)
        for scheme in ["http://", "https://"] where key.hasPrefix(scheme) {
            key = String(key.dropFirst(scheme.count))
            if let slash = key.firstIndex(of: "/") { key = String(key[..<slash]) }
        }
        while key.hasSuffix("/") { key.removeLast() }
        let host: Substring
        let rest: Substring
        if let slash = key.firstIndex(of: "/") {
            host = key[..<slash]
            rest = key[slash...]
        } else {
            host = Substring(key)
            rest = ""
        }
        if host.isEmpty { throw CtrError.usage("invalid registry \"\(s)\": empty host") }
        if key.contains("@") { throw CtrError.usage("invalid registry \"\(s)\": contains a '@' character") }
        if rest.contains(":") { throw CtrError.usage("invalid registry \"\(s)\": contains a ':' character after host[:port]") }
        if key.contains(where: { $0.isWhitespace }) { throw CtrError.usage("invalid registry \"\(s)\": contains whitespace") }
        return normalizedRegistry(String(host)) + rest
    }

    /// Stores `c` for `registry` in the auth file at `path` (created with its directories, 0700/0600).
    /// Every other key in the file, and other fields of the entry, are kept; the file is replaced atomically.
    public static func store(_ c: Credentials, for registry: String, path: String) throws {
        let key = try loginKey(registry)
        var object = try readJSONObject(path) ?? [:]
        if let helpers = object["credHelpers"] as? [String: Any], let helper = helpers[key] as? String {
            throw CtrError.authentication("\(path): credentials for \(key) are kept by docker-credential-\(helper) (credHelpers); remove that entry to store them in the file")
        }
        var auths: [String: Any] = [:]
        if let existing = object["auths"], !(existing is NSNull) {
            guard let map = existing as? [String: Any] else { throw CtrError.authentication("\(path): \"auths\" must be a JSON object") }
            auths = map
        }
        var entry = auths[key] as? [String: Any] ?? [:]
        entry["auth"] = Data("\(c.username):\(c.password)".utf8).base64EncodedString()
        if let token = c.identityToken, !token.isEmpty {
            entry["identitytoken"] = token
        } else {
            entry.removeValue(forKey: "identitytoken")
        }
        auths[key] = entry
        object["auths"] = auths
        try writeJSONAtomically(object, path: path)
    }

    /// Removes the credentials for `registry` from the file at `path` (also URL-form keys for the same
    /// host, as `docker logout` does). Returns whether anything was removed; the file is untouched otherwise.
    @discardableResult
    public static func remove(registry: String, path: String) throws -> Bool {
        let key = try loginKey(registry)
        guard var object = try readJSONObject(path) else { return false }
        guard let existing = object["auths"], !(existing is NSNull) else { return false }
        guard var auths = existing as? [String: Any] else { throw CtrError.authentication("\(path): \"auths\" must be a JSON object") }
        var removed = auths.removeValue(forKey: key) != nil
        if !key.contains("/") {
            let wanted = dockerHubAlias(key)
            for k in auths.keys where normalizeFileKey(k, legacyFormat: false) == wanted {
                auths.removeValue(forKey: k)
                removed = true
            }
        }
        guard removed else { return false }
        object["auths"] = auths
        try writeJSONAtomically(object, path: path)
        return true
    }

    /// Removes all credentials ("auths") from the file at `path`, keeping every other key
    /// (credHelpers, credsStore, proxies, …). Nothing happens when the file does not exist.
    public static func removeAll(path: String) throws {
        guard var object = try readJSONObject(path) else { return }
        object["auths"] = [String: Any]()
        try writeJSONAtomically(object, path: path)
    }

    static func writeJSONAtomically(_ object: [String: Any], path: String) throws {
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        } catch {
            throw CtrError.authentication("\(path): cannot encode JSON: \(jsonErrorDetail(error))")
        }
        try makeDirectories((path as NSString).deletingLastPathComponent, mode: 0o700)
        try atomicWrite(data + Data("\n".utf8), to: path, mode: 0o600)
    }

    /// Creates `dir` and missing parents with `mode`; existing directories are left alone.
    static func makeDirectories(_ dir: String, mode: mode_t) throws {
        if dir.isEmpty || isDirectory(dir) { return }
        let parent = (dir as NSString).deletingLastPathComponent
        if parent != dir { try makeDirectories(parent, mode: mode) }
        if mkdir(dir, mode) != 0 && errno != EEXIST {
            throw CtrError.authentication("cannot create directory \(dir): \(String(cString: strerror(errno)))")
        }
    }

    /// Write to a temporary file in the same directory, fsync, rename over `path`.
    static func atomicWrite(_ data: Data, to path: String, mode: mode_t) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        var template = Array(joinPath(dir.isEmpty ? "." : dir, ".\(base).tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw CtrError.authentication("cannot write \(path): \(String(cString: strerror(errno)))") }
        let tmp = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        guard fchmod(fd, mode) == 0 else {
            let e = errno
            close(fd)
            throw CtrError.authentication("cannot write \(path): \(String(cString: strerror(e)))")
        }
        var failure: Int32 = 0
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += n
            }
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        if close(fd) != 0 && failure == 0 { failure = errno }
        if failure != 0 { throw CtrError.authentication("cannot write \(path): \(String(cString: strerror(failure)))") }
        if rename(tmp, path) != 0 { throw CtrError.authentication("cannot write \(path): \(String(cString: strerror(errno)))") }
        ok = true
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}

// MARK: - docker-credential-* helpers

public enum CredentialHelper {
    /// Runs `docker-credential-NAME get` with `serverURL` on stdin (found on `env`'s PATH, run with
    /// `env.environment`). Nil when the helper is not installed or reports "credentials not found";
    /// a username of "<token>" makes the secret an identity token. Other failures throw, naming the helper.
    public static func get(helper name: String, serverURL: String, env: AuthEnvironment) throws -> Credentials? {
        let program = "docker-credential-" + name
        guard !name.isEmpty, !name.contains("/"), let executable = find(program, path: env.environment["PATH"]) else {
            return nil
        }
        let (status, out, err) = try run(executable, arguments: ["get"], input: Data(serverURL.utf8), environment: env.environment, program: program)
        let outText = String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let errText = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if status != 0 {
            let text = outText.isEmpty ? errText : outText
            if text.lowercased().contains("credentials not found") { return nil }
            let firstLine = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            throw CtrError.authentication("credential helper \(program) failed to get credentials for \(serverURL): \(firstLine.isEmpty ? "exit status \(status)" : firstLine)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: out, options: []) as? [String: Any] else {
            throw CtrError.authentication("credential helper \(program) returned invalid JSON for \(serverURL)")
        }
        let user = object["Username"] as? String ?? ""
        let secret = object["Secret"] as? String ?? ""
        if user == "<token>" {
            return secret.isEmpty ? nil : Credentials(username: "", password: "", identityToken: secret)
        }
        if user.isEmpty && secret.isEmpty { return nil }
        return Credentials(username: user, password: secret)
    }

    /// The executable `program` on a PATH-style list (its environment's PATH), or nil.
    static func find(_ program: String, path: String?) -> String? {
        Command.find(program, path: path ?? "/usr/local/bin:/usr/bin:/bin")
    }

    static func run(_ executable: String, arguments: [String], input: Data, environment: [String: String],
                    program: String) throws -> (Int32, Data, Data) {
        do {
            let out = try Command(executable, arguments, environment: environment).run(input: Array(input))
            return (out.status, Data(out.stdout), Data(out.stderr))
        } catch {
            throw CtrError.authentication("cannot run credential helper \(program): \(error.reason ?? error.message)", cause: error)
        }
    }
}
