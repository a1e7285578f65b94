import Errors
import Foundation

// The Dockerfile parser, following BuildKit's frontend/dockerfile/parser and instructions.

extension CtrError {
    /// A syntax error without a location yet (the parser adds file and line: `CtrError.at`).
    static func syntax(_ message: String) -> CtrError {
        .invalid(message)
    }
}

extension Dockerfile {
    /// Parses a whole Dockerfile.
    public static func parse(_ text: String, file: String = "Dockerfile") throws(CtrError) -> Dockerfile {
        var parser = DockerfileParser(text: text, file: file)
        return try parser.run()
    }

    /// Parses one instruction line (no continuations, no heredoc bodies): e.g. an ONBUILD
    /// trigger of a base image, or a `--change` argument.
    public static func parseInstruction(_ text: String, escape: Character = "\\", file: String = "Dockerfile",
                                        line: Int = 1) throws(CtrError) -> Instruction {
        do {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            let head = try splitInstruction(trimmed, escape: escape)
            return try buildInstruction(head, heredocs: [], original: trimmed, line: line, escape: escape)
        } catch let e as CtrError where e.file == nil {
            throw CtrError.dockerfile(file: file, line: line, e.message)
        } catch {
            throw CtrError.dockerfile(file: file, line: line, "\(error)")
        }
    }

    static let knownDirectives: Set<String> = ["syntax", "escape", "check"]
    static let heredocKeywords: Set<String> = ["RUN", "COPY", "ADD"]
}

struct DockerfileParser {
    let lines: [String]
    let file: String

    init(text: String, file: String) {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { line -> String in
            line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
        }
        if let first = lines.first, first.hasPrefix("\u{FEFF}") { lines[0] = String(first.dropFirst()) }
        self.lines = lines
        self.file = file
    }

    func fail(_ line: Int, _ message: String) -> CtrError {
        CtrError.dockerfile(file: file, line: line, message)
    }

    mutating func run() throws(CtrError) -> Dockerfile {
        var result = Dockerfile()
        var directivesDone = false
        var instructions: [Instruction] = []
        var idx = 0
        while idx < lines.count {
            let lineNo = idx + 1
            let raw = lines[idx]
            idx += 1
            if !directivesDone {
                if let (key, value) = Self.directive(raw), Dockerfile.knownDirectives.contains(key) {
                    if result.directives[key] != nil {
                        throw fail(lineNo, "only one \(key) parser directive can be used")
                    }
                    if key == "escape" {
                        guard value == "`" || value == "\\" else {
                            throw fail(lineNo, "invalid escape token '\(value)' does not match ` or \\")
                        }
                        result.escape = value.first!
                    }
                    result.directives[key] = value
                    continue
                }
                directivesDone = true
            }
            let trimmed = raw.drop(while: { $0.isWhitespace })
            if trimmed.isEmpty || trimmed.first == "#" { continue }
            var (joined, continues) = Self.trimContinuation(Substring(trimmed), escape: result.escape)
            while continues && idx < lines.count {
                let next = lines[idx]
                idx += 1
                let t = next.drop(while: { $0.isWhitespace })
                if t.isEmpty || t.first == "#" { continue }
                let (content, more) = Self.trimContinuation(Substring(next), escape: result.escape)
                joined += content
                continues = more
            }
            let original = joined.trimmingCharacters(in: .whitespaces)
            do {
                let head = try splitInstruction(original, escape: result.escape)
                var heredocs: [Heredoc] = []
                if Dockerfile.heredocKeywords.contains(head.keyword) {
                    heredocs = try heredocHeaders(head.rest)
                    for i in heredocs.indices {
                        var content = ""
                        var terminated = false
                        while idx < lines.count {
                            let body = lines[idx]
                            idx += 1
                            let candidate = heredocs[i].chomp ? String(body.drop(while: { $0 == "\t" })) : body
                            if candidate == heredocs[i].name {
                                terminated = true
                                break
                            }
                            content += body + "\n"
                        }
                        if !terminated { throw CtrError.syntax("unterminated heredoc \(heredocs[i].name)") }
                        if heredocs[i].chomp {
                            content = content.split(separator: "\n", omittingEmptySubsequences: false)
                                .map { String($0.drop(while: { $0 == "\t" })) }
                                .joined(separator: "\n")
                        }
                        heredocs[i].content = content
                    }
                }
                let inst = try buildInstruction(head, heredocs: heredocs, original: original, line: lineNo,
                                                escape: result.escape)
                instructions.append(inst)
            } catch let e as CtrError where e.file == nil {
                throw fail(lineNo, e.message)
            } catch let e as CtrError {
                throw e
            } catch {
                throw fail(lineNo, "\(error)")
            }
        }

        // Group into stages.
        if instructions.isEmpty { throw fail(max(lines.count, 1), "file with no instructions") }
        var names: Set<String> = []
        for inst in instructions {
            if case let .from(image, platform, alias) = inst.kind {
                if let alias {
                    if names.contains(alias) { throw fail(inst.line, "duplicate stage name \"\(alias)\"") }
                    names.insert(alias)
                }
                result.stages.append(Stage(index: result.stages.count, name: alias, base: image, platform: platform,
                                           line: inst.line, from: inst, instructions: []))
            } else if result.stages.isEmpty {
                guard inst.keyword == "ARG" else {
                    throw fail(inst.line, "no build stage in current context: \(inst.keyword) before the first FROM (only ARG may come before FROM)")
                }
                result.globalArgs.append(inst)
            } else {
                result.stages[result.stages.count - 1].instructions.append(inst)
            }
        }
        if result.stages.isEmpty {
            throw fail(instructions.last!.line, "dockerfile contains no stages to build (no FROM)")
        }
        return result
    }

    /// `# key = value` (BuildKit: `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`), key lowercased.
    static func directive(_ line: String) -> (String, String)? {
        var s = Substring(line.drop(while: { $0 == " " || $0 == "\t" }))
        guard s.first == "#" else { return nil }
        s = s.dropFirst().drop(while: { $0.isWhitespace })
        guard let first = s.first, first.isASCII, first.isLetter else { return nil }
        let key = s.prefix(while: { $0.isASCII && ($0.isLetter || $0.isNumber) })
        s = s.dropFirst(key.count).drop(while: { $0.isWhitespace })
        guard s.first == "=" else { return nil }
        let value = s.dropFirst().trimmingCharacters(in: .whitespaces)
        guard !value.isEmpty else { return nil }
        return (key.lowercased(), value)
    }

    /// Removes a trailing escape character (optionally followed by blanks).
    static func trimContinuation(_ s: Substring, escape: Character) -> (String, Bool) {
        var end = s.endIndex
        while end > s.startIndex {
            let before = s.index(before: end)
            if s[before] == " " || s[before] == "\t" { end = before } else { break }
        }
        if end > s.startIndex, s[s.index(before: end)] == escape {
            return (String(s[s.startIndex..<s.index(before: end)]), true)
        }
        return (String(s), false)
    }
}

// MARK: - One instruction

struct InstructionHead {
    var keyword: String   // uppercased
    var flags: [Flag]
    var rest: String      // the arguments after the flags, trimmed
}

func isBlank(_ c: Character) -> Bool { c.isWhitespace }

/// Splits `KEYWORD --flags args`.
func splitInstruction(_ line: String, escape: Character) throws -> InstructionHead {
    let trimmed = line.trimmingCharacters(in: .whitespaces)
    let keyword = trimmed.prefix(while: { !isBlank($0) })
    let afterKeyword = trimmed.dropFirst(keyword.count).drop(while: isBlank)
    let (flagWords, rest) = extractFlags(String(afterKeyword))
    var flags: [Flag] = []
    for w in flagWords {
        let body = w.dropFirst(2)
        if let eq = body.firstIndex(of: "=") {
            flags.append(Flag(name: String(body[..<eq]), value: String(body[body.index(after: eq)...])))
        } else {
            flags.append(Flag(name: String(body), value: nil))
        }
    }
    return InstructionHead(keyword: keyword.uppercased(), flags: flags,
                           rest: rest.trimmingCharacters(in: .whitespaces))
}

/// BuildKit's extractBuilderFlags: leading words starting with `--` (quotes removed, `\`
/// escapes), stopping at the first other word or at a lone `--`.
func extractFlags(_ line: String) -> ([String], String) {
    let chars = Array(line)
    var words: [String] = []
    var pos = 0
    while true {
        while pos < chars.count, isBlank(chars[pos]) { pos += 1 }
        guard pos + 1 < chars.count, chars[pos] == "-", chars[pos + 1] == "-" else {
            return (words, String(chars[pos...]))
        }
        var word = ""
        var quote: Character? = nil
        var blankOK = false
        while pos < chars.count {
            let ch = chars[pos]
            if let q = quote {
                if ch == q { quote = nil; pos += 1; continue }
                if ch == "\\" {
                    if pos + 1 == chars.count { pos += 1; continue }
                    pos += 1
                }
                word.append(chars[pos])
                pos += 1
                continue
            }
            if isBlank(ch) { break }
            if ch == "'" || ch == "\"" { quote = ch; blankOK = true; pos += 1; continue }
            if ch == "\\" {
                if pos + 1 == chars.count { pos += 1; continue }
                pos += 1
            }
            word.append(chars[pos])
            pos += 1
        }
        if word == "--" {
            return (words, String(chars[pos...]))
        }
        if blankOK || !word.isEmpty { words.append(word) }
    }
}

/// BuildKit's parseWords: splits on unquoted whitespace, keeping quotes and escapes.
func splitRawWords(_ rest: String, escape: Character) -> [String] {
    let chars = Array(rest)
    var words: [String] = []
    var word = ""
    var inWord = false
    var quote: Character? = nil
    var blankOK = false
    var pos = 0
    while pos < chars.count {
        let ch = chars[pos]
        if let q = quote {
            if ch == q { quote = nil }
            if ch == escape && q != "'" {
                if pos + 1 == chars.count { quote = nil; pos += 1; continue }
                word.append(ch)
                pos += 1
            }
            word.append(chars[pos])
            pos += 1
            continue
        }
        if isBlank(ch) {
            if inWord, blankOK || !word.isEmpty { words.append(word) }
            word = ""
            inWord = false
            blankOK = false
            pos += 1
            continue
        }
        inWord = true
        if ch == "'" || ch == "\"" { quote = ch; blankOK = true }
        if ch == escape {
            if pos + 1 == chars.count { pos += 1; continue }
            word.append(ch)
            pos += 1
        }
        word.append(chars[pos])
        pos += 1
    }
    if inWord, blankOK || !word.isEmpty { words.append(word) }
    return words
}

func splitWhitespace(_ s: String) -> [String] {
    s.split(whereSeparator: isBlank).map(String.init)
}

/// A JSON array of strings, nil when `rest` is not a JSON array; throws when it is an
/// array with other elements.
func parseJSONStrings(_ rest: String) throws -> [String]? {
    guard rest.hasPrefix("["), rest.hasSuffix("]"), let data = rest.data(using: .utf8) else { return nil }
    guard let obj = try? JSONSerialization.jsonObject(with: data, options: []), let array = obj as? [Any] else {
        return nil
    }
    var out: [String] = []
    for el in array {
        guard let s = el as? String else {
            throw CtrError.syntax("when using JSON array syntax, arrays must be comprised of strings only")
        }
        out.append(s)
    }
    return out
}

func parseCommand(_ rest: String) throws -> Command? {
    if rest.isEmpty { return nil }
    if let array = try parseJSONStrings(rest) { return .exec(array) }
    return .shell(rest)
}

/// Heredoc headers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) among the words of `rest`, in order.
func heredocHeaders(_ rest: String) throws -> [Heredoc] {
    try splitRawWords(rest, escape: "\\").compactMap(parseHeredocWord)
}

/// BuildKit's `^(\d*)<<(-?)([^<]*)$` and delimiter unquoting.
func parseHeredocWord(_ word: String) throws -> Heredoc? {
    var s = Substring(word)
    let digits = s.prefix(while: { $0.isASCII && $0.isNumber })
    s = s.dropFirst(digits.count)
    guard s.hasPrefix("<<") else { return nil }
    s = s.dropFirst(2)
    let chomp = s.first == "-"
    if chomp { s = s.dropFirst() }
    guard !s.isEmpty, !s.contains("<") else { return nil }
    let words = try Expander.expandWords(String(s), env: { _ in nil }, escape: "\\", skipUnset: true)
    guard words.count == 1 else { return nil }
    let quotes: (Substring) -> Int = { $0.filter { $0 == "'" || $0 == "\"" }.count }
    let expand = quotes(Substring(words[0])) == quotes(s)
    return Heredoc(name: words[0], content: "", expand: expand, chomp: chomp,
                   fileDescriptor: digits.isEmpty ? nil : Int(digits))
}

enum FlagKind { case string, bool, strings }

let allowedFlags: [String: [String: FlagKind]] = [
    "FROM": ["platform": .string],
    "RUN": ["mount": .strings, "network": .string, "security": .string],
    "COPY": ["from": .string, "chown": .string, "chmod": .string, "link": .bool, "parents": .bool, "exclude": .strings],
    "ADD": ["chown": .string, "chmod": .string, "checksum": .string, "keep-git-dir": .bool, "link": .bool,
            "exclude": .strings],
    "HEALTHCHECK": ["interval": .string, "timeout": .string, "start-period": .string, "start-interval": .string,
                    "retries": .string],
]

func validateFlags(_ keyword: String, _ flags: [Flag]) throws -> [Flag] {
    let allowed = allowedFlags[keyword] ?? [:]
    var seen: Set<String> = []
    var out: [Flag] = []
    for f in flags {
        guard let kind = allowed[f.name] else { throw CtrError.syntax("unknown flag: --\(f.name)") }
        switch kind {
        case .string, .strings:
            guard f.value != nil else { throw CtrError.syntax("missing a value on flag: --\(f.name)") }
            if kind == .string, seen.contains(f.name) { throw CtrError.syntax("duplicate flag specified: --\(f.name)") }
            out.append(f)
        case .bool:
            if seen.contains(f.name) { throw CtrError.syntax("duplicate flag specified: --\(f.name)") }
            switch f.value?.lowercased() {
            case nil: out.append(f)
            case "true", "false": out.append(Flag(name: f.name, value: f.value!.lowercased()))
            case "": throw CtrError.syntax("missing a value on flag: --\(f.name)")
            default: throw CtrError.syntax("expecting boolean value for flag --\(f.name), not: \(f.value!)")
            }
        }
        seen.insert(f.name)
    }
    return out
}

func stageNamePattern(_ name: String) -> Bool {
    guard let first = name.first, first.isASCII, first.isLowercase else { return false }
    return name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "_" || $0 == "." }
}

func parseKeyValues(_ keyword: String, _ rest: String, escape: Character) throws -> [KeyValue] {
    let words = splitRawWords(rest, escape: escape)
    guard let first = words.first else { throw CtrError.syntax("\(keyword) requires at least one argument") }
    if !first.contains("=") {
        // Legacy form: KEY name value with spaces
        let key = rest.prefix(while: { !isBlank($0) })
        let value = rest.dropFirst(key.count).drop(while: isBlank)
        guard !value.isEmpty else { throw CtrError.syntax("\(keyword) must have two arguments") }
        return [KeyValue(String(key), String(value))]
    }
    return try words.map { word in
        guard let eq = word.firstIndex(of: "=") else {
            throw CtrError.syntax("Syntax error - can't find = in \"\(word)\". Must be of the form: name=value")
        }
        let key = String(word[..<eq])
        guard !key.isEmpty else { throw CtrError.syntax("\(keyword) names can not be blank") }
        return KeyValue(key, String(word[word.index(after: eq)...]))
    }
}

/// Builds an instruction from its head (and the heredoc bodies already read).
func buildInstruction(_ head: InstructionHead, heredocs: [Heredoc], original: String, line: Int,
                      escape: Character) throws -> Instruction {
    let kw = head.keyword
    let rest = head.rest
    let known: Set<String> = ["FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "ENV", "LABEL", "ARG", "COPY", "ADD",
                              "EXPOSE", "VOLUME", "USER", "WORKDIR", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD",
                              "MAINTAINER"]
    guard known.contains(kw) else { throw CtrError.syntax("unknown instruction: \(kw)") }
    let flags = try validateFlags(kw, head.flags)
    var json = false
    let kind: Kind

    func command() throws -> Command {
        guard let c = try parseCommand(rest) else { throw CtrError.syntax("\(kw) requires at least one argument") }
        if case .exec = c { json = true }
        return c
    }
    func exactlyOne() throws -> String {
        guard !rest.isEmpty else { throw CtrError.syntax("\(kw) requires exactly one argument") }
        return rest
    }

    switch kw {
    case "FROM":
        let words = splitWhitespace(rest)
        guard words.count == 1 || words.count == 3 else {
            throw CtrError.syntax("FROM requires either one or three arguments")
        }
        var alias: String? = nil
        if words.count == 3 {
            guard words[1].uppercased() == "AS" else { throw CtrError.syntax("Expected 'AS' after the image name, got '\(words[1])'") }
            let name = words[2].lowercased()
            guard stageNamePattern(name) else {
                throw CtrError.syntax("invalid name for build stage: \"\(words[2])\", name can't start with a number or contain symbols")
            }
            alias = name
        }
        kind = .from(image: words[0], platform: flags.last(where: { $0.name == "platform" })?.value, alias: alias)
    case "RUN":
        kind = .run(try command(), heredocs: heredocs)
    case "CMD":
        kind = .cmd(try command())
    case "ENTRYPOINT":
        kind = .entrypoint(try command())
    case "SHELL":
        guard !rest.isEmpty else { throw CtrError.syntax("SHELL requires at least one argument") }
        guard let array = try parseJSONStrings(rest) else {
            throw CtrError.syntax("SHELL requires the arguments to be in JSON form")
        }
        guard !array.isEmpty else { throw CtrError.syntax("SHELL requires at least one argument") }
        json = true
        kind = .shell(array)
    case "ENV":
        kind = .env(try parseKeyValues(kw, rest, escape: escape))
    case "LABEL":
        kind = .label(try parseKeyValues(kw, rest, escape: escape))
    case "ARG":
        let words = splitRawWords(rest, escape: escape)
        guard !words.isEmpty else { throw CtrError.syntax("ARG requires at least one argument") }
        kind = .arg(try words.map { word in
            guard let eq = word.firstIndex(of: "=") else { return ArgDecl(word) }
            let name = String(word[..<eq])
            guard !name.isEmpty else { throw CtrError.syntax("ARG names can not be blank") }
            return ArgDecl(name, String(word[word.index(after: eq)...]))
        })
    case "COPY", "ADD":
        var args: [String]
        if let array = try parseJSONStrings(rest) {
            args = array
            json = true
        } else {
            args = try splitRawWords(rest, escape: escape).map { word in
                if !heredocs.isEmpty, let h = try parseHeredocWord(word) { return h.name }
                return word
            }
        }
        if args.isEmpty { throw CtrError.syntax("\(kw) requires at least two arguments") }
        if args.count == 1 {
            throw CtrError.syntax("\(kw) requires at least two arguments, but only one was provided. Destination could not be determined")
        }
        let dest = args.removeLast()
        kind = kw == "COPY" ? .copy(sources: args, dest: dest, heredocs: heredocs)
                            : .add(sources: args, dest: dest, heredocs: heredocs)
    case "EXPOSE":
        let words = splitRawWords(rest, escape: escape)
        guard !words.isEmpty else { throw CtrError.syntax("EXPOSE requires at least one argument") }
        kind = .expose(words)
    case "VOLUME":
        var words: [String]
        if let array = try parseJSONStrings(rest) {
            words = array
            json = true
        } else {
            words = splitRawWords(rest, escape: escape)
        }
        guard !words.isEmpty else { throw CtrError.syntax("VOLUME requires at least one argument") }
        if words.contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            throw CtrError.syntax("VOLUME specified can not be an empty string")
        }
        kind = .volume(words)
    case "USER":
        kind = .user(try exactlyOne())
    case "WORKDIR":
        kind = .workdir(try exactlyOne())
    case "STOPSIGNAL":
        kind = .stopsignal(try exactlyOne())
    case "MAINTAINER":
        kind = .maintainer(try exactlyOne())
    case "HEALTHCHECK":
        kind = .healthcheck(try parseHealthcheck(rest, flags: flags, json: &json))
    case "ONBUILD":
        guard !rest.isEmpty else { throw CtrError.syntax("ONBUILD requires at least one argument") }
        let trigger = try splitInstruction(rest, escape: escape)
        switch trigger.keyword {
        case "ONBUILD": throw CtrError.syntax("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        case "FROM", "MAINTAINER": throw CtrError.syntax("\(trigger.keyword) isn't allowed as an ONBUILD trigger")
        default: break
        }
        _ = try buildInstruction(trigger, heredocs: [], original: rest, line: line, escape: escape)
        kind = .onbuild(rest)
    default:
        throw CtrError.syntax("unknown instruction: \(kw)")
    }
    return Instruction(keyword: kw, line: line, original: original, flags: flags, kind: kind, jsonForm: json)
}

func parseHealthcheck(_ rest: String, flags: [Flag], json: inout Bool) throws -> Healthcheck? {
    guard !rest.isEmpty else { throw CtrError.syntax("HEALTHCHECK requires at least one argument") }
    let typ = rest.prefix(while: { !isBlank($0) })
    let args = String(rest.dropFirst(typ.count).drop(while: isBlank))
    switch typ.uppercased() {
    case "NONE":
        guard args.isEmpty else { throw CtrError.syntax("HEALTHCHECK NONE takes no arguments") }
        return nil
    case "CMD":
        var test: [String]
        switch try parseCommand(args) {
        case nil, .exec([]): throw CtrError.syntax("Missing command after HEALTHCHECK CMD")
        case let .exec(a):
            json = true
            test = ["CMD"] + a
        case let .shell(s):
            test = ["CMD-SHELL", s]
        }
        var hc = Healthcheck(test: test)
        func duration(_ name: String) throws -> String? {
            guard let v = flags.last(where: { $0.name == name })?.value, !v.isEmpty else { return nil }
            guard let ns = GoDuration.parse(v) else { throw CtrError.syntax("time: invalid duration \"\(v)\" for --\(name)") }
            if ns != 0 && ns < 1_000_000 { throw CtrError.syntax("Interval \"\(name)\" cannot be less than 1ms") }
            return v
        }
        hc.interval = try duration("interval")
        hc.timeout = try duration("timeout")
        hc.startPeriod = try duration("start-period")
        hc.startInterval = try duration("start-interval")
        if let r = flags.last(where: { $0.name == "retries" })?.value, !r.isEmpty {
            guard let n = Int(r), n >= Int(Int32.min), n <= Int(Int32.max) else {
                throw CtrError.syntax("invalid value \"\(r)\" for --retries")
            }
            guard n >= 0 else { throw CtrError.syntax("--retries cannot be negative (\(n))") }
            hc.retries = n
        }
        return hc
    default:
        throw CtrError.syntax("Unknown type \"\(typ.uppercased())\" in HEALTHCHECK (try CMD)")
    }
}

/// Go's time.ParseDuration ("300ms", "1.5h", "2h45m", "0"), in nanoseconds.
public enum GoDuration {
    public static func parse(_ s: String) -> Int64? {
        var chars = Substring(s)
        var negative = false
        if chars.first == "-" || chars.first == "+" {
            negative = chars.first == "-"
            chars = chars.dropFirst()
        }
        if chars == "0" { return 0 }
        if chars.isEmpty { return nil }
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6),
                                         ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        var total = 0.0
        while !chars.isEmpty {
            let number = chars.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ".") })
            guard !number.isEmpty, number != ".", number.filter({ $0 == "." }).count <= 1,
                  let value = Double(number.hasPrefix(".") ? "0" + number : String(number)) else { return nil }
            chars = chars.dropFirst(number.count)
            let unitText = chars.prefix(while: { !($0.isASCII && ($0.isNumber || $0 == ".")) })
            guard let unit = units.first(where: { $0.0 == String(unitText) }) else { return nil }
            chars = chars.dropFirst(unitText.count)
            total += value * unit.1
        }
        guard total <= Double(Int64.max) else { return nil }
        return negative ? -Int64(total) : Int64(total)
    }
}
