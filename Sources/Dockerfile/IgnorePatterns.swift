// .dockerignore patterns, following moby/patternmatcher (and its ignorefile reader):
// Go filepath.Match syntax plus `**`, `!` exceptions, last matching pattern wins, a path is
// excluded when it or one of its parent directories matches.

public struct IgnorePatterns: Sendable {
    public struct Pattern: Sendable, Hashable {
        /// The cleaned pattern, without the leading `!`.
        public let text: String
        /// true for a `!` exception (re-include).
        public let exclusion: Bool
        let tokens: [Token]
    }

    enum Token: Sendable, Hashable {
        case literal(Unicode.Scalar)
        case star                 // `*`: any run of non-separator characters
        case any                  // `?`: one non-separator character
        case set(negated: Bool, ranges: [ClosedRange<UInt32>])
        case anyDirs              // `**/` (or `**` inside): empty or anything ending in `/`
        case anything             // `**` at the end: anything
    }

    public private(set) var patterns: [Pattern] = []
    /// Patterns that are not valid (e.g. an unterminated `[`); they are ignored.
    public private(set) var invalidPatterns: [String] = []

    /// From the text of a .dockerignore file.
    public init(text: String) {
        var lines: [String] = []
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            var line = Substring(raw)
            if i == 0, line.hasPrefix("\u{FEFF}") { line = line.dropFirst() }
            let trimmed = Self.trimSpace(line)
            if trimmed.hasPrefix("#") || trimmed.isEmpty { continue }
            lines.append(trimmed)
        }
        self.init(patterns: lines)
    }

    /// From pattern lines (no comment handling).
    public init(patterns: [String]) {
        for raw in patterns {
            var p = Self.trimSpace(Substring(raw))
            if p.isEmpty { continue }
            var exclusion = false
            if p.hasPrefix("!") {
                exclusion = true
                p = Self.trimSpace(p.dropFirst())
                if p.isEmpty {
                    invalidPatterns.append(raw)
                    continue
                }
            }
            p = Self.clean(p)
            if p.count > 1, p.hasPrefix("/") { p.removeFirst() }
            guard let tokens = Self.compile(p) else {
                invalidPatterns.append(raw)
                continue
            }
            self.patterns.append(Pattern(text: p, exclusion: exclusion, tokens: tokens))
        }
    }

    /// Whether some pattern is a `!` exception.
    public var hasExceptions: Bool { patterns.contains { $0.exclusion } }

    public var isEmpty: Bool { patterns.isEmpty }

    /// Whether `relativePath` (relative to the context root, `/`-separated) is excluded.
    public func isExcluded(_ relativePath: String) -> Bool {
        let path = Self.clean(relativePath).drop(while: { $0 == "/" })
        if path.isEmpty || path == "." { return false }
        let scalars = Array(path.unicodeScalars)
        var matched = false
        for pattern in patterns where pattern.exclusion == matched {
            if Self.match(pattern.tokens, scalars, prefixOnly: false) {
                matched = !pattern.exclusion
            }
        }
        return matched
    }

    /// Whether an exception pattern could re-include something below the directory `dir`:
    /// when false and `dir` is excluded, a walker may skip the whole directory.
    public func mayContainIncluded(dir: String) -> Bool {
        let path = Self.clean(dir).drop(while: { $0 == "/" })
        let prefix = Array((path.isEmpty || path == "." ? "" : path + "/").unicodeScalars)
        for pattern in patterns where pattern.exclusion {
            if Self.match(pattern.tokens, prefix, prefixOnly: true) { return true }
        }
        return false
    }

    // MARK: - Matching

    /// The whole path matches (the pattern followed by an optional `/...`), or with
    /// `prefixOnly` the path could be the beginning of a matching path.
    static func match(_ tokens: [Token], _ s: [Unicode.Scalar], prefixOnly: Bool) -> Bool {
        func m(_ ti: Int, _ si: Int) -> Bool {
            var ti = ti, si = si
            while true {
                if prefixOnly && si == s.count { return true }
                if ti == tokens.count { return si == s.count || s[si] == "/" }
                switch tokens[ti] {
                case .anything:
                    return true
                case .anyDirs:
                    if m(ti + 1, si) { return true }
                    var k = si
                    while k < s.count {
                        if s[k] == "/", m(ti + 1, k + 1) { return true }
                        k += 1
                    }
                    return prefixOnly
                case .star:
                    var k = si
                    while true {
                        if m(ti + 1, k) { return true }
                        if k == s.count || s[k] == "/" { return false }
                        k += 1
                    }
                case .any:
                    guard si < s.count, s[si] != "/" else { return false }
                case let .literal(c):
                    guard si < s.count, s[si] == c else { return false }
                case let .set(negated, ranges):
                    guard si < s.count, s[si] != "/" else { return false }
                    if ranges.contains(where: { $0.contains(s[si].value) }) == negated { return false }
                }
                ti += 1
                si += 1
            }
        }
        return m(0, 0)
    }

    static func compile(_ pattern: String) -> [Token]? {
        let p = Array(pattern.unicodeScalars)
        var tokens: [Token] = []
        var i = 0
        while i < p.count {
            let c = p[i]
            i += 1
            switch c {
            case "*":
                if i < p.count, p[i] == "*" {
                    i += 1
                    if i < p.count, p[i] == "/" { i += 1 }
                    tokens.append(i == p.count ? .anything : .anyDirs)
                } else {
                    tokens.append(.star)
                }
            case "?":
                tokens.append(.any)
            case "\\":
                if i < p.count {
                    tokens.append(.literal(p[i]))
                    i += 1
                } else {
                    tokens.append(.literal("\\"))
                }
            case "[":
                // Go filepath.Match: '[' [ '^' ] { char | lo '-' hi } ']', `\` escapes.
                var negated = false
                if i < p.count, p[i] == "^" {
                    negated = true
                    i += 1
                }
                var ranges: [ClosedRange<UInt32>] = []
                var closed = false
                var first = true
                func readChar() -> Unicode.Scalar? {
                    guard i < p.count else { return nil }
                    var ch = p[i]
                    i += 1
                    if ch == "\\" {
                        guard i < p.count else { return nil }
                        ch = p[i]
                        i += 1
                    }
                    return ch
                }
                while i < p.count {
                    if p[i] == "]" && !first {
                        i += 1
                        closed = true
                        break
                    }
                    first = false
                    guard let lo = readChar() else { return nil }
                    var hi = lo
                    if i < p.count, p[i] == "-" {
                        i += 1
                        guard let h = readChar() else { return nil }
                        hi = h
                    }
                    guard lo.value <= hi.value else { return nil }
                    ranges.append(lo.value...hi.value)
                }
                guard closed else { return nil }
                tokens.append(.set(negated: negated, ranges: ranges))
            default:
                tokens.append(.literal(c))
            }
        }
        return tokens
    }

    // MARK: - Helpers

    static func trimSpace(_ s: Substring) -> String {
        String(s.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }

    /// Go's path.Clean (also how ctr build cleans paths in the context and the image).
    public static func clean(_ path: String) -> String {
        if path.isEmpty { return "." }
        let rooted = path.hasPrefix("/")
        var out: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                if let last = out.last, last != ".." {
                    out.removeLast()
                } else if !rooted {
                    out.append(part)
                }
            default: out.append(part)
            }
        }
        let joined = out.joined(separator: "/")
        if rooted { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }
}
