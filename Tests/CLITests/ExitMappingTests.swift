import ArgumentParser
import Errors
import Testing
@testable import ctr

/// Errors to exit statuses, in the one place ctr decides them (docker's conventions).
@Suite struct ExitMappingTests {
    static let transport = CtrError.Code.transport(.init(.connect))

    /// (code, command class, status)
    static let table: [(code: CtrError.Code, command: ExitMapping.Command, status: Int32)] = [
        // ctr run: ctr's own failures are 125, whatever they are
        (.usage, .run, 125), (.notFound, .run, 125), (.conflict, .run, 125), (.invalidInput, .run, 125),
        (.registry(status: 404, code: "MANIFEST_UNKNOWN"), .run, 125), (.authentication, .run, 125), (transport, .run, 125),
        (.system, .run, 125), (.unsupported, .run, 125), (.internal, .run, 125),
        // the command's own status, and 126/127 when it could not be executed
        (.container(status: 3), .run, 3), (.container(status: 126), .run, 126), (.container(status: 127), .run, 127),
        (.interrupted(signal: 2), .run, 130), (.interrupted(signal: 15), .run, 143),
        // ctr exec: as run, but no such container / not running is 1, as docker exec
        (.notFound, .exec, 1), (.conflict, .exec, 1),
        (.usage, .exec, 125), (.system, .exec, 125), (.invalidInput, .exec, 125), (.unsupported, .exec, 125),
        (.container(status: 5), .exec, 5), (.container(status: 127), .exec, 127), (.interrupted(signal: 1), .exec, 129),
        // everything else: 1; a command run for the user (unshare) ends with its status
        (.usage, .other, 1), (.notFound, .other, 1), (.conflict, .other, 1), (.invalidInput, .other, 1),
        (.registry(status: 500, code: nil), .other, 1), (.authentication, .other, 1), (transport, .other, 1),
        (.system, .other, 1), (.unsupported, .other, 1), (.internal, .other, 1),
        (.container(status: 7), .other, 7), (.interrupted(signal: 2), .other, 130),
    ]

    @Test(arguments: table)
    func statusOfCode(_ code: CtrError.Code, _ command: ExitMapping.Command, _ status: Int32) {
        #expect(ExitMapping.of(code, in: command) == status)
    }

    @Test func commandClasses() throws {
        #expect(ExitMapping.Command(try CTR.parseAsRoot(["run", "busybox", "true"])) == .run)
        #expect(ExitMapping.Command(try CTR.parseAsRoot(["exec", "web", "true"])) == .exec)
        for args in [["images"], ["build", "."], ["pull", "busybox"], ["unshare", "true"], ["rm", "web"]] {
            #expect(ExitMapping.Command(try CTR.parseAsRoot(args)) == .other, "\(args)")
        }
    }

    @Test func whatIsPrinted() {
        let bad = CtrError.invalid("seccomp profile /p.json: defaultAction is missing")
        #expect(ExitMapping.outcome(for: bad, in: .run, stopSignal: 0) == (125, "Error: seccomp profile /p.json: defaultAction is missing"))
        #expect(ExitMapping.outcome(for: bad, in: .other, stopSignal: 0) == (1, "Error: seccomp profile /p.json: defaultAction is missing"))
        // FILE:LINE in front
        let df = CtrError.at(file: "Dockerfile", line: 2, "unknown instruction: BOGUS")
        #expect(ExitMapping.outcome(for: df, in: .other, stopSignal: 0) == (1, "Error: Dockerfile:2: unknown instruction: BOGUS"))
        // the container's own status: nothing to say
        #expect(ExitMapping.outcome(for: CtrError(.container(status: 3), ""), in: .run, stopSignal: 0) == (3, nil))
        // stopped by a signal: its status, whatever the error, and nothing printed
        #expect(ExitMapping.outcome(for: bad, in: .other, stopSignal: 15) == (143, nil))
        #expect(ExitMapping.outcome(for: CtrError(.interrupted(signal: 2), "interrupted"), in: .other, stopSignal: 2) == (130, nil))
    }

    struct Foreign: Error, CustomStringConvertible {
        var description: String { "not one of ctr's" }
    }

    @Test func argumentParsersAndForeignErrors() {
        // usage errors keep ArgumentParser's 64 and its usage text
        let usage = ExitMapping.outcome(for: ValidationError("--pull must be missing, always or never"), in: .run, stopSignal: 0)
        #expect(usage.status == 64)
        #expect(usage.text?.hasPrefix("Error: --pull must be missing, always or never\nUsage: ctr") == true, "\(usage.text ?? "")")
        #expect(ExitMapping.outcome(for: ExitCode(9), in: .other, stopSignal: 0) == (9, nil))
        // an error that is not ctr's is still ctr's own failure, printed as ArgumentParser does
        #expect(ExitMapping.outcome(for: Foreign(), in: .run, stopSignal: 0) == (125, "Error: not one of ctr's"))
        #expect(ExitMapping.outcome(for: Foreign(), in: .exec, stopSignal: 0) == (125, "Error: not one of ctr's"))
        #expect(ExitMapping.outcome(for: Foreign(), in: .other, stopSignal: 0) == (1, "Error: not one of ctr's"))
    }
}
