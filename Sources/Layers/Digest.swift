import CSysShims
import Errors
import Foundation

/// A content digest as used by OCI and Docker: `<algorithm>:<lowercase hex>`.
///
/// Only `sha256` (64 hex characters) and `sha512` (128 hex characters) are accepted.
public struct Digest: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    /// "sha256" or "sha512".
    public let algorithm: String
    /// Lowercase hex: 64 characters for sha256, 128 for sha512.
    public let encoded: String

    /// Supported algorithms and the length of their hex encoding.
    static let hexLengths: [String: Int] = ["sha256": 64, "sha512": 128]

    private init(unchecked algorithm: String, encoded: String) {
        self.algorithm = algorithm
        self.encoded = encoded
    }

    /// Parses `"sha256:<hex>"` (or sha512). Rejects a missing colon, an unknown
    /// algorithm, uppercase or non-hex characters, and the wrong length.
    public init(parsing s: String) throws(CtrError) {
        if s.isEmpty { throw CtrError.invalidValue("digest", s, reason: "empty digest") }
        guard let colon = s.firstIndex(of: ":") else {
            throw CtrError.invalidValue("digest", s, reason: "missing ':' between algorithm and hex")
        }
        let algorithm = String(s[..<colon])
        let encoded = String(s[s.index(after: colon)...])
        if algorithm.isEmpty { throw CtrError.invalidValue("digest", s, reason: "missing algorithm") }
        guard let expected = Digest.hexLengths[algorithm] else {
            throw CtrError.invalidValue("digest", s, reason: "unsupported algorithm \"\(algorithm)\"")
        }
        if encoded.isEmpty { throw CtrError.invalidValue("digest", s, reason: "missing hex after ':'") }
        for b in encoded.utf8 where !Digest.isLowerHex(b) {
            if (0x41...0x46).contains(b) {
                throw CtrError.invalidValue("digest", s, reason: "hex must be lowercase")
            }
            throw CtrError.invalidValue("digest", s, reason: "invalid hex character \(Digest.describe(byte: b))")
        }
        let n = encoded.utf8.count
        if n != expected {
            throw CtrError.invalidValue("digest", s, reason: "\(algorithm) hex must be \(expected) characters, got \(n)")
        }
        self.init(unchecked: algorithm, encoded: encoded)
    }

    /// A sha256 digest from 64 lowercase hex characters. Traps on anything else.
    public init(sha256Hex: String) {
        precondition(sha256Hex.utf8.count == 64 && sha256Hex.utf8.allSatisfy(Digest.isLowerHex),
                     "Digest(sha256Hex:) needs 64 lowercase hex characters, got \"\(sha256Hex)\"")
        self.init(unchecked: "sha256", encoded: sha256Hex)
    }

    /// The sha256 digest and byte count of what is left to read on `fd`; nil on a read error.
    public static func sha256(fd: Int32) -> (digest: Digest, size: UInt64)? {
        var out = [UInt8](repeating: 0, count: 32)
        var size: UInt64 = 0
        guard csys_sha256_fd(fd, &out, &size) == 0 else { return nil }
        return (Digest(sha256Bytes: out), size)
    }

    /// A sha256 digest from 32 raw bytes. Traps on any other count.
    public init(sha256Bytes: [UInt8]) {
        precondition(sha256Bytes.count == 32, "Digest(sha256Bytes:) needs 32 bytes, got \(sha256Bytes.count)")
        self.init(unchecked: "sha256", encoded: Digest.hex(sha256Bytes))
    }

    /// `"sha256:<hex>"`.
    public var string: String { algorithm + ":" + encoded }
    public var description: String { string }
    /// The first 12 hex characters (Docker's short image id).
    public var short: String { String(encoded.prefix(12)) }

    public static func < (a: Digest, b: Digest) -> Bool {
        (a.algorithm, a.encoded) < (b.algorithm, b.encoded)
    }

    // MARK: hashing

    public static func sha256(_ data: some Sequence<UInt8>) -> Digest {
        if let d = data.withContiguousStorageIfAvailable({ oneshot(UnsafeRawBufferPointer($0)) }) {
            return d
        }
        return Array(data).withUnsafeBytes { oneshot($0) }
    }

    public static func sha256(_ data: Data) -> Digest {
        data.withUnsafeBytes { oneshot($0) }
    }

    private static func oneshot(_ buf: UnsafeRawBufferPointer) -> Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var empty: UInt8 = 0
        out.withUnsafeMutableBufferPointer { o in
            if let base = buf.baseAddress, buf.count > 0 {
                csys_sha256_oneshot(base, buf.count, o.baseAddress)
            } else {
                csys_sha256_oneshot(&empty, 0, o.baseAddress)
            }
        }
        return Digest(sha256Bytes: out)
    }

    // MARK: Codable

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        do {
            try self.init(parsing: s)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(string)
    }

    // MARK: helpers

    @inline(__always)
    static func isLowerHex(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x61...0x66).contains(b)
    }

    private static func describe(byte b: UInt8) -> String {
        if b >= 0x20 && b < 0x7f { return "'\(Character(Unicode.Scalar(b)))'" }
        return "0x" + String(b, radix: 16)
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: some Collection<UInt8>) -> String {
        var chars = [UInt8]()
        chars.reserveCapacity(bytes.count * 2)
        for b in bytes {
            chars.append(hexDigits[Int(b >> 4)])
            chars.append(hexDigits[Int(b & 0x0f)])
        }
        return String(decoding: chars, as: UTF8.self)
    }
}

extension CtrError {
    /// `input` is not a valid `what` ("digest", "reference", "platform"): reads
    /// `invalid what "input": reason`, with `reason` kept apart.
    static func invalidValue(_ what: String, _ input: String, reason: String) -> CtrError {
        CtrError(.invalidInput, "invalid \(what) \"\(input)\": \(reason)", reason: reason)
    }
}

/// Incremental SHA-256 over the OpenSSL-backed C shim.
///
/// Not safe for concurrent use: feed it from one task at a time. `finalize()` resets the
/// context, so the hasher can be reused for a new stream afterwards.
public final class SHA256Hasher: @unchecked Sendable {
    private let ctx: OpaquePointer

    public init() {
        guard let p = csys_sha256_new() else {
            fatalError("csys_sha256_new failed (out of memory?)")
        }
        ctx = p
    }

    deinit { csys_sha256_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        csys_sha256_update(ctx, base, bytes.count)
    }

    public func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// Returns the digest of everything fed so far and resets the hasher.
    public func finalize() -> Digest {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { csys_sha256_final(ctx, $0.baseAddress) }
        csys_sha256_reset(ctx)
        return Digest(sha256Bytes: out)
    }
}
