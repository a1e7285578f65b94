import Errors
import Testing

/// The one error type: what it prints (one line, FILE:LINE first when known), its code, and
/// its cause chain, which prints as the wrapping messages always did (the outer line only).
@Suite struct CtrErrorTests {
    @Test func oneLineWithFileAndLine() {
        #expect(CtrError.invalid("blob sha256:ab is missing").description == "blob sha256:ab is missing")
        let at = CtrError.at(file: "/etc/containers/registries.conf", line: 4, "unterminated string")
        #expect(at.description == "/etc/containers/registries.conf:4: unterminated string")
        #expect(at.message == "unterminated string" && at.code == .invalidInput)
        #expect(CtrError.at(file: "/etc/containers/registries.conf", "not valid UTF-8").description
                == "/etc/containers/registries.conf: not valid UTF-8")
        let sys = CtrError.system("mount", errno: 1, "cannot mount /proc: Operation not permitted")
        #expect(sys.description == "cannot mount /proc: Operation not permitted" && sys.stage == "mount" && sys.errno == 1)
    }

    @Test func wrappingKeepsTheCauseAndItsCode() {
        let inner = CtrError.authentication("/run/user/1000/containers/auth.json: invalid JSON: Invalid value around character 1.")
        let outer = CtrError.wrapping(inner, "127.0.0.1:5000: \(inner)")
        #expect(outer.description == "127.0.0.1:5000: /run/user/1000/containers/auth.json: invalid JSON: Invalid value around character 1.")
        #expect(outer.code == .authentication)
        #expect((outer.cause as? CtrError) == inner)
        // a code of the caller's choosing
        let step = CtrError.wrapping(CtrError(.container(status: 127), "exec: \"x\": not found"), "RUN x: exec: \"x\": not found",
                                     code: .invalidInput)
        #expect(step.code == .invalidInput)
        // three deep: the chain, outermost first; the text is the outer line only
        let top = CtrError.wrapping(outer, "pull failed: \(outer)", code: .registry(status: 401, code: "UNAUTHORIZED"))
        #expect(top.chain.compactMap { ($0 as? CtrError)?.message } == [top.message, outer.message, inner.message])
        #expect(top.description == "pull failed: 127.0.0.1:5000: /run/user/1000/containers/auth.json: invalid JSON: Invalid value around character 1.")
    }

    @Test func prefixedNamesTheSource() {
        let e = CtrError.notFound("blob sha256:ab is missing")
        let p = e.prefixed("image.tar")
        #expect(p.description == "image.tar: blob sha256:ab is missing")
        #expect(p.code == .notFound && (p.cause as? CtrError) == e)
        // a located error keeps its location in the text
        #expect(CtrError.at(file: "d.conf", line: 2, "bad").prefixed("load").description == "load: d.conf:2: bad")
    }

    struct Foreign: Error {}

    @Test func codesOfAnyError() {
        #expect(CtrError.Code.of(CtrError.conflict("in use")) == .conflict)
        #expect(CtrError.Code.of(Foreign()) == .internal)
        #expect(CtrError.wrapping(Foreign(), "x").code == .internal)
        let t = CtrError.transport(.cut, "connection reset", received: 10)
        #expect(t.transport == CtrError.Transport(.cut, received: 10) && t.transport?.transient == true)
        #expect(CtrError.invalid("x").transport == nil)
    }

    @Test func equalWhenTheySayTheSame() {
        #expect(CtrError.usage("--ulimit x: expected NAME=SOFT[:HARD]") == CtrError.usage("--ulimit x: expected NAME=SOFT[:HARD]"))
        #expect(CtrError.usage("a") != CtrError.invalid("a"))
        #expect(CtrError.invalid("a", cause: Foreign()) == CtrError.invalid("a"))
    }
}
