import Testing
@testable import Dockerfile

private let env: [String: String] = [
    "A": "alpha", "EMPTY": "", "SP": "x  y", "PATH": "/usr/local/bin:/usr/bin:/bin",
    "FILE": "archive.tar.gz", "DIR": "/a/b/c/d", "B": "beta",
]

private func w(_ s: String, escape: Character = "\\") throws -> String {
    try Expander.expandWord(s, env: env, escape: escape)
}

private func ws(_ s: String) throws -> [String] {
    try Expander.expandWords(s, env: env)
}

private func err(_ s: String) -> String? {
    do {
        _ = try Expander.expandWord(s, env: env)
        return nil
    } catch {
        return error.message
    }
}

@Suite struct ExpanderTests {
    @Test func plainVariables() throws {
        #expect(try w("$A") == "alpha")
        #expect(try w("${A}") == "alpha")
        #expect(try w("$A-$B") == "alpha-beta")
        #expect(try w("${A}_x$A_x") == "alpha_x")
        #expect(try w("pre$UNSET.post") == "pre.post")
        #expect(try w("${UNSET}") == "")
        #expect(try w("$") == "$")
        #expect(try w("a$ b") == "a$ b")
        #expect(try w("$1x") == "x")
        #expect(try w("cost: 5$") == "cost: 5$")
    }

    @Test func defaultsAndAlternatives() throws {
        #expect(try w("${UNSET:-b}") == "b")
        #expect(try w("${EMPTY:-b}") == "b")
        #expect(try w("${EMPTY-b}") == "")
        #expect(try w("${UNSET-b}") == "b")
        #expect(try w("${A:-b}") == "alpha")
        #expect(try w("${A:+b}") == "b")
        #expect(try w("${EMPTY:+b}") == "")
        #expect(try w("${EMPTY+b}") == "b")
        #expect(try w("${UNSET+b}") == "")
        #expect(try w("${UNSET:-${B}}") == "beta")
        #expect(try w("${UNSET:-${ALSO_UNSET:-deep}}") == "deep")
        #expect(try w("${UNSET:-\"x y\"}") == "x y")
        #expect(try w("${UNSET:-'$A'}") == "$A")
        #expect(try w("${UNSET:-a\\}b}") == "a}b")
        #expect(try w("${A:?must be set}") == "alpha")
    }

    @Test func requiredErrors() {
        #expect(err("${UNSET:?must be set}") == "UNSET: must be set")
        #expect(err("${UNSET?}") == "UNSET: is not allowed to be unset")
        #expect(err("${EMPTY:?}") == "EMPTY: is not allowed to be empty")
        #expect(err("${EMPTY?}") == nil)
    }

    @Test func patterns() throws {
        #expect(try w("${FILE#*.}") == "tar.gz")
        #expect(try w("${FILE##*.}") == "gz")
        #expect(try w("${FILE%.*}") == "archive.tar")
        #expect(try w("${FILE%%.*}") == "archive")
        #expect(try w("${DIR##*/}") == "d")
        #expect(try w("${DIR%/*}") == "/a/b/c")
        #expect(try w("${FILE#nomatch}") == "archive.tar.gz")
        #expect(try w("${FILE%.t?r.gz}") == "archive")
        #expect(try w("${FILE#[a-c]}") == "rchive.tar.gz")
        #expect(try w("${UNSET#x}") == "")
        #expect(try w("${PATH/bin/BIN}") == "/usr/local/BIN:/usr/bin:/bin")
        #expect(try w("${PATH//bin/BIN}") == "/usr/local/BIN:/usr/BIN:/BIN")
        #expect(try w("${A/l*h/_}") == "a_a")
    }

    @Test func quotesAndEscapes() throws {
        #expect(try w("'$A'") == "$A")
        #expect(try w("\"$A\"") == "alpha")
        #expect(try w("\"a \\\"q\\\" \\$A \\\\ \\n\"") == "a \"q\" $A \\ \\n")
        #expect(try w("\\$A") == "$A")
        #expect(try w("a\\ b") == "a b")
        #expect(try w("\\\\") == "\\")
        #expect(try w("trailing\\") == "trailing")
        #expect(try w("'it'\\''s'") == "it's")
        #expect(try w("'a\\b'") == "a\\b")  // no escaping inside single quotes
        #expect(try w("mixed\"$A\"'$B'$B") == "mixedalpha$Bbeta")
        #expect(try w("x  y") == "x  y")
        // Windows escape: backslash is literal.
        #expect(try w("C:\\dir\\$A", escape: "`") == "C:\\dir\\alpha")
        #expect(try w("`$A", escape: "`") == "$A")
        #expect(try w("\"`\"\"", escape: "`") == "\"")
    }

    @Test func words() throws {
        #expect(try ws("a b   c") == ["a", "b", "c"])
        #expect(try ws("\"a b\" c") == ["a b", "c"])
        #expect(try ws("$SP z") == ["x", "y", "z"])
        #expect(try ws("\"$SP\" z") == ["x  y", "z"])
        #expect(try ws("a\\ b c") == ["a b", "c"])
        #expect(try ws("  ") == [])
        #expect(try ws("80/tcp ${PORT:-8080}") == ["80/tcp", "8080"])
        #expect(try ws("'x'y\"z\"") == ["xyz"])
    }

    @Test func syntaxErrors() {
        #expect(err("${A") == "syntax error: missing '}'")
        #expect(err("${A:-b") == "syntax error: missing '}'")
        #expect(err("${}") == "syntax error: bad substitution")
        #expect(err("${:-x}") == "syntax error: bad substitution")
        #expect(err("${A:#x}") == "unsupported modifier (:#) in substitution")
        #expect(err("${A:x}") == "unsupported modifier (:x) in substitution")
        #expect(err("${A!}") == "unsupported modifier (!) in substitution")
        #expect(err("'abc") == "unexpected end of statement while looking for matching single-quote")
        #expect(err("\"abc") == "unexpected end of statement while looking for matching double-quote")
        #expect(err("${A/x") == "syntax error: missing '/' in ${}")
    }

    @Test func globMatch() {
        #expect(Expander.globMatch("*.go", "main.go"))
        #expect(Expander.globMatch("a?c", "abc"))
        #expect(!Expander.globMatch("a?c", "ac"))
        #expect(Expander.globMatch("[!x]*", "yes"))
        #expect(!Expander.globMatch("[!x]*", "xno"))
        #expect(Expander.globMatch("a\\*", "a*"))
        #expect(!Expander.globMatch("a\\*", "ab"))
    }

    @Test func predefinedArgs() {
        #expect(Dockerfile.platformArgNames == ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                                                "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"])
        #expect(Expander.proxyArgNames.count == 10)
        #expect(Expander.proxyArgNames.contains("no_proxy"))
    }
}
