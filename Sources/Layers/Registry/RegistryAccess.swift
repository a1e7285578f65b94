import Errors
import Foundation
import HostOS

/// What the user said about registries on the command line.
public struct RegistryOptions: Sendable {
    /// --tls-verify: nil when not given (registries.conf and Docker's loopback rule decide).
    public var tlsVerify: Bool?
    /// --cert-dir: replaces the certs.d search.
    public var certDir: String?
    /// --authfile
    public var authFile: String?
    /// --creds user:password
    public var credentials: Credentials?
    public var environment: [String: String]
    public var home: String
    /// Where a client's "waiting" and "retrying" notes go (nil: nowhere).
    public var notice: (@Sendable (String) -> Void)?

    public init(tlsVerify: Bool? = nil, certDir: String? = nil, authFile: String? = nil, credentials: Credentials? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment, home: String? = nil) {
        self.tlsVerify = tlsVerify
        self.certDir = certDir
        self.authFile = authFile
        self.credentials = credentials
        self.environment = environment
        self.home = home ?? environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    }

    var authEnvironment: AuthEnvironment {
        var env = environment
        if let authFile { env["REGISTRY_AUTH_FILE"] = authFile }
        return AuthEnvironment(environment: env, home: home, uid: getuid())
    }
}

/// Builds registry clients from registries.conf, certs.d directories and auth files; one client
/// per registry host, shared by every transfer of a command.
public final class RegistryAccess: @unchecked Sendable {
    public let options: RegistryOptions
    public let conf: RegistriesConf
    /// CTR_REGISTRY_TIMEOUT: seconds a request may go without progress, its retries included.
    public let idleLimit: Double
    private var clients: [String: RegistryClient] = [:]
    private let lock = NSLock()

    public init(_ options: RegistryOptions = RegistryOptions()) throws {
        self.options = options
        idleLimit = try RegistryClient.idleLimit(from: options.environment)
        conf = try RegistriesConf.loadDefault(environment: options.environment, home: options.home)
    }


    /// The client for `registry` (a host[:port] as references name it). `insecure` comes from
    /// registries.conf; --tls-verify overrides; loopback registries are insecure by default, as
    /// in Docker.
    public func client(for registry: String, insecure confInsecure: Bool = false) throws -> RegistryClient {
        lock.lock()
        if let c = clients[registry] { lock.unlock(); return c }
        lock.unlock()
        let insecure: Bool
        switch options.tlsVerify {
        case .some(let verify): insecure = !verify
        case .none: insecure = confInsecure || conf.isInsecure(host: registry) || RegistryEndpoint.isLoopback(registry)
        }
        let material: TLSMaterial
        do {
            material = try CertsDir.material(for: registry, dirs: CertsDir.defaultDirs(home: options.home), certDir: options.certDir)
        } catch {
            throw CtrError.wrapping(error, "\(registry): \(error)")
        }
        var tls = TLSSettings(verify: !insecure)
        if !material.caFiles.isEmpty {
            // the registry's CAs are added to the system's, as Docker and podman do
            var pem = Data()
            for f in ["/etc/ssl/certs/ca-certificates.crt"] + material.caFiles {
                if let d = FileManager.default.contents(atPath: f) { pem.append(d); pem.append(Data("\n".utf8)) }
            }
            tls.caPEM = pem
        }
        tls.clientCert = material.clientCert
        tls.clientKey = material.clientKey
        var creds = options.credentials
        if creds == nil {
            do {
                creds = try AuthFile.credentials(for: registry, reference: nil, env: options.authEnvironment)
            } catch {
                throw CtrError.wrapping(error, "\(error)")
            }
        }
        var endpoint = RegistryEndpoint(registry: registry, insecure: insecure, tls: tls, credentials: creds)
        if creds == nil {
            let env = options.authEnvironment
            endpoint.missingHelper = { AuthFile.missingHelper(for: registry, env: env) }
        }
        let client = RegistryClient(endpoint)
        client.idleLimit = idleLimit
        client.notice = options.notice
        lock.lock()
        defer { lock.unlock() }
        if let c = clients[registry] { return c }
        clients[registry] = client
        return client
    }

    /// "PREFIX is blocked in FILE:LINE", naming the registries.conf entry that blocks.
    func blockedBy(_ entry: RegistryEntry?, _ fallback: String) -> String {
        guard let entry else { return "\(fallback) is blocked in registries.conf" }
        let at = entry.file.map { f in entry.line.map { "\(f):\($0)" } ?? f } ?? "registries.conf"
        return "\(entry.prefix.isEmpty ? fallback : entry.prefix) is blocked in \(at)"
    }

    /// Where to pull `ref` from: mirrors first, then the registry itself (registries.conf).
    public func pullSources(_ ref: Reference) throws -> [(client: RegistryClient, ref: Reference, mirror: Bool)] {
        let sources: [PullSource]
        do {
            sources = try conf.pullSources(for: ref)
        } catch {
            throw CtrError.wrapping(error, "\(error)")
        }
        var out: [(RegistryClient, Reference, Bool)] = []
        for s in sources {
            if s.blocked {
                if s.isMirror { continue }
                throw CtrError.conflict("\(blockedBy(conf.registry(for: s.reference) ?? conf.registry(for: ref), s.location)) (pulling \(ref.string))")
            }
            out.append((try client(for: s.reference.registry, insecure: s.insecure), s.reference, s.isMirror))
        }
        return out
    }

    /// Where to push `ref`: the registry's location from registries.conf (no mirrors).
    public func pushTarget(_ ref: Reference) throws -> (client: RegistryClient, ref: Reference) {
        if conf.isBlocked(ref) { throw CtrError.conflict("\(blockedBy(conf.registry(for: ref), ref.registry)) (pushing \(ref.string))") }
        var target = ref
        if let entry = conf.registry(for: ref), !entry.location.isEmpty {
            target = (try? entry.rewrite(ref, toLocation: entry.location)) ?? ref
        }
        return (try client(for: target.registry, insecure: conf.isInsecure(target)), target)
    }
}
