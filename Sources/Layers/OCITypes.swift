import Errors
import Foundation

// MARK: - Media types

/// An OCI or Docker media type. Codable as its raw string; unknown values are kept as-is.
public struct MediaType: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static let ociIndex = MediaType("application/vnd.oci.image.index.v1+json")
    public static let ociManifest = MediaType("application/vnd.oci.image.manifest.v1+json")
    public static let ociConfig = MediaType("application/vnd.oci.image.config.v1+json")
    public static let ociLayer = MediaType("application/vnd.oci.image.layer.v1.tar")
    public static let ociLayerGzip = MediaType("application/vnd.oci.image.layer.v1.tar+gzip")
    public static let ociLayerZstd = MediaType("application/vnd.oci.image.layer.v1.tar+zstd")
    public static let ociLayerNondistributable =
        MediaType("application/vnd.oci.image.layer.nondistributable.v1.tar")
    public static let ociLayerNondistributableGzip =
        MediaType("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
    public static let ociLayerNondistributableZstd =
        MediaType("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
    public static let ociEmpty = MediaType("application/vnd.oci.empty.v1+json")

    public static let dockerManifestList =
        MediaType("application/vnd.docker.distribution.manifest.list.v2+json")
    public static let dockerManifest = MediaType("application/vnd.docker.distribution.manifest.v2+json")
    public static let dockerConfig = MediaType("application/vnd.docker.container.image.v1+json")
    public static let dockerLayerGzip = MediaType("application/vnd.docker.image.rootfs.diff.tar.gzip")
    public static let dockerLayerForeignGzip =
        MediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    public static let dockerLayer = MediaType("application/vnd.docker.image.rootfs.diff.tar")

    public var isIndex: Bool { self == .ociIndex || self == .dockerManifestList }
    public var isManifest: Bool { self == .ociManifest || self == .dockerManifest }
    public var isConfig: Bool { self == .ociConfig || self == .dockerConfig }
    public var isLayer: Bool { layerCompression != nil }

    /// How a layer blob is compressed; nil if this is not a layer media type.
    public var layerCompression: Compression? {
        switch self {
        case .ociLayer, .ociLayerNondistributable, .dockerLayer:
            return Compression.none
        case .ociLayerGzip, .ociLayerNondistributableGzip, .dockerLayerGzip, .dockerLayerForeignGzip:
            return .gzip
        case .ociLayerZstd, .ociLayerNondistributableZstd:
            return .zstd
        default:
            return nil
        }
    }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

public enum Compression: String, Sendable, Codable {
    case none, gzip, zstd
}

// MARK: - Platform

public struct Platform: Codable, Hashable, Sendable, CustomStringConvertible {
    public var architecture: String
    public var os: String
    public var osVersion: String?
    public var osFeatures: [String]?
    public var variant: String?

    enum CodingKeys: String, CodingKey {
        case architecture
        case os
        case osVersion = "os.version"
        case osFeatures = "os.features"
        case variant
    }

    public init(os: String, architecture: String, variant: String? = nil,
                osVersion: String? = nil, osFeatures: [String]? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
        self.osVersion = osVersion
        self.osFeatures = osFeatures
    }

    /// Parses "os/arch[/variant]", e.g. "linux/arm64/v8". Lowercases, and normalises the
    /// common aliases x86_64 → amd64 and aarch64 → arm64.
    public init(parsing s: String) throws(CtrError) {
        let parts = s.lowercased().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3 else {
            throw CtrError.invalidValue("platform", s, reason: "expected os/architecture[/variant]")
        }
        for p in parts {
            if p.isEmpty { throw CtrError.invalidValue("platform", s, reason: "empty component") }
            if !p.utf8.allSatisfy({
                (0x30...0x39).contains($0) || (0x61...0x7a).contains($0)
                    || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
            }) {
                throw CtrError.invalidValue("platform", s, reason: "invalid characters in \"\(p)\"")
            }
        }
        var arch = parts[1]
        switch arch {
        case "x86_64", "x86-64": arch = "amd64"
        case "aarch64": arch = "arm64"
        default: break
        }
        self.init(os: parts[0], architecture: arch, variant: parts.count == 3 ? parts[2] : nil)
    }

    /// The platform this binary runs on.
    public static var current: Platform {
        #if arch(x86_64)
        return Platform(os: "linux", architecture: "amd64")
        #elseif arch(arm64)
        return Platform(os: "linux", architecture: "arm64", variant: "v8")
        #elseif arch(arm)
        return Platform(os: "linux", architecture: "arm", variant: "v7")
        #elseif arch(i386)
        return Platform(os: "linux", architecture: "386")
        #elseif arch(s390x)
        return Platform(os: "linux", architecture: "s390x")
        #elseif arch(powerpc64le)
        return Platform(os: "linux", architecture: "ppc64le")
        #elseif arch(riscv64)
        return Platform(os: "linux", architecture: "riscv64")
        #else
        return Platform(os: "linux", architecture: "unknown")
        #endif
    }

    /// Same os and architecture; variants must agree when both are set (arm64 with no
    /// variant counts as "v8").
    public func matches(_ other: Platform) -> Bool {
        guard os == other.os, architecture == other.architecture else { return false }
        if let a = normalizedVariant, let b = other.normalizedVariant { return a == b }
        return true
    }

    private var normalizedVariant: String? {
        if architecture == "arm64" && variant == nil { return "v8" }
        return variant
    }

    /// "linux/arm64/v8".
    public var description: String {
        var s = os + "/" + architecture
        if let variant { s += "/" + variant }
        return s
    }
}

// MARK: - Descriptors, manifests, indexes

public struct Descriptor: Codable, Hashable, Sendable {
    public var mediaType: MediaType
    public var digest: Digest
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    public var platform: Platform?
    public var artifactType: String?

    enum CodingKeys: String, CodingKey {
        case mediaType, digest, size, urls, annotations, platform, artifactType
    }

    public init(mediaType: MediaType, digest: Digest, size: Int64, urls: [String]? = nil,
                annotations: [String: String]? = nil, platform: Platform? = nil,
                artifactType: String? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.urls = urls
        self.annotations = annotations
        self.platform = platform
        self.artifactType = artifactType
    }
}

public struct Manifest: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var artifactType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
    public var subject: Descriptor?
    public var annotations: [String: String]?

    enum CodingKeys: String, CodingKey {
        case schemaVersion, mediaType, artifactType, config, layers, subject, annotations
    }

    public init(schemaVersion: Int = 2, mediaType: MediaType? = .ociManifest, artifactType: String? = nil,
                config: Descriptor, layers: [Descriptor], subject: Descriptor? = nil,
                annotations: [String: String]? = nil) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.config = config
        self.layers = layers
        self.subject = subject
        self.annotations = annotations
    }
}

public struct Index: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var artifactType: String?
    public var manifests: [Descriptor]
    public var subject: Descriptor?
    public var annotations: [String: String]?

    enum CodingKeys: String, CodingKey {
        case schemaVersion, mediaType, artifactType, manifests, subject, annotations
    }

    public init(schemaVersion: Int = 2, mediaType: MediaType? = .ociIndex, artifactType: String? = nil,
                manifests: [Descriptor], subject: Descriptor? = nil,
                annotations: [String: String]? = nil) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.manifests = manifests
        self.subject = subject
        self.annotations = annotations
    }
}

// MARK: - Image config

public struct ImageConfig: Codable, Hashable, Sendable {
    /// RFC 3339 timestamp, kept as text so re-encoding never changes it.
    public var created: String?
    public var author: String?
    public var architecture: String
    public var os: String
    public var osVersion: String?
    public var osFeatures: [String]?
    public var variant: String?
    public var config: ContainerConfig?
    public var rootfs: RootFS
    public var history: [History]?

    enum CodingKeys: String, CodingKey {
        case created, author, architecture, os
        case osVersion = "os.version"
        case osFeatures = "os.features"
        case variant, config, rootfs, history
    }

    public init(created: String? = nil, author: String? = nil, architecture: String = "", os: String = "",
                osVersion: String? = nil, osFeatures: [String]? = nil, variant: String? = nil,
                config: ContainerConfig? = nil, rootfs: RootFS, history: [History]? = nil) {
        self.created = created
        self.author = author
        self.architecture = architecture
        self.os = os
        self.osVersion = osVersion
        self.osFeatures = osFeatures
        self.variant = variant
        self.config = config
        self.rootfs = rootfs
        self.history = history
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        created = try c.decodeIfPresent(String.self, forKey: .created)
        author = try c.decodeIfPresent(String.self, forKey: .author)
        architecture = try c.decodeIfPresent(String.self, forKey: .architecture) ?? ""
        os = try c.decodeIfPresent(String.self, forKey: .os) ?? ""
        osVersion = try c.decodeIfPresent(String.self, forKey: .osVersion)
        osFeatures = try c.decodeIfPresent([String].self, forKey: .osFeatures)
        variant = try c.decodeIfPresent(String.self, forKey: .variant)
        config = try c.decodeIfPresent(ContainerConfig.self, forKey: .config)
        rootfs = try c.decode(RootFS.self, forKey: .rootfs)
        history = try c.decodeIfPresent([History].self, forKey: .history)
    }

    /// The platform this config declares.
    public var platform: Platform {
        Platform(os: os, architecture: architecture, variant: variant, osVersion: osVersion,
                 osFeatures: osFeatures)
    }
}

/// The runtime defaults of an image ("config" inside the image config), with Docker's keys.
public struct ContainerConfig: Codable, Hashable, Sendable {
    public var user: String?
    public var exposedPorts: [String: EmptyObject]?
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var volumes: [String: EmptyObject]?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?
    public var argsEscaped: Bool?
    public var healthcheck: HealthConfig?
    public var onBuild: [String]?
    public var shell: [String]?

    enum CodingKeys: String, CodingKey {
        case user = "User"
        case exposedPorts = "ExposedPorts"
        case env = "Env"
        case entrypoint = "Entrypoint"
        case cmd = "Cmd"
        case volumes = "Volumes"
        case workingDir = "WorkingDir"
        case labels = "Labels"
        case stopSignal = "StopSignal"
        case argsEscaped = "ArgsEscaped"
        case healthcheck = "Healthcheck"
        case onBuild = "OnBuild"
        case shell = "Shell"
    }

    public init(user: String? = nil, exposedPorts: [String: EmptyObject]? = nil, env: [String]? = nil,
                entrypoint: [String]? = nil, cmd: [String]? = nil, volumes: [String: EmptyObject]? = nil,
                workingDir: String? = nil, labels: [String: String]? = nil, stopSignal: String? = nil,
                argsEscaped: Bool? = nil, healthcheck: HealthConfig? = nil, onBuild: [String]? = nil,
                shell: [String]? = nil) {
        self.user = user
        self.exposedPorts = exposedPorts
        self.env = env
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.volumes = volumes
        self.workingDir = workingDir
        self.labels = labels
        self.stopSignal = stopSignal
        self.argsEscaped = argsEscaped
        self.healthcheck = healthcheck
        self.onBuild = onBuild
        self.shell = shell
    }
}

public struct HealthConfig: Codable, Hashable, Sendable {
    public var test: [String]?
    /// Nanoseconds.
    public var interval: Int64?
    public var timeout: Int64?
    public var startPeriod: Int64?
    public var startInterval: Int64?
    public var retries: Int?

    enum CodingKeys: String, CodingKey {
        case test = "Test"
        case interval = "Interval"
        case timeout = "Timeout"
        case startPeriod = "StartPeriod"
        case startInterval = "StartInterval"
        case retries = "Retries"
    }

    public init(test: [String]? = nil, interval: Int64? = nil, timeout: Int64? = nil,
                startPeriod: Int64? = nil, startInterval: Int64? = nil, retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.startInterval = startInterval
        self.retries = retries
    }
}

/// Encodes as `{}`; decodes from any JSON object (its contents are ignored).
public struct EmptyObject: Codable, Hashable, Sendable {
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        _ = try decoder.container(keyedBy: AnyKey.self)
    }

    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: AnyKey.self)
    }
}

public struct RootFS: Codable, Hashable, Sendable {
    public var type: String
    public var diffIDs: [Digest]

    enum CodingKeys: String, CodingKey {
        case type
        case diffIDs = "diff_ids"
    }

    public init(type: String = "layers", diffIDs: [Digest]) {
        self.type = type
        self.diffIDs = diffIDs
    }
}

public struct History: Codable, Hashable, Sendable {
    public var created: String?
    public var createdBy: String?
    public var author: String?
    public var comment: String?
    public var emptyLayer: Bool?

    enum CodingKeys: String, CodingKey {
        case created
        case createdBy = "created_by"
        case author, comment
        case emptyLayer = "empty_layer"
    }

    public init(created: String? = nil, createdBy: String? = nil, author: String? = nil,
                comment: String? = nil, emptyLayer: Bool? = nil) {
        self.created = created
        self.createdBy = createdBy
        self.author = author
        self.comment = comment
        self.emptyLayer = emptyLayer
    }
}

// MARK: - JSON

/// A JSON document that failed to decode, in one line: what it was, where, and why.
extension CtrError {
    /// A document that does not decode: `what` was being decoded ("manifest sha256:…"), `path`
    /// is the key path of the failing value ("layers[2].digest"; empty at the top level).
    static func json(what: String, path: String, reason: String) -> CtrError {
        CtrError(.invalidInput, path.isEmpty ? "invalid \(what): \(reason)" : "invalid \(what): at \(path): \(reason)",
                 keyPath: path, reason: reason)
    }
}

public enum CanonicalJSON {
    /// Sorted keys, unescaped slashes: the same value always encodes to the same bytes.
    public static func encode<T: Encodable>(_ v: T) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(v)
    }

    /// Decodes `t`, turning a `DecodingError` into a one-line error naming `what` (`CtrError.json`).
    public static func decode<T: Decodable>(_ t: T.Type, from data: Data, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(t, from: data)
        } catch let e as DecodingError {
            throw jsonError(e, what: what)
        }
    }

    static func jsonError(_ e: DecodingError, what: String) -> CtrError {
        func path(_ keys: [any CodingKey]) -> String {
            var s = ""
            for k in keys {
                if let i = k.intValue {
                    s += "[\(i)]"
                } else {
                    if !s.isEmpty { s += "." }
                    s += k.stringValue
                }
            }
            return s
        }
        func oneLine(_ s: String) -> String {
            s.split(whereSeparator: \.isNewline).joined(separator: " ")
        }
        func detail(_ c: DecodingError.Context) -> String {
            var s = oneLine(c.debugDescription)
            if let u = c.underlyingError {
                let extra = oneLine(String(describing: u))
                if !extra.isEmpty && !s.contains(extra) { s += " (\(extra))" }
            }
            return s
        }
        switch e {
        case .typeMismatch(let type, let c):
            return CtrError.json(what: what, path: path(c.codingPath),
                                 reason: "expected \(typeName(type)): \(detail(c))")
        case .valueNotFound(let type, let c):
            return CtrError.json(what: what, path: path(c.codingPath),
                                 reason: "missing \(typeName(type)) value: \(detail(c))")
        case .keyNotFound(let key, let c):
            return CtrError.json(what: what, path: path(c.codingPath + [key]),
                                 reason: "missing required key \"\(key.stringValue)\"")
        case .dataCorrupted(let c):
            return CtrError.json(what: what, path: path(c.codingPath), reason: detail(c))
        @unknown default:
            return CtrError.json(what: what, path: "", reason: oneLine(String(describing: e)))
        }
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type, is Double.Type: return "a number"
        default:
            let n = String(describing: t)
            if n.hasPrefix("Array<") { return "an array" }
            if n.hasPrefix("Dictionary<") { return "an object" }
            return n
        }
    }
}

// MARK: - Schema versions

/// Manifests and indexes ctr reads are schema 2 (Docker v2s2, OCI). Docker's schema 1 (a
/// signed document of another shape, retired in favour of schema 2) and any other
/// schemaVersion are refused before anything of them is read as an image.
public enum ManifestSchema {
    public static let dockerV1 = MediaType("application/vnd.docker.distribution.manifest.v1+json")
    public static let dockerV1Signed = MediaType("application/vnd.docker.distribution.manifest.v1+prettyjws")

    /// Why `data` (served or listed as `mediaType`) is not a schema 2 manifest or index, as
    /// words that follow its name ("… is a Docker schema 1 manifest …"); nil when it is one, or
    /// when it is not JSON at all (the decoder says so then).
    public static func problem(_ data: Data, mediaType: MediaType?) -> String? {
        struct Peek: Decodable {
            var schemaVersion: Int?
            var mediaType: String?
            var fsLayers: [[String: String]]?
        }
        let peek = try? JSONDecoder().decode(Peek.self, from: data)
        let media = [mediaType?.rawValue, peek?.mediaType].compactMap { $0 }
        let v1 = media.first { $0 == dockerV1.rawValue || $0 == dockerV1Signed.rawValue }
        if v1 != nil || (peek?.schemaVersion == 1 && peek?.fsLayers != nil) {
            return "is a Docker schema 1 manifest (\(v1 ?? "schemaVersion 1")): a retired format ctr does not read; push the image again with a current docker, podman or skopeo"
        }
        guard let peek else { return nil }
        if peek.schemaVersion != 2 {
            return "has \(peek.schemaVersion.map { "schemaVersion \($0)" } ?? "no schemaVersion"); a manifest or index must have schemaVersion 2"
        }
        return nil
    }
}
