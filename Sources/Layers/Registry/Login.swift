import Foundation

/// `ctr login` and `ctr logout`: credentials checked with the registry, kept where podman
/// keeps them.
public enum RegistryLogin {
    /// The registry a login names: "https://index.docker.io/v1/" → "docker.io",
    /// "http://h:5000/" → "h:5000", "quay.io/team" → "quay.io".
    public static func host(_ server: String) -> String {
        var h = server
        for p in ["https://", "http://"] where h.hasPrefix(p) { h = String(h.dropFirst(p.count)) }
        if let slash = h.firstIndex(of: "/") { h = String(h[..<slash]) }
        if h == "index.docker.io" || h == "registry-1.docker.io" { h = "docker.io" }
        return h
    }

    /// The credentials the auth files hold for `host` (`--authfile` first), if any.
    public static func stored(for host: String, options: RegistryOptions) throws -> Credentials? {
        try AuthFile.credentials(for: host, reference: nil, env: options.authEnvironment)
    }

    /// Check `credentials` with the registry, then store them in the auth file podman's login
    /// writes (`--authfile` when given).
    public static func login(_ credentials: Credentials, to host: String, options: RegistryOptions) throws {
        var o = options
        o.credentials = credentials
        try RegistryAccess(o).client(for: host).checkLogin()
        try AuthFile.store(credentials, for: host, path: AuthFile.defaultWritePath(env: options.authEnvironment))
    }

    /// Remove the credentials of `host`, or of every registry (nil), from the auth file login
    /// writes. Returns that file, and whether it held credentials for `host`.
    public static func logout(_ host: String?, env: AuthEnvironment) throws -> (path: String, removed: Bool) {
        let path = AuthFile.defaultWritePath(env: env)
        guard let host else {
            try AuthFile.removeAll(path: path)
            return (path, true)
        }
        return (path, try AuthFile.remove(registry: host, path: path))
    }
}
