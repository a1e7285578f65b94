import ArgumentParser
import Testing
@testable import ctr

/// `ctr build`'s flags as the build request gets them.
@Suite struct BuildFlagsTests {
    @Test func labels() throws {
        let r = try Build.parse(["--label", "a=b=c", "--label", "k", "--label", "e=", "."]).request()
        #expect(r.options.labels == ["a": "b=c", "k": "", "e": ""])
    }

    /// A label without a key is a usage error naming it (it crashed ctr).
    @Test(arguments: ["", "=x"])
    func labelWithoutKey(_ spec: String) throws {
        #expect(throws: ValidationError.self) { try Build.parse(["--label", spec, "."]).request() }
    }

    @Test func isolation() throws {
        #expect(try Build.parse(["--isolation", "chroot", "."]).request().options.isolation == .level(.chroot))
        #expect(throws: ValidationError.self) { try Build.parse(["--isolation", "vm", "."]).request() }
    }
}
