import Errors
import Testing
@testable import Dockerfile

private func parse(_ text: String) throws -> Dockerfile { try Dockerfile.parse(text) }

/// The single instruction of a one-stage Dockerfile `FROM scratch\n<line>`.
private func one(_ line: String) throws -> Instruction {
    let df = try Dockerfile.parse("FROM scratch\n" + line)
    #expect(df.stages.count == 1)
    #expect(df.stages[0].instructions.count == 1)
    return df.stages[0].instructions[0]
}

private func parseError(_ text: String) -> String? {
    do {
        _ = try Dockerfile.parse(text)
        return nil
    } catch {
        return error.description
    }
}

@Suite struct ParserTests {
    @Test func stagesAndFrom() throws {
        let df = try parse("""
            # syntax=docker/dockerfile:1
            ARG BASE=alpine
            ARG VERSION
            FROM --platform=$BUILDPLATFORM ${BASE}:3.19 AS Builder
            RUN make
            from scratch
            COPY --from=builder /out /out
            """)
        #expect(df.directives == ["syntax": "docker/dockerfile:1"])
        #expect(df.escape == "\\")
        #expect(df.globalArgs.count == 2)
        #expect(df.globalArgs[0].kind == .arg([ArgDecl("BASE", "alpine")]))
        #expect(df.globalArgs[1].kind == .arg([ArgDecl("VERSION", nil)]))
        #expect(df.stages.count == 2)
        let s0 = df.stages[0]
        #expect(s0.index == 0)
        #expect(s0.name == "builder")
        #expect(s0.base == "${BASE}:3.19")
        #expect(s0.platform == "$BUILDPLATFORM")
        #expect(s0.line == 4)
        #expect(s0.from.kind == .from(image: "${BASE}:3.19", platform: "$BUILDPLATFORM", alias: "builder"))
        #expect(s0.from.flags == [Flag(name: "platform", value: "$BUILDPLATFORM")])
        #expect(s0.instructions.map(\.keyword) == ["RUN"])
        let s1 = df.stages[1]
        #expect(s1.name == nil)
        #expect(s1.base == "scratch")
        #expect(s1.platform == nil)
        #expect(s1.line == 6)
        #expect(s1.instructions[0].line == 7)
        #expect(s1.instructions[0].flagValue("from") == "builder")
        #expect(df.stage(named: "BUILDER")?.index == 0)
        #expect(df.stage(named: "1")?.base == "scratch")
        #expect(df.stage(named: "2") == nil)
        #expect(df.stage(named: "nope") == nil)
    }

    @Test func runForms() throws {
        #expect(try one("RUN echo hello").kind == .run(.shell("echo hello"), heredocs: []))
        let exec = try one(#"RUN ["/bin/sh", "-c", "echo hi"]"#)
        #expect(exec.kind == .run(.exec(["/bin/sh", "-c", "echo hi"]), heredocs: []))
        #expect(exec.jsonForm)
        // Not a JSON string array → shell form, as Docker.
        #expect(try one("RUN [ -f /etc/passwd ] && echo ok").kind == .run(.shell("[ -f /etc/passwd ] && echo ok"), heredocs: []))
        #expect(try one("RUN [\"a\", 'b']").kind == .run(.shell("[\"a\", 'b']"), heredocs: []))
        // Lowercase keyword, leading whitespace.
        let i = try one("   run   echo   a  ")
        #expect(i.keyword == "RUN")
        #expect(i.kind == .run(.shell("echo   a"), heredocs: []))
        #expect(i.original == "run   echo   a")
    }

    @Test func runFlags() throws {
        let i = try one("RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=x --network=none --security=insecure pip install x")
        #expect(i.flags == [
            Flag(name: "mount", value: "type=cache,target=/root/.cache"),
            Flag(name: "mount", value: "type=secret,id=x"),
            Flag(name: "network", value: "none"),
            Flag(name: "security", value: "insecure"),
        ])
        #expect(i.flagValues("mount") == ["type=cache,target=/root/.cache", "type=secret,id=x"])
        #expect(i.kind == .run(.shell("pip install x"), heredocs: []))
        // `--` ends the flags; quoted flag values.
        let j = try one(#"RUN --network="host" -- --not-a-flag"#)
        #expect(j.flags == [Flag(name: "network", value: "host")])
        #expect(j.kind == .run(.shell("--not-a-flag"), heredocs: []))
    }

    @Test func cmdEntrypointShell() throws {
        #expect(try one(#"CMD ["nginx", "-g", "daemon off;"]"#).kind == .cmd(.exec(["nginx", "-g", "daemon off;"])))
        #expect(try one("CMD nginx -g 'daemon off;'").kind == .cmd(.shell("nginx -g 'daemon off;'")))
        #expect(try one("CMD []").kind == .cmd(.exec([])))
        #expect(try one(#"ENTRYPOINT ["/entry.sh"]"#).kind == .entrypoint(.exec(["/entry.sh"])))
        #expect(try one("ENTRYPOINT exec top -b").kind == .entrypoint(.shell("exec top -b")))
        #expect(try one(#"SHELL ["powershell", "-command"]"#).kind == .shell(["powershell", "-command"]))
    }

    @Test func envBothForms() throws {
        #expect(try one("ENV PATH=/usr/bin:$PATH  B=\"x y\" C=a\\ b D=").kind == .env([
            KeyValue("PATH", "/usr/bin:$PATH"), KeyValue("B", "\"x y\""), KeyValue("C", "a\\ b"), KeyValue("D", ""),
        ]))
        #expect(try one("ENV MY_VAR  value with   spaces").kind == .env([KeyValue("MY_VAR", "value with   spaces")]))
        #expect(try one("ENV A \"quoted\" rest").kind == .env([KeyValue("A", "\"quoted\" rest")]))
        #expect(try one("ENV A 'x y'").kind == .env([KeyValue("A", "'x y'")]))
        #expect(try one("ENV A='x y' B=\"\\\"q\" C=a\\\"b").kind == .env([KeyValue("A", "'x y'"), KeyValue("B", "\"\\\"q\""), KeyValue("C", "a\\\"b")]))
        // The first word has `=`, so this is the key=value form and `X` is an error.
        #expect(parseError("FROM a\nENV 'single quoted=yes' X") == "Dockerfile:2: Syntax error - can't find = in \"X\". Must be of the form: name=value")
    }

    @Test func labelAndArg() throws {
        #expect(try one(#"LABEL "com.example.vendor"="ACME Inc" version=1.0 description="a \"b\"""#).kind == .label([
            KeyValue("\"com.example.vendor\"", "\"ACME Inc\""), KeyValue("version", "1.0"),
            KeyValue("description", #""a \"b\"""#),
        ]))
        #expect(try one("LABEL legacy some value").kind == .label([KeyValue("legacy", "some value")]))
        #expect(try one("ARG A B=2 C=\"x y\" D=").kind == .arg([
            ArgDecl("A"), ArgDecl("B", "2"), ArgDecl("C", "\"x y\""), ArgDecl("D", ""),
        ]))
    }

    @Test func copyAndAdd() throws {
        let c = try one("COPY --from=build --chown=1000:1000 --chmod=755 --link --parents --exclude=*.md --exclude=*.txt a \"b c\" $D/ /dest/")
        #expect(c.kind == .copy(sources: ["a", "\"b c\"", "$D/"], dest: "/dest/", heredocs: []))
        #expect(c.flagValue("from") == "build")
        #expect(c.flagValue("chown") == "1000:1000")
        #expect(c.flagValue("chmod") == "755")
        #expect(c.boolFlag("link"))
        #expect(c.boolFlag("parents"))
        #expect(c.flagValues("exclude") == ["*.md", "*.txt"])
        #expect(!c.jsonForm)
        let j = try one(#"COPY ["src dir/", "/app dir/"]"#)
        #expect(j.kind == .copy(sources: ["src dir/"], dest: "/app dir/", heredocs: []))
        #expect(j.jsonForm)
        let a = try one("ADD --checksum=sha256:abc --keep-git-dir=true --link=false --chown=app https://x/y.tgz /tmp/")
        #expect(a.kind == .add(sources: ["https://x/y.tgz"], dest: "/tmp/", heredocs: []))
        #expect(a.flagValue("checksum") == "sha256:abc")
        #expect(a.boolFlag("keep-git-dir"))
        #expect(!a.boolFlag("link"))
        #expect(a.flags == [Flag(name: "checksum", value: "sha256:abc"), Flag(name: "keep-git-dir", value: "true"),
                            Flag(name: "link", value: "false"), Flag(name: "chown", value: "app")])
    }

    @Test func otherInstructions() throws {
        #expect(try one("EXPOSE 80/tcp 443 ${PORT}").kind == .expose(["80/tcp", "443", "${PORT}"]))
        #expect(try one("VOLUME /data /var/log").kind == .volume(["/data", "/var/log"]))
        #expect(try one(#"VOLUME ["/data"]"#).kind == .volume(["/data"]))
        #expect(try one("USER app:app").kind == .user("app:app"))
        #expect(try one("WORKDIR /path with space/$X").kind == .workdir("/path with space/$X"))
        #expect(try one("STOPSIGNAL SIGKILL").kind == .stopsignal("SIGKILL"))
        #expect(try one("MAINTAINER Jane Doe <jane@example.com>").kind == .maintainer("Jane Doe <jane@example.com>"))
        #expect(try one("ONBUILD RUN echo built").kind == .onbuild("RUN echo built"))
        #expect(try one("ONBUILD COPY --from=x a b").kind == .onbuild("COPY --from=x a b"))
    }

    @Test func healthcheck() throws {
        #expect(try one("HEALTHCHECK NONE").kind == .healthcheck(nil))
        let h = try one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1")
        let expected = Healthcheck(test: ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], interval: "5m",
                                   timeout: "3s", startPeriod: "1m30s", startInterval: "500ms", retries: 3)
        #expect(h.kind == .healthcheck(expected))
        #expect(expected.intervalNanoseconds == 300_000_000_000)
        #expect(expected.startPeriodNanoseconds == 90_000_000_000)
        #expect(expected.startIntervalNanoseconds == 500_000_000)
        #expect(try one(#"HEALTHCHECK cmd ["/check", "-v"]"#).kind == .healthcheck(Healthcheck(test: ["CMD", "/check", "-v"])))
    }

    @Test func continuationsWithComments() throws {
        let df = try parse("""
            FROM alpine
            RUN apk add \\
                # a comment inside
                curl \\

                git \\
              # another
                make
            LABEL a=1 \\  
                  b=2
            """)
        let run = df.stages[0].instructions[0]
        #expect(run.line == 2)
        #expect(run.kind == .run(.shell("apk add     curl     git     make"), heredocs: []))
        #expect(run.original == "RUN apk add     curl     git     make")
        let label = df.stages[0].instructions[1]
        #expect(label.line == 9)
        #expect(label.kind == .label([KeyValue("a", "1"), KeyValue("b", "2")]))
        _ = df
    }

    @Test func unknownInstructionLineAfterContinuations() {
        let text = """
            FROM alpine
            RUN a \\
                b \\
                # comment
                c
            ENV X=1
            FOO bar
            """
        #expect(parseError(text) == "Dockerfile:7: unknown instruction: FOO")
        #expect(throws: CtrError.dockerfile(file: "x/Dockerfile.dev", line: 2, "unknown instruction: BOGUS")) {
            try Dockerfile.parse("FROM a\nbogus x", file: "x/Dockerfile.dev")
        }
    }

    @Test func escapeDirective() throws {
        let df = try parse("""
            # escape=`
            # syntax = docker/dockerfile:1

            FROM mcr.microsoft.com/windows/servercore
            COPY testfile.txt c:\\
            RUN dir c:\\ `
                && echo done
            ENV P=C:\\path` with` space
            """)
        #expect(df.escape == "`")
        #expect(df.directives == ["escape": "`", "syntax": "docker/dockerfile:1"])
        let ins = df.stages[0].instructions
        #expect(ins[0].kind == .copy(sources: ["testfile.txt"], dest: "c:\\", heredocs: []))
        #expect(ins[1].kind == .run(.shell("dir c:\\     && echo done"), heredocs: []))
        #expect(ins[1].line == 6)
        #expect(ins[2].kind == .env([KeyValue("P", "C:\\path` with` space")]))
        #expect(try Expander.expandWord("C:\\path` with` space", env: [:], escape: "`") == "C:\\path with space")
    }

    @Test func directivesOnlyAtTop() throws {
        // After a blank line / comment / instruction, `# escape=` is an ordinary comment.
        let df = try parse("\n# escape=`\nFROM a\nRUN x \\\n  y")
        #expect(df.directives.isEmpty)
        #expect(df.escape == "\\")
        #expect(df.stages[0].instructions[0].kind == .run(.shell("x   y"), heredocs: []))
        let df2 = try parse("# ESCAPE = `\n# check=skip=all\nFROM a")
        #expect(df2.directives == ["escape": "`", "check": "skip=all"])
        // An unknown directive ends the directive block.
        let df3 = try parse("# foo=bar\n# escape=`\nFROM a")
        #expect(df3.directives.isEmpty)
        #expect(parseError("# escape=x\nFROM a") == "Dockerfile:1: invalid escape token 'x' does not match ` or \\")
        #expect(parseError("# syntax=a\n# syntax=b\nFROM a") == "Dockerfile:2: only one syntax parser directive can be used")
    }

    @Test func heredocs() throws {
        let df = try parse("""
            FROM alpine
            RUN <<EOF
            echo "$HOME"
              indented
            EOF
            RUN <<-"END" cat > /x
            \t\ttabbed $NOEXPAND
            \tEND
            COPY <<a <<'b' /dest/
            first
            a
            second
            b
            ADD 3<<X /y
            X
            CMD done
            """)
        let ins = df.stages[0].instructions
        #expect(ins.map(\.line) == [2, 6, 9, 14, 16])
        #expect(ins[0].kind == .run(.shell("<<EOF"), heredocs: [
            Heredoc(name: "EOF", content: "echo \"$HOME\"\n  indented\n", expand: true, chomp: false),
        ]))
        #expect(ins[1].kind == .run(.shell("<<-\"END\" cat > /x"), heredocs: [
            Heredoc(name: "END", content: "tabbed $NOEXPAND\n", expand: false, chomp: true),
        ]))
        #expect(ins[2].kind == .copy(sources: ["a", "b"], dest: "/dest/", heredocs: [
            Heredoc(name: "a", content: "first\n", expand: true),
            Heredoc(name: "b", content: "second\n", expand: false),
        ]))
        #expect(ins[2].copySources == [
            .heredoc(Heredoc(name: "a", content: "first\n", expand: true)),
            .heredoc(Heredoc(name: "b", content: "second\n", expand: false)),
        ])
        #expect(ins[3].kind == .add(sources: ["X"], dest: "/y", heredocs: [
            Heredoc(name: "X", content: "", expand: true, fileDescriptor: 3),
        ]))
        #expect(ins[4].kind == .cmd(.shell("done")))
        #expect(ins[0].original == "RUN <<EOF")
        #expect(Command.script("python3 <<A\ncat <<B", heredocs: [Heredoc(name: "A", content: "print(1)\n"),
                                                               Heredoc(name: "B", content: "x\n")])
                == "python3 <<A\ncat <<B\nprint(1)\nA\nx\nB")
    }

    @Test func heredocMixedSources() throws {
        let i = try one("COPY file.txt <<EOF /dest/\nbody\nEOF")
        #expect(i.kind == .copy(sources: ["file.txt", "EOF"], dest: "/dest/", heredocs: [Heredoc(name: "EOF", content: "body\n")]))
        #expect(i.copySources == [.path("file.txt"), .heredoc(Heredoc(name: "EOF", content: "body\n"))])
        // Heredocs are not recognised for other instructions.
        #expect(try one("CMD cat <<EOF").kind == .cmd(.shell("cat <<EOF")))
    }

    @Test func errors() {
        #expect(parseError("") == "Dockerfile:1: file with no instructions")
        #expect(parseError("# just a comment\n") == "Dockerfile:2: file with no instructions")
        #expect(parseError("ARG A\nARG B") == "Dockerfile:2: dockerfile contains no stages to build (no FROM)")
        #expect(parseError("ARG A\n\nRUN x\nFROM a") == "Dockerfile:3: no build stage in current context: RUN before the first FROM (only ARG may come before FROM)")
        #expect(parseError("FROM a\nRUN") == "Dockerfile:2: RUN requires at least one argument")
        #expect(parseError("FROM a\nCMD") == "Dockerfile:2: CMD requires at least one argument")
        #expect(parseError("FROM") == "Dockerfile:1: FROM requires either one or three arguments")
        #expect(parseError("FROM a b") == "Dockerfile:1: FROM requires either one or three arguments")
        #expect(parseError("FROM a AT b") == "Dockerfile:1: Expected 'AS' after the image name, got 'AT'")
        #expect(parseError("FROM a AS 1x") == "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols")
        #expect(parseError("FROM a AS x\nFROM b AS X") == "Dockerfile:2: duplicate stage name \"x\"")
        #expect(parseError("FROM a\nSHELL /bin/bash -c") == "Dockerfile:2: SHELL requires the arguments to be in JSON form")
        #expect(parseError("FROM a\nSHELL []") == "Dockerfile:2: SHELL requires at least one argument")
        #expect(parseError("FROM a\nCMD [\"a\", 1]") == "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only")
        #expect(parseError("FROM a\nONBUILD FROM b") == "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger")
        #expect(parseError("FROM a\nONBUILD MAINTAINER me") == "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger")
        #expect(parseError("FROM a\nONBUILD ONBUILD RUN x") == "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        #expect(parseError("FROM a\nONBUILD BOGUS x") == "Dockerfile:2: unknown instruction: BOGUS")
        #expect(parseError("FROM a\nONBUILD") == "Dockerfile:2: ONBUILD requires at least one argument")
        #expect(parseError("FROM a\nRUN <<EOF\nline\n") == "Dockerfile:2: unterminated heredoc EOF")
        #expect(parseError("FROM a\nCOPY <<a <<b /d\nx\na\ny\n") == "Dockerfile:2: unterminated heredoc b")
        #expect(parseError("FROM a\nCOPY --foo=1 a b") == "Dockerfile:2: unknown flag: --foo")
        #expect(parseError("FROM a\nENV --x=1 A=b") == "Dockerfile:2: unknown flag: --x")
        #expect(parseError("FROM a\nCOPY --from a b") == "Dockerfile:2: missing a value on flag: --from")
        #expect(parseError("FROM a\nCOPY --link=maybe a b") == "Dockerfile:2: expecting boolean value for flag --link, not: maybe")
        #expect(parseError("FROM a\nCOPY --from=a --from=b a b") == "Dockerfile:2: duplicate flag specified: --from")
        #expect(parseError("FROM --plat=x a") == "Dockerfile:1: unknown flag: --plat")
        #expect(parseError("FROM a\nCOPY") == "Dockerfile:2: COPY requires at least two arguments")
        #expect(parseError("FROM a\nADD onlyone") == "Dockerfile:2: ADD requires at least two arguments, but only one was provided. Destination could not be determined")
        #expect(parseError("FROM a\nENV A") == "Dockerfile:2: ENV must have two arguments")
        #expect(parseError("FROM a\nENV A=1 B") == "Dockerfile:2: Syntax error - can't find = in \"B\". Must be of the form: name=value")
        #expect(parseError("FROM a\nENV =1") == "Dockerfile:2: ENV names can not be blank")
        #expect(parseError("FROM a\nLABEL") == "Dockerfile:2: LABEL requires at least one argument")
        #expect(parseError("FROM a\nARG") == "Dockerfile:2: ARG requires at least one argument")
        #expect(parseError("FROM a\nEXPOSE") == "Dockerfile:2: EXPOSE requires at least one argument")
        #expect(parseError("FROM a\nVOLUME") == "Dockerfile:2: VOLUME requires at least one argument")
        #expect(parseError("FROM a\nVOLUME [\"\"]") == "Dockerfile:2: VOLUME specified can not be an empty string")
        #expect(parseError("FROM a\nUSER") == "Dockerfile:2: USER requires exactly one argument")
        #expect(parseError("FROM a\nWORKDIR") == "Dockerfile:2: WORKDIR requires exactly one argument")
        #expect(parseError("FROM a\nHEALTHCHECK") == "Dockerfile:2: HEALTHCHECK requires at least one argument")
        #expect(parseError("FROM a\nHEALTHCHECK NONE x") == "Dockerfile:2: HEALTHCHECK NONE takes no arguments")
        #expect(parseError("FROM a\nHEALTHCHECK CMD") == "Dockerfile:2: Missing command after HEALTHCHECK CMD")
        #expect(parseError("FROM a\nHEALTHCHECK RUN x") == "Dockerfile:2: Unknown type \"RUN\" in HEALTHCHECK (try CMD)")
        #expect(parseError("FROM a\nHEALTHCHECK --interval=abc CMD x") == "Dockerfile:2: time: invalid duration \"abc\" for --interval")
        #expect(parseError("FROM a\nHEALTHCHECK --timeout=10us CMD x") == "Dockerfile:2: Interval \"timeout\" cannot be less than 1ms")
        #expect(parseError("FROM a\nHEALTHCHECK --retries=-1 CMD x") == "Dockerfile:2: --retries cannot be negative (-1)")
        // Line numbers count heredoc bodies and continuation lines.
        #expect(parseError("FROM a\nRUN <<EOF\n1\n2\nEOF\nRUN a \\\n b\nNOPE") == "Dockerfile:8: unknown instruction: NOPE")
    }

    @Test func parseInstructionHelper() throws {
        let i = try Dockerfile.parseInstruction("RUN echo hi", line: 3)
        #expect(i.kind == .run(.shell("echo hi"), heredocs: []))
        #expect(i.line == 3)
        #expect(throws: CtrError.dockerfile(file: "Dockerfile", line: 1, "unknown instruction: NOPE")) {
            try Dockerfile.parseInstruction("nope")
        }
    }

    @Test func crlfAndBOM() throws {
        let df = try parse("\u{FEFF}# escape=`\r\nFROM a\r\nRUN x `\r\n  y\r\n")
        #expect(df.escape == "`")
        #expect(df.stages[0].instructions[0].kind == .run(.shell("x   y"), heredocs: []))
    }

    @Test func goDuration() {
        #expect(GoDuration.parse("0") == 0)
        #expect(GoDuration.parse("1h2m3s") == 3_723_000_000_000)
        #expect(GoDuration.parse("1.5s") == 1_500_000_000)
        #expect(GoDuration.parse("10us") == 10_000)
        #expect(GoDuration.parse("5") == nil)
        #expect(GoDuration.parse("") == nil)
        #expect(GoDuration.parse("3x") == nil)
    }
}

@Suite struct MoreParserTests {
    @Test func heredocBodyIsVerbatim() throws {
        let df = try Dockerfile.parse("""
            FROM a
            RUN --mount=type=cache,target=/c \\
                python3 <<PY
            # not a comment

            print("hi") \\
            PY
            RUN true
            """)
        let ins = df.stages[0].instructions
        #expect(ins[0].kind == .run(.shell("python3 <<PY"), heredocs: [
            Heredoc(name: "PY", content: "# not a comment\n\nprint(\"hi\") \\\n"),
        ]))
        #expect(ins[0].flagValues("mount") == ["type=cache,target=/c"])
        #expect(ins[1].line == 8)
    }

    @Test func boolFlagBare() throws {
        let df = try Dockerfile.parse("FROM a\nCOPY --link a b")
        let i = df.stages[0].instructions[0]
        #expect(i.flags == [Flag(name: "link", value: nil)])
        #expect(i.flagValue("link") == "true")
        #expect(i.boolFlag("link"))
        #expect(!i.boolFlag("parents"))
        #expect(i.flagValue("from") == nil)
    }

    @Test func expandedHelpers() throws {
        let env: [String: String] = ["A": "1"]
        let kv = try KeyValue("K_$A", "\"v $A\"").expanded(env: { env[$0] }, escape: "\\")
        #expect(kv == KeyValue("K_1", "v 1"))
        #expect(try ArgDecl("X", "${A:-0}.x").expanded(env: { env[$0] }, escape: "\\") == ArgDecl("X", "1.x"))
        #expect(try ArgDecl("X").expanded(env: { env[$0] }, escape: "\\") == ArgDecl("X"))
    }
}
