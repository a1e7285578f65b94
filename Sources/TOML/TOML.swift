// TOML (v1.0) for configuration files such as registries.conf: a byte-level parser that keeps
// the line of every key and table, so a caller can point at FILE:LINE. Dates and times are not
// supported. Pure Swift, no Foundation. Errors are CtrError.at(file:line:) (`.invalidInput`),
// reading "FILE:LINE: message".

import Errors

/// Two (or four) upper-case hex digits of `v`, as `%02X` / `%04X` print them.
func hex(_ v: UInt32, width: Int) -> String {
    let digits = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// A TOML value. Dates and times are not supported.
public enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    case array([TOMLValue])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .bool: "a boolean"
        case .array: "an array"
        case .table: "a table"
        }
    }
}

/// A TOML table: keys in definition order, with the line each key was defined on.
public struct TOMLTable: Sendable, Equatable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: TOMLValue] = [:]
    public private(set) var keyLines: [String: Int] = [:]
    /// The line of the table's header or opening brace (0 for the root table).
    public internal(set) var line: Int

    public init(line: Int = 0) { self.line = line }

    public subscript(key: String) -> TOMLValue? { values[key] }

    public func line(of key: String) -> Int? { keyLines[key] }

    /// The value at a dotted path of table keys; an array of tables is entered at `index` when the
    /// path component is written "name[index]" (used by tests and diagnostics).
    public func value(at path: String) -> TOMLValue? {
        var current: TOMLValue = .table(self)
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            var name = Substring(part)
            var index: Int?
            if name.hasSuffix("]"), let open = name.lastIndex(of: "[") {
                index = Int(name[name.index(after: open)..<name.index(before: name.endIndex)])
                name = name[..<open]
            }
            guard case .table(let t) = current, let next = t[String(name)] else { return nil }
            current = next
            if let index {
                guard case .array(let items) = current, items.indices.contains(index) else { return nil }
                current = items[index]
            }
        }
        return current
    }

    mutating func append(_ key: String, _ value: TOMLValue, line: Int) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
        keyLines[key] = line
    }
}

public enum TOML {
    /// Parses a TOML document. Errors read "FILE:LINE: message".
    public static func parse(_ text: String, file: String = "<input>") throws(CtrError) -> TOMLTable {
        var p = TOMLParser(text: text, file: file)
        return try p.parseDocument()
    }

    /// A key as it would be written in TOML: bare when possible, else quoted.
    public static func quoteKey(_ key: String) -> String {
        if !key.isEmpty && key.utf8.allSatisfy(TOMLParser.isBareKeyByte) { return key }
        var s = "\""
        for u in key.unicodeScalars {
            switch u {
            case "\"": s += "\\\""
            case "\\": s += "\\\\"
            case "\n": s += "\\n"
            case "\t": s += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    s += "\\u" + hex(u.value, width: 4)
                } else {
                    s.unicodeScalars.append(u)
                }
            }
        }
        return s + "\""
    }
}

/// Mutable tree used while parsing (tables can be extended by later headers).
private final class TOMLNode {
    var keys: [String] = []
    var items: [String: TOMLItem] = [:]
    var lines: [String: Int] = [:]
    var line: Int
    /// Defined by a [header] (cannot be defined again).
    var explicit = false
    /// Created by a dotted key (cannot be defined by a [header] afterwards).
    var viaDottedKeys = false

    init(line: Int) { self.line = line }

    func set(_ key: String, _ item: TOMLItem, line: Int) {
        if items[key] == nil {
            keys.append(key)
            lines[key] = line
        }
        items[key] = item
    }

    func freeze() -> TOMLTable {
        var t = TOMLTable(line: line)
        for k in keys {
            switch items[k]! {
            case .value(let v): t.append(k, v, line: lines[k]!)
            case .table(let n): t.append(k, .table(n.freeze()), line: lines[k]!)
            case .tables(let a): t.append(k, .array(a.tables.map { .table($0.freeze()) }), line: lines[k]!)
            }
        }
        return t
    }
}

private final class TOMLTableArray {
    var tables: [TOMLNode] = []
}

private enum TOMLItem {
    case value(TOMLValue)
    case table(TOMLNode)
    case tables(TOMLTableArray)
}

private struct TOMLParser {
    let b: [UInt8]
    let file: String
    let lineStarts: [Int]
    var i = 0

    init(text: String, file: String) {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        b = bytes
        self.file = file
        var starts = [0]
        for (k, c) in bytes.enumerated() where c == 0x0A { starts.append(k + 1) }
        lineStarts = starts
    }

    // MARK: positions and errors

    func lineAt(_ pos: Int) -> Int {
        var lo = 0, hi = lineStarts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if lineStarts[mid] <= pos { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func error(_ message: String, at pos: Int? = nil) -> CtrError {
        CtrError.at(file: file, line: lineAt(min(pos ?? i, max(b.count - 1, 0))), message)
    }

    var atEnd: Bool { i >= b.count }

    func peek(_ offset: Int = 0) -> UInt8? {
        i + offset < b.count ? b[i + offset] : nil
    }

    func describe(_ c: UInt8?) -> String {
        guard let c else { return "end of file" }
        switch c {
        case 0x0A, 0x0D: return "end of line"
        case 0x20...0x7E: return "'\(Character(Unicode.Scalar(c)))'"
        default: return "byte 0x" + hex(UInt32(c), width: 2)
        }
    }

    static func isBareKeyByte(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }

    static func isControl(_ c: UInt8) -> Bool {
        (c < 0x20 && c != 0x09) || c == 0x7F
    }

    // MARK: whitespace

    mutating func skipSpaces() {
        while let c = peek(), c == 0x20 || c == 0x09 { i += 1 }
    }

    mutating func skipComment() throws(CtrError) {
        guard peek() == UInt8(ascii: "#") else { return }
        while let c = peek(), c != 0x0A {
            if c == 0x0D && peek(1) == 0x0A { break }
            if Self.isControl(c) { throw error("control character \(describe(c)) in comment") }
            i += 1
        }
    }

    mutating func consumeNewline() -> Bool {
        if peek() == 0x0A { i += 1; return true }
        if peek() == 0x0D && peek(1) == 0x0A { i += 2; return true }
        return false
    }

    /// Spaces, comments and newlines (between top-level expressions and inside arrays).
    mutating func skipBlank() throws(CtrError) {
        while true {
            skipSpaces()
            try skipComment()
            if !consumeNewline() { return }
        }
    }

    mutating func expectLineEnd(after what: String) throws(CtrError) {
        skipSpaces()
        try skipComment()
        if atEnd || consumeNewline() { return }
        throw error("expected end of line after \(what), found \(describe(peek()))")
    }

    // MARK: document

    mutating func parseDocument() throws(CtrError) -> TOMLTable {
        let root = TOMLNode(line: 0)
        var current = root
        while true {
            try skipBlank()
            if atEnd { break }
            if peek() == UInt8(ascii: "[") {
                current = try parseHeader(root: root)
                try expectLineEnd(after: "table header")
            } else {
                try parseKeyValue(into: current)
                try expectLineEnd(after: "value")
            }
        }
        return root.freeze()
    }

    static func dotted(_ path: some Collection<String>) -> String {
        path.map(TOML.quoteKey).joined(separator: ".")
    }

    mutating func parseHeader(root: TOMLNode) throws(CtrError) -> TOMLNode {
        let pos = i
        let isArray = peek(1) == UInt8(ascii: "[")
        i += isArray ? 2 : 1
        skipSpaces()
        let path = try parseKey()
        skipSpaces()
        if isArray {
            guard peek() == UInt8(ascii: "]"), peek(1) == UInt8(ascii: "]") else {
                throw error("expected ']]' to close the array-of-tables header, found \(describe(peek()))")
            }
            i += 2
        } else {
            guard peek() == UInt8(ascii: "]") else {
                throw error("expected ']' to close the table header, found \(describe(peek()))")
            }
            i += 1
        }
        let line = lineAt(pos)
        let name = Self.dotted(path)
        var node = root
        for (n, k) in path.dropLast().enumerated() {
            switch node.items[k] {
            case nil:
                let child = TOMLNode(line: line)
                node.set(k, .table(child), line: line)
                node = child
            case .table(let child)?:
                node = child
            case .tables(let array)?:
                node = array.tables[array.tables.count - 1]
            case .value(let v)?:
                throw error("cannot define table \(name): \(Self.dotted(path.prefix(n + 1))) is already \(v.typeName)", at: pos)
            }
        }
        let last = path[path.count - 1]
        if isArray {
            let element = TOMLNode(line: line)
            element.explicit = true
            switch node.items[last] {
            case nil:
                let array = TOMLTableArray()
                array.tables.append(element)
                node.set(last, .tables(array), line: line)
            case .tables(let array)?:
                array.tables.append(element)
            case .table?:
                throw error("cannot define array of tables [[\(name)]]: \(name) is already a table", at: pos)
            case .value(let v)?:
                throw error("cannot define array of tables [[\(name)]]: \(name) is already \(v.typeName)", at: pos)
            }
            return element
        }
        switch node.items[last] {
        case nil:
            let t = TOMLNode(line: line)
            t.explicit = true
            node.set(last, .table(t), line: line)
            return t
        case .table(let t)?:
            if t.explicit { throw error("table [\(name)] is defined more than once", at: pos) }
            if t.viaDottedKeys { throw error("table [\(name)] was already defined with dotted keys", at: pos) }
            t.explicit = true
            t.line = line
            return t
        case .tables?:
            throw error("cannot define table [\(name)]: \(name) is an array of tables", at: pos)
        case .value(let v)?:
            throw error("cannot define table [\(name)]: \(name) is already \(v.typeName)", at: pos)
        }
    }

    // MARK: keys

    mutating func parseKey() throws(CtrError) -> [String] {
        var parts: [String] = []
        while true {
            skipSpaces()
            parts.append(try parseSimpleKey())
            skipSpaces()
            if peek() == UInt8(ascii: ".") {
                i += 1
                continue
            }
            return parts
        }
    }

    mutating func parseSimpleKey() throws(CtrError) -> String {
        guard let c = peek() else { throw error("expected a key, found end of file") }
        if c == UInt8(ascii: "\"") { return try parseBasicString(allowMultiline: false) }
        if c == UInt8(ascii: "'") { return try parseLiteralString(allowMultiline: false) }
        let start = i
        while let c = peek(), Self.isBareKeyByte(c) { i += 1 }
        if i == start { throw error("expected a key, found \(describe(c))") }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    mutating func parseKeyValue(into table: TOMLNode) throws(CtrError) {
        let keyPos = i
        let path = try parseKey()
        skipSpaces()
        guard peek() == UInt8(ascii: "=") else { throw error("expected '=' after key") }
        i += 1
        skipSpaces()
        let value = try parseValue()
        try insert(path, value, into: table, at: keyPos)
    }

    func insert(_ path: [String], _ value: TOMLValue, into table: TOMLNode, at pos: Int) throws(CtrError) {
        let line = lineAt(pos)
        var node = table
        for (n, k) in path.dropLast().enumerated() {
            switch node.items[k] {
            case nil:
                let child = TOMLNode(line: line)
                child.viaDottedKeys = true
                node.set(k, .table(child), line: line)
                node = child
            case .table(let child)?:
                if child.explicit {
                    throw error("cannot add to table \(Self.dotted(path.prefix(n + 1))) with a dotted key: it is defined by a [header]", at: pos)
                }
                node = child
            case .tables?:
                throw error("cannot add to \(Self.dotted(path.prefix(n + 1))) with a dotted key: it is an array of tables", at: pos)
            case .value(let v)?:
                throw error("key \(Self.dotted(path.prefix(n + 1))) is already defined as \(v.typeName)", at: pos)
            }
        }
        let last = path[path.count - 1]
        if node.items[last] != nil {
            throw error("duplicate key \(Self.dotted(path))", at: pos)
        }
        node.set(last, .value(value), line: line)
    }

    // MARK: values

    mutating func parseValue() throws(CtrError) -> TOMLValue {
        guard let c = peek() else { throw error("expected a value, found end of file") }
        switch c {
        case UInt8(ascii: "\""): return .string(try parseBasicString(allowMultiline: true))
        case UInt8(ascii: "'"): return .string(try parseLiteralString(allowMultiline: true))
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "{"): return try parseInlineTable()
        case 0x0A, 0x0D, UInt8(ascii: "#"): throw error("expected a value after '='")
        default: return try parseScalarWord()
        }
    }

    mutating func parseScalarWord() throws(CtrError) -> TOMLValue {
        let start = i
        while let c = peek(), Self.isBareKeyByte(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: ":") {
            i += 1
        }
        let word = String(decoding: b[start..<i], as: UTF8.self)
        if word.isEmpty { throw error("expected a value, found \(describe(peek()))") }
        switch word {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        if let v = Self.number(word) { return v }
        if Self.looksLikeDate(word) {
            throw error("dates and times are not supported (\"\(word)\")", at: start)
        }
        if word.first.map({ $0.isNumber || $0 == "+" || $0 == "-" }) ?? false {
            throw error("invalid number \"\(word)\"", at: start)
        }
        throw error("invalid value \"\(word)\" (strings must be quoted)", at: start)
    }

    static func looksLikeDate(_ w: String) -> Bool {
        let u = Array(w.utf8)
        func digit(_ k: Int) -> Bool { k < u.count && (0x30...0x39).contains(u[k]) }
        if u.count >= 10, (0..<4).allSatisfy(digit), u[4] == UInt8(ascii: "-") { return true }
        if u.count >= 5, digit(0), digit(1), u[2] == UInt8(ascii: ":") { return true }
        return false
    }

    /// Digits with single underscores between digits.
    static func cleanDigits(_ s: Substring, isDigit: (Character) -> Bool) -> String? {
        guard let f = s.first, let l = s.last, isDigit(f), isDigit(l) else { return nil }
        var out = ""
        var prevUnderscore = false
        for ch in s {
            if ch == "_" {
                if prevUnderscore { return nil }
                prevUnderscore = true
                continue
            }
            guard isDigit(ch) else { return nil }
            prevUnderscore = false
            out.append(ch)
        }
        return out
    }

    static func number(_ word: String) -> TOMLValue? {
        let isDec: (Character) -> Bool = { $0.isASCII && $0.isNumber }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where word.hasPrefix(prefix) {
            let digits = word.dropFirst(2)
            let isDigit: (Character) -> Bool = { $0.isASCII && ($0.hexDigitValue.map { $0 < radix } ?? false) }
            guard let clean = cleanDigits(digits, isDigit: isDigit), let v = Int64(clean, radix: radix) else { return nil }
            return .integer(v)
        }
        var body = Substring(word)
        var sign = ""
        if let f = body.first, f == "+" || f == "-" {
            sign = f == "-" ? "-" : ""
            body = body.dropFirst()
        }
        // Split into integer part, fraction, exponent.
        var intPart = body
        var fraction: Substring?
        var exponent: Substring?
        if let e = body.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = body[body.index(after: e)...]
            intPart = body[..<e]
        }
        if let dot = intPart.firstIndex(of: ".") {
            fraction = intPart[intPart.index(after: dot)...]
            intPart = intPart[..<dot]
        }
        guard let intDigits = cleanDigits(intPart, isDigit: isDec) else { return nil }
        if intDigits.count > 1 && intDigits.hasPrefix("0") { return nil }  // no leading zeros
        if fraction == nil && exponent == nil {
            guard let v = Int64(sign + intDigits) else { return nil }
            return .integer(v)
        }
        var text = sign + intDigits
        if let fraction {
            guard let f = cleanDigits(fraction, isDigit: isDec) else { return nil }
            text += "." + f
        }
        if let exponent {
            var e = exponent
            var eSign = ""
            if let f = e.first, f == "+" || f == "-" {
                eSign = String(f)
                e = e.dropFirst()
            }
            guard let digits = cleanDigits(e, isDigit: isDec) else { return nil }
            text += "e" + eSign + digits
        }
        guard let v = Double(text) else { return nil }
        return .float(v)
    }

    mutating func parseArray() throws(CtrError) -> TOMLValue {
        let open = i
        i += 1
        var items: [TOMLValue] = []
        while true {
            try skipBlank()
            guard let c = peek() else { throw error("unterminated array (opened on line \(lineAt(open)))") }
            if c == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            items.append(try parseValue())
            try skipBlank()
            guard let d = peek() else { throw error("unterminated array (opened on line \(lineAt(open)))") }
            if d == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if d == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            throw error("expected ',' or ']' in array, found \(describe(d))")
        }
    }

    mutating func parseInlineTable() throws(CtrError) -> TOMLValue {
        let open = i
        i += 1
        let node = TOMLNode(line: lineAt(open))
        skipSpaces()
        if peek() == UInt8(ascii: "}") {
            i += 1
            return .table(node.freeze())
        }
        while true {
            skipSpaces()
            if atEnd || peek() == 0x0A || peek() == 0x0D {
                throw error("unterminated inline table (opened on line \(lineAt(open)); inline tables must be on one line)")
            }
            try parseKeyValue(into: node)
            skipSpaces()
            guard let c = peek(), c != 0x0A, c != 0x0D else {
                throw error("unterminated inline table (opened on line \(lineAt(open)); inline tables must be on one line)")
            }
            if c == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if c == UInt8(ascii: "}") {
                i += 1
                return .table(node.freeze())
            }
            throw error("expected ',' or '}' in inline table, found \(describe(c))")
        }
    }

    // MARK: strings

    mutating func parseBasicString(allowMultiline: Bool) throws(CtrError) -> String {
        let start = i
        if allowMultiline && peek(1) == UInt8(ascii: "\"") && peek(2) == UInt8(ascii: "\"") {
            i += 3
            return try parseMultiline(UInt8(ascii: "\""), start: start)
        }
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated string", at: start) }
            switch c {
            case UInt8(ascii: "\""):
                i += 1
                return String(decoding: out, as: UTF8.self)
            case 0x0A, 0x0D:
                throw error("unterminated string (use \"\"\" for strings that span lines)", at: start)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            default:
                if Self.isControl(c) { throw error("control character \(describe(c)) in string") }
                out.append(c)
                i += 1
            }
        }
    }

    /// A multi-line string after its opening `"""` (basic: escapes and line-ending backslashes)
    /// or `'''` (literal: the bytes as they are).
    mutating func parseMultiline(_ quote: UInt8, start: Int) throws(CtrError) -> String {
        let basic = quote == UInt8(ascii: "\"")
        let kind = basic ? "multi-line string" : "multi-line literal string"
        _ = consumeNewline()  // a newline right after the opening delimiter is trimmed
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error("unterminated \(kind)", at: start) }
            if c == quote && peek(1) == quote && peek(2) == quote {
                var n = 3
                while peek(n) == quote { n += 1 }
                if n > 5 { throw error("too many quotes at the end of a \(kind)") }
                out += Array(repeating: quote, count: n - 3)
                i += n
                return String(decoding: out, as: UTF8.self)
            }
            if basic && c == UInt8(ascii: "\\") {
                // Line-ending backslash: drop the newline and all whitespace that follows.
                var j = i + 1
                while j < b.count, b[j] == 0x20 || b[j] == 0x09 { j += 1 }
                if j < b.count, b[j] == 0x0A || (b[j] == 0x0D && j + 1 < b.count && b[j + 1] == 0x0A) {
                    i = j
                    while let d = peek(), d == 0x20 || d == 0x09 || d == 0x0A || d == 0x0D { i += 1 }
                    continue
                }
                try parseEscape(into: &out)
                continue
            }
            if c == 0x0D && peek(1) == 0x0A {
                out.append(0x0A)
                i += 2
                continue
            }
            if c != 0x0A && Self.isControl(c) { throw error("control character \(describe(c)) in string") }
            out.append(c)
            i += 1
        }
    }

    mutating func parseEscape(into out: inout [UInt8]) throws(CtrError) {
        let pos = i
        i += 1
        guard let e = peek() else { throw error("unterminated string") }
        i += 1
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard i + n <= b.count else { throw error("invalid unicode escape", at: pos) }
            let hex = b[i..<(i + n)]
            guard hex.allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                  let v = UInt32(String(decoding: hex, as: UTF8.self), radix: 16),
                  let scalar = Unicode.Scalar(v)
            else {
                throw error("invalid unicode escape \\\(Character(Unicode.Scalar(e)))\(String(decoding: hex, as: UTF8.self))", at: pos)
            }
            out += Array(String(Character(scalar)).utf8)
            i += n
        default:
            throw error("invalid escape sequence \\\(describeEscape(e)) in string", at: pos)
        }
    }

    func describeEscape(_ c: UInt8) -> String {
        (0x21...0x7E).contains(c) ? String(Character(Unicode.Scalar(c))) : "x" + hex(UInt32(c), width: 2)
    }

    mutating func parseLiteralString(allowMultiline: Bool) throws(CtrError) -> String {
        let start = i
        if allowMultiline && peek(1) == UInt8(ascii: "'") && peek(2) == UInt8(ascii: "'") {
            i += 3
            return try parseMultiline(UInt8(ascii: "'"), start: start)
        }
        i += 1
        let contentStart = i
        while true {
            guard let c = peek() else { throw error("unterminated literal string", at: start) }
            if c == UInt8(ascii: "'") {
                let s = String(decoding: b[contentStart..<i], as: UTF8.self)
                i += 1
                return s
            }
            if c == 0x0A || c == 0x0D {
                throw error("unterminated literal string (use ''' for strings that span lines)", at: start)
            }
            if Self.isControl(c) { throw error("control character \(describe(c)) in string") }
            i += 1
        }
    }
}
