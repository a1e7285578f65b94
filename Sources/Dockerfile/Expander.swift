// Word expansion as BuildKit's frontend/dockerfile/shell lexer does it: quote removal,
// escapes, `$VAR` / `${VAR...}` substitution, and (for expandWords) splitting.

import Errors

extension CtrError {
    /// A word that does not expand (a bad `${…}`, an unterminated quote): `.invalidInput`.
    static func expansion(_ message: String) -> CtrError {
        .invalid(message)
    }
}

public enum Expander {
    public static let platformArgNames = Dockerfile.platformArgNames
    public static let proxyArgNames = Dockerfile.proxyArgNames

    /// Expands one word (no splitting): quote removal, escapes, variable substitution.
    /// Unset variables expand to "".
    public static func expandWord(_ s: String, env: (String) -> String?, escape: Character = "\\") throws(CtrError) -> String {
        try withoutActuallyEscaping(env) { (env) throws(CtrError) -> String in
            var lexer = ShellLexer(s, escape: escape, env: env)
            return try lexer.processWord().0
        }
    }

    /// Splits on unquoted whitespace (also whitespace produced by unquoted `$VAR`), then
    /// expands each word.
    public static func expandWords(_ s: String, env: (String) -> String?, escape: Character = "\\") throws(CtrError) -> [String] {
        try expandWords(s, env: env, escape: escape, skipUnset: false)
    }

    public static func expandWord(_ s: String, env: [String: String], escape: Character = "\\") throws(CtrError) -> String {
        try expandWord(s, env: { env[$0] }, escape: escape)
    }

    public static func expandWords(_ s: String, env: [String: String], escape: Character = "\\") throws(CtrError) -> [String] {
        try expandWords(s, env: { env[$0] }, escape: escape)
    }

    /// Quote removal and escapes only, no substitution: `$X` and `${X:-y}` stay as written
    /// (as `--change` values are taken).
    public static func unquote(_ s: String, escape: Character = "\\") throws(CtrError) -> String {
        var lexer = ShellLexer(s, escape: escape, env: { _ in nil })
        lexer.skipUnset = true
        return try lexer.processWord().0
    }

    /// With `skipUnset`, unset variables are left as written (`$X`, `${X:-y}`).
    static func expandWords(_ s: String, env: (String) -> String?, escape: Character, skipUnset: Bool) throws(CtrError) -> [String] {
        try withoutActuallyEscaping(env) { (env) throws(CtrError) -> [String] in
            var lexer = ShellLexer(s, escape: escape, env: env)
            lexer.skipUnset = skipUnset
            return try lexer.processWord().1
        }
    }

    /// A shell glob (`*`, `?`, `[...]`/`[!...]`, escape char) matching the whole of `s`.
    public static func globMatch(_ pattern: String, _ s: String, escape: Character = "\\") -> Bool {
        ShellGlob(pattern, escape: escape.unicodeScalars.first!).matches(Array(s.unicodeScalars)[...])
    }
}

/// BuildKit's wordsStruct.
private struct Words {
    var words: [String] = []
    var word = ""
    var inWord = false

    mutating func addChar(_ ch: Unicode.Scalar) {
        if ch.properties.isWhitespace {
            if inWord && !word.isEmpty {
                words.append(word)
                word = ""
                inWord = false
            }
        } else {
            addRawChar(ch)
        }
    }

    mutating func addRawChar(_ ch: Unicode.Scalar) {
        word.unicodeScalars.append(ch)
        inWord = true
    }

    mutating func addString(_ s: String) { for c in s.unicodeScalars { addChar(c) } }
    mutating func addRawString(_ s: String) { for c in s.unicodeScalars { addRawChar(c) } }

    mutating func result() -> [String] {
        if !word.isEmpty {
            words.append(word)
            word = ""
            inWord = false
        }
        return words
    }
}

struct ShellLexer {
    let s: [Unicode.Scalar]
    var pos = 0
    let escape: Unicode.Scalar
    let env: (String) -> String?
    var skipUnset = false

    init(_ text: String, escape: Character, env: @escaping (String) -> String?) {
        s = Array(text.unicodeScalars)
        self.escape = escape.unicodeScalars.first!
        self.env = env
    }

    func peek() -> Unicode.Scalar? { pos < s.count ? s[pos] : nil }

    mutating func next() -> Unicode.Scalar? {
        guard pos < s.count else { return nil }
        pos += 1
        return s[pos - 1]
    }

    mutating func processWord() throws(CtrError) -> (String, [String]) {
        let (r, w, _) = try process(stopOn: nil, rawEscapes: false)
        return (r, w)
    }

    /// Processes until `stopOn` (consumed) or the end. Returns the text, the words and
    /// whether the stop character was found.
    mutating func process(stopOn stop: Unicode.Scalar?, rawEscapes: Bool) throws(CtrError) -> (String, [String], Bool) {
        var result = String.UnicodeScalarView()
        var words = Words()
        while let ch = peek() {
            if let stop, ch == stop {
                _ = next()
                return (String(result), words.result(), true)
            }
            switch ch {
            case "'":
                let tmp = try singleQuote()
                result.append(contentsOf: tmp.unicodeScalars)
                words.addRawString(tmp)
            case "\"":
                let tmp = try doubleQuote()
                result.append(contentsOf: tmp.unicodeScalars)
                words.addRawString(tmp)
            case "$":
                let tmp = try dollar()
                result.append(contentsOf: tmp.unicodeScalars)
                words.addString(tmp)
            default:
                _ = next()
                if ch == escape {
                    if rawEscapes {
                        result.append(ch)
                        words.addRawChar(ch)
                    }
                    guard let escaped = next() else { break }
                    result.append(escaped)
                    words.addRawChar(escaped)
                } else {
                    result.append(ch)
                    words.addChar(ch)
                }
            }
        }
        return (String(result), words.result(), false)
    }

    mutating func singleQuote() throws(CtrError) -> String {
        _ = next()
        var out = String.UnicodeScalarView()
        while true {
            guard let ch = next() else {
                throw CtrError.expansion("unexpected end of statement while looking for matching single-quote")
            }
            if ch == "'" { return String(out) }
            out.append(ch)
        }
    }

    mutating func doubleQuote() throws(CtrError) -> String {
        _ = next()
        var out = ""
        while true {
            guard let ch = peek() else {
                throw CtrError.expansion("unexpected end of statement while looking for matching double-quote")
            }
            if ch == "\"" {
                _ = next()
                return out
            }
            if ch == "$" {
                out += try dollar()
                continue
            }
            _ = next()
            if ch == escape {
                guard let p = peek() else { continue }  // escape at the end is dropped
                if p == "\"" || p == "$" || p == escape {
                    out.unicodeScalars.append(next()!)
                    continue
                }
            }
            out.unicodeScalars.append(ch)
        }
    }

    static func isSpecialParam(_ c: Unicode.Scalar) -> Bool {
        "@*#?-$!0".unicodeScalars.contains(c)
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.properties.numericType == .decimal }

    mutating func name() -> String {
        var out = String.UnicodeScalarView()
        while let ch = peek() {
            if out.isEmpty && Self.isDigit(ch) {
                while let d = peek(), Self.isDigit(d) { out.append(next()!) }
                return String(out)
            }
            if out.isEmpty && Self.isSpecialParam(ch) {
                return String(next()!)
            }
            guard ch.properties.isAlphabetic || Self.isDigit(ch) || ch == "_" else { break }
            out.append(next()!)
        }
        return String(out)
    }

    mutating func dollar() throws(CtrError) -> String {
        _ = next()  // $
        if peek() != "{" {
            let n = name()
            if n.isEmpty { return "$" }
            if let v = env(n) { return v }
            return skipUnset ? "$" + n : ""
        }
        _ = next()  // {
        switch peek() {
        case nil: throw CtrError.expansion("syntax error: missing '}'")
        case "{", "}", ":": throw CtrError.expansion("syntax error: bad substitution")
        default: break
        }
        let n = name()
        guard let ch = next() else { throw CtrError.expansion("syntax error: missing '}'") }
        switch ch {
        case "}":
            if let v = env(n) { return v }
            return skipUnset ? "${\(n)}" : ""
        case ":", "+", "-", "?", "#", "%":
            var op: Unicode.Scalar? = ch
            var modifier = String(ch)
            let nullIsUnset = ch == ":"
            if nullIsUnset {
                op = next()
                if let op { modifier.unicodeScalars.append(op) }
            }
            let rawEscapes = op == "#" || op == "%"
            if nullIsUnset && rawEscapes {
                throw CtrError.expansion("unsupported modifier (\(modifier)) in substitution")
            }
            let (word, _, found) = try process(stopOn: "}", rawEscapes: rawEscapes)
            guard found else { throw CtrError.expansion("syntax error: missing '}'") }
            let value = env(n)
            if skipUnset && value == nil { return "${\(n)\(modifier)\(word)}" }
            let unset = value == nil || (nullIsUnset && value == "")
            switch op {
            case "-":
                return unset ? word : value!
            case "+":
                return unset ? "" : word
            case "?":
                guard let value else {
                    throw CtrError.expansion("\(n): \(word.isEmpty ? "is not allowed to be unset" : word)")
                }
                if nullIsUnset && value.isEmpty {
                    throw CtrError.expansion("\(n): \(word.isEmpty ? "is not allowed to be empty" : word)")
                }
                return value
            case "#", "%":
                var pattern = word
                var greedy = false
                if pattern.unicodeScalars.first == op {
                    greedy = true
                    pattern.unicodeScalars.removeFirst()
                }
                return trim(value ?? "", pattern: pattern, suffix: op == "%", greedy: greedy)
            default:
                throw CtrError.expansion("unsupported modifier (\(modifier)) in substitution")
            }
        case "/":
            let replaceAll = peek() == "/"
            if replaceAll { _ = next() }
            let (pattern, _, foundSlash) = try process(stopOn: "/", rawEscapes: true)
            guard foundSlash else { throw CtrError.expansion("syntax error: missing '/' in ${}") }
            let (replacement, _, foundBrace) = try process(stopOn: "}", rawEscapes: true)
            guard foundBrace else { throw CtrError.expansion("syntax error: missing '}'") }
            let value = env(n)
            if skipUnset && value == nil { return "${\(n)/\(pattern)/\(replacement)}" }
            let unescaped = Self.removeEscapes(replacement, escape: escape)
            return replace(value ?? "", pattern: pattern, with: unescaped, all: replaceAll)
        default:
            if n.isEmpty { throw CtrError.expansion("syntax error: bad substitution") }
            throw CtrError.expansion("unsupported modifier (\(String(ch))) in substitution")
        }
    }

    static func removeEscapes(_ s: String, escape: Unicode.Scalar) -> String {
        var out = String.UnicodeScalarView()
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            if c == escape {
                if let n = it.next() { out.append(n) }
            } else {
                out.append(c)
            }
        }
        return String(out)
    }

    func trim(_ value: String, pattern: String, suffix: Bool, greedy: Bool) -> String {
        let glob = ShellGlob(pattern, escape: escape)
        let v = Array(value.unicodeScalars)
        let candidates: [Int] = greedy ? Array((0...v.count).reversed()) : Array(0...v.count)
        for len in candidates {
            if suffix {
                if glob.matches(v[(v.count - len)...]) { return String(String.UnicodeScalarView(v[..<(v.count - len)])) }
            } else {
                if glob.matches(v[..<len]) { return String(String.UnicodeScalarView(v[len...])) }
            }
        }
        return value
    }

    func replace(_ value: String, pattern: String, with replacement: String, all: Bool) -> String {
        let glob = ShellGlob(pattern, escape: escape)
        let v = Array(value.unicodeScalars)
        var out = String.UnicodeScalarView()
        var start = 0
        var replaced = false
        while start < v.count {
            if !(replaced && !all) {
                var matchEnd: Int? = nil
                var end = v.count
                while end > start {  // longest non-empty match at `start`
                    if glob.matches(v[start..<end]) { matchEnd = end; break }
                    end -= 1
                }
                if let matchEnd {
                    out.append(contentsOf: replacement.unicodeScalars)
                    start = matchEnd
                    replaced = true
                    continue
                }
            }
            out.append(v[start])
            start += 1
        }
        return String(out)
    }
}

/// A shell pattern: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`, escape char for a literal.
struct ShellGlob {
    enum Token {
        case literal(Unicode.Scalar)
        case star
        case any
        case set(negated: Bool, ranges: [ClosedRange<Unicode.Scalar>])
    }

    var tokens: [Token] = []

    init(_ pattern: String, escape: Unicode.Scalar) {
        let p = Array(pattern.unicodeScalars)
        var i = 0
        while i < p.count {
            let c = p[i]
            i += 1
            switch c {
            case "*": tokens.append(.star)
            case "?": tokens.append(.any)
            case "[":
                if let (token, next) = Self.parseSet(p, i, escape: escape) {
                    tokens.append(token)
                    i = next
                } else {
                    tokens.append(.literal("["))
                }
            default:
                if c == escape, i < p.count {
                    tokens.append(.literal(p[i]))
                    i += 1
                } else {
                    tokens.append(.literal(c))
                }
            }
        }
    }

    static func parseSet(_ p: [Unicode.Scalar], _ start: Int, escape: Unicode.Scalar) -> (Token, Int)? {
        var i = start
        var negated = false
        if i < p.count, p[i] == "!" || p[i] == "^" {
            negated = true
            i += 1
        }
        var ranges: [ClosedRange<Unicode.Scalar>] = []
        var first = true
        while i < p.count {
            var c = p[i]
            if c == "]" && !first { return (.set(negated: negated, ranges: ranges), i + 1) }
            first = false
            i += 1
            if c == escape, i < p.count { c = p[i]; i += 1 }
            var hi = c
            if i + 1 < p.count, p[i] == "-", p[i + 1] != "]" {
                hi = p[i + 1]
                i += 2
                if hi == escape, i < p.count { hi = p[i]; i += 1 }
            }
            if c <= hi { ranges.append(c...hi) }
        }
        return nil
    }

    func matches(_ s: ArraySlice<Unicode.Scalar>) -> Bool {
        match(0, s.startIndex, s)
    }

    private func match(_ ti: Int, _ si: Int, _ s: ArraySlice<Unicode.Scalar>) -> Bool {
        var ti = ti, si = si
        while ti < tokens.count {
            switch tokens[ti] {
            case .star:
                if ti == tokens.count - 1 { return true }
                var k = si
                while k <= s.endIndex {
                    if match(ti + 1, k, s) { return true }
                    k += 1
                }
                return false
            case .any:
                guard si < s.endIndex else { return false }
            case let .literal(c):
                guard si < s.endIndex, s[si] == c else { return false }
            case let .set(negated, ranges):
                guard si < s.endIndex else { return false }
                if ranges.contains(where: { $0.contains(s[si]) }) == negated { return false }
            }
            ti += 1
            si += 1
        }
        return si == s.endIndex
    }
}

extension KeyValue {
    /// Key and value expanded (ENV/LABEL). As Docker, every pair of one instruction is
    /// expanded with the environment from before the instruction (`ENV A=1 B=$A` gives B the
    /// old A).
    public func expanded(env: (String) -> String?, escape: Character) throws(CtrError) -> KeyValue {
        KeyValue(try Expander.expandWord(key, env: env, escape: escape),
                 try Expander.expandWord(value, env: env, escape: escape))
    }
}

extension ArgDecl {
    /// The default expanded (nil stays nil).
    public func expanded(env: (String) -> String?, escape: Character) throws(CtrError) -> ArgDecl {
        guard let defaultValue else { return self }
        return ArgDecl(name, try Expander.expandWord(defaultValue, env: env, escape: escape))
    }
}
