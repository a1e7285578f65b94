import Foundation
import Testing
@testable import Layers

/// Small inputs are hashed by ctr's own SHA-256 (no libcrypto on `ctr run`'s path), large
/// ones and streams by OpenSSL's: both must agree, at every padding boundary.
struct SHA256Tests {
    @Test func smallAndOpenSSLAgree() {
        var g = SystemRandomNumberGenerator()
        for len in [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65535, 65536, 65537, 200_000] {
            let data = Data((0..<len).map { _ in UInt8.random(in: 0...255, using: &g) })
            let oneshot = Digest.sha256(data)
            let h = SHA256Hasher()
            h.update(data)
            #expect(oneshot == h.finalize(), "length \(len)")
        }
        // a known answer: SHA-256("abc")
        #expect(Digest.sha256(Data("abc".utf8)).encoded == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
