import Errors
import Foundation

/// An image reference (`[registry/]repository[:tag][@digest]`), parsed and normalised the way
/// docker/distribution's `reference.ParseNormalizedNamed` does it.
public struct Reference: Hashable, Sendable, CustomStringConvertible {
    public static let dockerHub = "docker.io"
    static let legacyDockerHub = "index.docker.io"
    static let officialPrefix = "library/"
    static let nameTotalLengthMax = 255
    static let tagLengthMax = 128

    /// "docker.io", "127.0.0.1:5000", "localhost", "example.com", "[::1]:5000".
    public var registry: String
    /// "library/busybox", "team/app".
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    public init(registry: String, repository: String, tag: String?, digest: Digest?) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    /// Parses and normalises a reference. With `defaultTag` and neither a tag nor a digest,
    /// the tag becomes "latest".
    /// A reference that may carry containers-transports' `docker://` in front, as podman and
    /// skopeo take it (`ctr pull docker://quay.io/x`).
    public init(parsingRegistryReference s: String) throws(CtrError) {
        try self.init(parsing: s.hasPrefix("docker://") ? String(s.dropFirst("docker://".count)) : s)
    }

    public init(parsing s: String, defaultTag: Bool = true) throws(CtrError) {
        func fail(_ reason: String) -> CtrError { .invalidValue("reference", s, reason: reason) }

        if s.isEmpty { throw fail("empty reference") }
        if s.utf8.count == 64 && s.utf8.allSatisfy(Digest.isLowerHex) {
            throw fail("cannot be a 64-character hexadecimal string")
        }
        if let bad = s.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value >= 0x7f }) {
            throw fail("contains invalid character \(Self.describe(bad))")
        }
        if let scheme = s.range(of: "://") {
            throw fail("\(s[..<scheme.upperBound]) is not part of an image name: write HOST[:PORT]/REPO[:TAG]")
        }

        // name[:tag][@digest]; neither the name nor the tag can contain '@'.
        var rest = Substring(s)
        var digest: Digest?
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
            if d.isEmpty { throw fail("empty digest after '@'") }
            do {
                digest = try Digest(parsing: d)
            } catch {
                throw fail("bad digest: \(error.reason ?? error.message)")
            }
        }

        // The tag follows the last ':' that has no '/' after it (a ':' before a '/' is a port).
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let t = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
            if t.isEmpty { throw fail("empty tag after ':'") }
            if !Reference.isValidTag(t) {
                if t.utf8.count > Reference.tagLengthMax {
                    throw fail("tag longer than \(Reference.tagLengthMax) characters")
                }
                throw fail("invalid tag \"\(t)\"")
            }
            tag = t
        }

        let name = rest
        if name.isEmpty { throw fail("empty repository name") }
        if name.utf8.count > Reference.nameTotalLengthMax {
            throw fail("repository name longer than \(Reference.nameTotalLengthMax) characters")
        }

        // splitDockerDomain: the first component is a registry if it looks like a host.
        var registry: String
        var remainder: Substring
        if let slash = name.firstIndex(of: "/") {
            let first = name[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost"
                || first.lowercased() != first {
                registry = String(first)
                remainder = name[name.index(after: slash)...]
                if let why = Reference.hostProblem(registry) { throw fail(why) }
            } else {
                registry = Reference.dockerHub
                remainder = name
            }
        } else {
            registry = Reference.dockerHub
            remainder = name
        }

        if remainder.isEmpty { throw fail("empty repository path") }
        if remainder.lowercased() != remainder {
            throw fail("repository name must be lowercase")
        }
        for component in remainder.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { throw fail("empty path component in repository") }
            if !Reference.isValidPathComponent(component) {
                throw fail("invalid repository path component \"\(component)\"")
            }
        }

        if registry == Reference.legacyDockerHub { registry = Reference.dockerHub }
        var repository = String(remainder)
        if registry == Reference.dockerHub && !repository.contains("/") {
            repository = Reference.officialPrefix + repository
        }

        if defaultTag && tag == nil && digest == nil { tag = "latest" }
        self.init(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    /// "docker.io/library/busybox".
    public var name: String { registry + "/" + repository }

    /// "docker.io/library/busybox:1", "...@sha256:…", "...:1@sha256:…".
    public var string: String { name + suffix }

    public var description: String { string }

    /// Docker's short form: "busybox" for docker.io/library/busybox, "team/app" for
    /// docker.io/team/app, otherwise the full name.
    public var familiarName: String {
        guard registry == Reference.dockerHub else { return name }
        if repository.hasPrefix(Reference.officialPrefix) {
            let rest = repository.dropFirst(Reference.officialPrefix.count)
            if !rest.contains("/") { return String(rest) }
        }
        return repository
    }

    /// `familiarName` plus ":tag" and/or "@digest".
    public var familiar: String { familiarName + suffix }

    private var suffix: String {
        var s = ""
        if let tag { s += ":" + tag }
        if let digest { s += "@" + digest.string }
        return s
    }

    /// A copy with `tag` and no digest. The tag is not validated; see `isValidTag`.
    public func withTag(_ tag: String) -> Reference {
        Reference(registry: registry, repository: repository, tag: tag, digest: nil)
    }

    /// A copy pinned to `d`, keeping the tag.
    public func withDigest(_ d: Digest) -> Reference {
        Reference(registry: registry, repository: repository, tag: tag, digest: d)
    }

    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    public static func isValidTag(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard let first = u.first, u.count <= tagLengthMax else { return false }
        guard isAlnum(first) || first == UInt8(ascii: "_") else { return false }
        return u.dropFirst().allSatisfy {
            isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
        }
    }

    // MARK: grammar helpers

    private static func isAlnum(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x5a).contains(b) || (0x61...0x7a).contains(b)
    }

    private static func isLowerAlnum(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x61...0x7a).contains(b)
    }

    /// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
    static func isValidPathComponent(_ s: Substring) -> Bool {
        let u = Array(s.utf8)
        var i = 0
        func alnumRun() -> Bool {
            let start = i
            while i < u.count && isLowerAlnum(u[i]) { i += 1 }
            return i > start
        }
        guard alnumRun() else { return false }
        while i < u.count {
            let c = u[i]
            if c == UInt8(ascii: ".") {
                i += 1
            } else if c == UInt8(ascii: "_") {
                i += 1
                if i < u.count && u[i] == UInt8(ascii: "_") { i += 1 }
            } else if c == UInt8(ascii: "-") {
                while i < u.count && u[i] == UInt8(ascii: "-") { i += 1 }
            } else {
                return false
            }
            guard alnumRun() else { return false }
        }
        return true
    }

    /// Checks `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
    /// Returns a reason on failure.
    static func hostProblem(_ registry: String) -> String? {
        var host = Substring(registry)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                return "unterminated '[' in registry \"\(registry)\""
            }
            let inside = host[host.index(after: host.startIndex)..<close]
            let after = host[host.index(after: close)...]
            if inside.isEmpty || !inside.utf8.allSatisfy({ $0 == UInt8(ascii: ":") || isHex($0) }) {
                return "invalid IPv6 address in registry \"\(registry)\""
            }
            if !after.isEmpty {
                guard after.first == ":" else { return "invalid registry \"\(registry)\"" }
                port = after.dropFirst()
            }
            host = host[...close]
        } else {
            if let colon = host.firstIndex(of: ":") {
                port = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            if host.isEmpty { return "empty registry host" }
            for component in host.split(separator: ".", omittingEmptySubsequences: false) {
                let u = Array(component.utf8)
                guard let f = u.first, let l = u.last, isAlnum(f), isAlnum(l),
                      u.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") })
                else { return "invalid registry host \"\(host)\"" }
            }
        }
        if let port {
            if port.isEmpty || !port.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
                return "invalid registry port \"\(port)\""
            }
        }
        return nil
    }

    private static func isHex(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b)
    }

    private static func describe(_ u: Unicode.Scalar) -> String {
        if u.value < 0x20 || u.value == 0x7f { return "U+" + String(u.value, radix: 16, uppercase: true) }
        if u == " " { return "' '" }
        return "'\(u)'"
    }
}
