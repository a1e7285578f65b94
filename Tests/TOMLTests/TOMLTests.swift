import Errors
import Testing
import TOML

/// Walks a parsed TOML table: "registry[1]" enters element 1 of an array.
private func lookup(_ t: TOMLTable, _ path: [String]) -> TOMLValue? {
    var current: TOMLValue = .table(t)
    for part in path {
        var name = part
        var index: Int?
        if part.hasSuffix("]"), let open = part.lastIndex(of: "[") {
            index = Int(part[part.index(after: open)..<part.index(before: part.endIndex)])
            name = String(part[..<open])
        }
        guard case .table(let table) = current, let next = table[name] else { return nil }
        current = next
        if let index {
            guard case .array(let items) = current, items.indices.contains(index) else { return nil }
            current = items[index]
        }
    }
    return current
}

@Suite struct TOMLParserTests {
    static let good: [(String, String, [String], TOMLValue)] = [
        ("basic string escapes", #"a = "tab\there \"q\" \\ \u00e9 \U0001F600""#, ["a"], .string("tab\there \"q\" \\ é 😀")),
        ("literal string", #"a = 'C:\Users\x'"#, ["a"], .string(#"C:\Users\x"#)),
        ("multi-line basic, trimmed newline and line-ending backslash", "a = \"\"\"\none \\\n    two\"\"\"", ["a"], .string("one two")),
        ("multi-line basic keeps inner newlines and quotes", "a = \"\"\"\nx\n\"y\"\"\"\"", ["a"], .string("x\n\"y\"")),
        ("multi-line literal", "a = '''\nline1\nline2'''", ["a"], .string("line1\nline2")),
        ("integer with underscores", "a = 1_000", ["a"], .integer(1000)),
        ("negative integer", "a = -17", ["a"], .integer(-17)),
        ("plus integer", "a = +3", ["a"], .integer(3)),
        ("hex", "a = 0xff", ["a"], .integer(255)),
        ("octal", "a = 0o17", ["a"], .integer(15)),
        ("binary", "a = 0b101", ["a"], .integer(5)),
        ("float", "a = 3.5", ["a"], .float(3.5)),
        ("float exponent", "a = -2.5E-1", ["a"], .float(-0.25)),
        ("bool", "a = true", ["a"], .bool(true)),
        ("multi-line array with comments and trailing comma", "a = [\n  \"x\", # first\n  'y',\n]", ["a"], .array([.string("x"), .string("y")])),
        ("nested arrays", "a = [[1, 2], [\"z\"]]", ["a"], .array([.array([.integer(1), .integer(2)]), .array([.string("z")])])),
        ("empty array", "a = [ ]", ["a"], .array([])),
        ("inline table with dotted key", "a = { b = 1, c.d = \"e\" }", ["a", "c", "d"], .string("e")),
        ("dotted key", "a.b.c = true", ["a", "b", "c"], .bool(true)),
        ("quoted key with a dot", "\"a.b\" = 1", ["a.b"], .integer(1)),
        ("literal quoted key", "'k y' = 2", ["k y"], .integer(2)),
        ("table and sub-table", "[t]\nx = 1\n[t.sub]\ny = 2", ["t", "sub", "y"], .integer(2)),
        ("header with spaces", "[ a . \"b\" ]\nc = 1", ["a", "b", "c"], .integer(1)),
        ("comments and CRLF", "# c\r\na = 1 # trailing\r\n\r\n", ["a"], .integer(1)),
        ("registry.mirror attaches to the last registry",
         "[[registry]]\nlocation = \"a\"\n[[registry.mirror]]\nlocation = \"m1\"\n[[registry]]\nlocation = \"b\"\n[[registry.mirror]]\nlocation = \"m2\"\n[[registry.mirror]]\nlocation = \"m3\"\n",
         ["registry[1]", "mirror[1]", "location"], .string("m3")),
        ("first registry keeps its own mirror",
         "[[registry]]\nlocation = \"a\"\n[[registry.mirror]]\nlocation = \"m1\"\n[[registry]]\nlocation = \"b\"\n[[registry.mirror]]\nlocation = \"m2\"\n",
         ["registry[0]", "mirror[0]", "location"], .string("m1")),
        ("sub-table of an array element", "[[r]]\nx = 1\n[r.t]\ny = 2\n[[r]]\nx = 3", ["r[0]", "t", "y"], .integer(2)),
        ("implicit parent defined later", "[a.b]\nx = 1\n[a]\ny = 2", ["a", "y"], .integer(2)),
    ]

    @Test(arguments: good)
    func parsesGood(name: String, text: String, path: [String], expected: TOMLValue) throws {
        let t = try TOML.parse(text, file: "good.toml")
        #expect(lookup(t, path) == expected, "\(name)")
    }

    @Test func arrayOfTablesCountsAndLines() throws {
        let text = "\n[[registry]]\nlocation = \"a\"\n\n[[registry.mirror]]\nlocation = \"m1\"\n[[registry]]\nlocation = \"b\"\n"
        let t = try TOML.parse(text)
        guard case .array(let regs)? = t["registry"] else { Issue.record("no registry array"); return }
        #expect(regs.count == 2)
        guard case .table(let first) = regs[0], case .table(let second) = regs[1] else { Issue.record("not tables"); return }
        #expect(first.line == 2)
        #expect(first.line(of: "location") == 3)
        #expect(second.line == 7)
        #expect(second["mirror"] == nil)
        guard case .array(let mirrors)? = first["mirror"] else { Issue.record("no mirrors"); return }
        #expect(mirrors.count == 1)
        #expect(t.keys == ["registry"])
    }

    static let bad: [(String, Int, String)] = [
        ("a = 1\nb 2\n", 2, "expected '=' after key"),
        ("a = \"abc\nb = 1", 1, "unterminated string"),
        ("a = 1\na = 2", 2, "duplicate key a"),
        ("[t]\nx = 1\n[t]", 3, "defined more than once"),
        (#"a = "\q""#, 1, "invalid escape sequence \\q"),
        ("a = yes", 1, "strings must be quoted"),
        ("a = 1 b = 2", 1, "expected end of line after value"),
        ("a = [1,\n2,\n", 2, "unterminated array"),
        ("a = 1\n[[a]]", 2, "already an integer"),
        ("a = 01", 1, "invalid number"),
        ("a = {b = 1}\n[a]", 2, "already a table"),
        ("x = 1979-05-27", 1, "dates and times are not supported"),
        ("a = { b = 1,\n c = 2 }", 1, "inline tables must be on one line"),
        ("[a\nb = 1", 1, "expected ']'"),
        ("a.b = 1\n[a]", 2, "dotted keys"),
        ("= 1", 1, "expected a key"),
        ("[[registry.mirror]]\nlocation = 'x'\n[[registry]]", 3, "already a table"),
        (#"a = "\u12""#, 1, "invalid unicode escape"),
        ("a = [1 2]", 1, "expected ',' or ']'"),
        ("# one\n\n[x]\ny = 1\nz = \"oops\n", 5, "unterminated string"),
        ("a = 'x\ny'", 1, "unterminated literal string"),
        ("[x]\ny = 1\n[x.y]", 3, "already an integer"),
        ("a =\n1", 1, "expected a value"),
        ("a = 1_", 1, "invalid number"),
    ]

    @Test(arguments: bad)
    func reportsErrorsWithLine(text: String, line: Int, fragment: String) {
        do {
            _ = try TOML.parse(text, file: "/etc/containers/registries.conf")
            Issue.record("expected an error for \(text.debugDescription)")
        } catch {
            #expect(error.file == "/etc/containers/registries.conf")
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(fragment), "\(error)")
            #expect(error.description.hasPrefix("/etc/containers/registries.conf:\(line): "))
            #expect(!error.description.contains("\n"))
        }
    }

    static let quoted: [(String, String)] = [
        ("plain-key_1", "plain-key_1"),
        ("a.b", "\"a.b\""),
        ("", "\"\""),
        ("say \"hi\"\\", #""say \"hi\"\\""#),
        ("tab\tnl\n", #""tab\tnl\n""#),
        ("bell\u{7}del\u{7f}", #""bell\u0007del\u007F""#),
    ]

    @Test(arguments: quoted)
    func quoteKey(key: String, expected: String) {
        #expect(TOML.quoteKey(key) == expected)
    }

    /// Bytes that cannot be shown are named by their hex value.
    @Test func controlBytesAreNamedInHex() {
        #expect(throws: CtrError.at(file: "x.toml", line: 1, "control character byte 0x7F in string")) {
            try TOML.parse("a = \"\u{7f}\"", file: "x.toml")
        }
        #expect(throws: CtrError.at(file: "x.toml", line: 2, "invalid escape sequence \\x01 in string")) {
            try TOML.parse("b = 1\na = \"\\\u{1}\"", file: "x.toml")
        }
    }
}
