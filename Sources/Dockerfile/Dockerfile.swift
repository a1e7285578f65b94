// Dockerfile syntax: the data model. Parsing is in Parser.swift, word expansion in
// Expander.swift, .dockerignore patterns in IgnorePatterns.swift.
//
// Representation notes (what the executor gets):
// - Values that Docker expands with the build environment are kept RAW: quotes and escape
//   characters are still in them, `$VAR` is not substituted. Expand them with
//   `Expander.expandWord` (one word: ENV/LABEL keys and values, ARG defaults, USER, WORKDIR,
//   STOPSIGNAL, each EXPOSE/VOLUME/COPY/ADD word, FROM image, --platform) using the escape
//   character of the Dockerfile. For the JSON forms of COPY/ADD/VOLUME the decoded JSON
//   strings are stored (BuildKit then runs the same word expansion on each of them).
// - Exec/shell commands (RUN, CMD, ENTRYPOINT, HEALTHCHECK CMD) are never expanded by the
//   builder; the shell form string is the argument text as written (after flags).

import Errors

extension CtrError {
    /// A Dockerfile that does not parse (`.invalidInput`): reads `file:line: message`.
    public static func dockerfile(file: String, line: Int, _ message: String) -> CtrError {
        .at(file: file, line: line, message)
    }
}

/// A builder flag (`--name=value`, or `--name` with `value == nil`).
public struct Flag: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var value: String?

    public init(name: String, value: String? = nil) {
        self.name = name
        self.value = value
    }

    public var description: String { value.map { "--\(name)=\($0)" } ?? "--\(name)" }
}

/// `key=value` of ENV and LABEL; both parts raw (unexpanded, quotes still in).
public struct KeyValue: Sendable, Hashable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// One `name[=default]` of ARG; the default is raw (unexpanded, quotes still in).
public struct ArgDecl: Sendable, Hashable {
    public var name: String
    public var defaultValue: String?

    public init(_ name: String, _ defaultValue: String? = nil) {
        self.name = name
        self.defaultValue = defaultValue
    }
}

/// A here-document of RUN, COPY or ADD.
public struct Heredoc: Sendable, Hashable {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    public var name: String
    /// The body: every line followed by "\n"; for `<<-` leading tabs already stripped.
    public var content: String
    /// false when (part of) the delimiter was quoted: no expansion of the body.
    public var expand: Bool
    /// true for `<<-`.
    public var chomp: Bool
    /// The file descriptor written before `<<` (`3<<EOF`), nil when none was given.
    public var fileDescriptor: Int?

    public init(name: String, content: String, expand: Bool = true, chomp: Bool = false, fileDescriptor: Int? = nil) {
        self.name = name
        self.content = content
        self.expand = expand
        self.chomp = chomp
        self.fileDescriptor = fileDescriptor
    }
}

/// RUN/CMD/ENTRYPOINT argument: a JSON array of strings is the exec form, anything else
/// (including text starting with `[` that is not valid JSON) is the shell form.
public enum Command: Sendable, Hashable {
    case exec([String])
    case shell(String)

    /// The shell script BuildKit hands to the shell for a shell-form RUN with heredocs:
    /// the command line, then each heredoc body followed by its delimiter line, so the shell
    /// itself processes the `<<EOF` redirections. Without heredocs: the command itself.
    public static func script(_ command: String, heredocs: [Heredoc]) -> String {
        var parts = [command]
        for h in heredocs { parts.append(h.content + h.name) }
        return parts.joined(separator: "\n")
    }
}

/// HEALTHCHECK CMD (Docker form). Durations are kept as written (Go duration syntax, already
/// validated); the `…Nanoseconds` properties convert them.
public struct Healthcheck: Sendable, Hashable {
    /// `["CMD", arg...]` (exec form) or `["CMD-SHELL", "command"]` (shell form).
    public var test: [String]
    public var interval: String?
    public var timeout: String?
    public var startPeriod: String?
    public var startInterval: String?
    public var retries: Int?

    public init(test: [String], interval: String? = nil, timeout: String? = nil, startPeriod: String? = nil,
                startInterval: String? = nil, retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.startInterval = startInterval
        self.retries = retries
    }

    public var intervalNanoseconds: Int64? { interval.flatMap(GoDuration.parse) }
    public var timeoutNanoseconds: Int64? { timeout.flatMap(GoDuration.parse) }
    public var startPeriodNanoseconds: Int64? { startPeriod.flatMap(GoDuration.parse) }
    public var startIntervalNanoseconds: Int64? { startInterval.flatMap(GoDuration.parse) }
}

public enum Kind: Sendable, Hashable {
    /// image and platform raw; alias lowercased.
    case from(image: String, platform: String?, alias: String?)
    /// For the shell form the command text keeps the `<<EOF` tokens; the bodies are in
    /// `heredocs` (see `Command.script(_:heredocs:)`).
    case run(Command, heredocs: [Heredoc])
    case cmd(Command)
    case entrypoint(Command)
    case shell([String])
    case env([KeyValue])
    case label([KeyValue])
    case arg([ArgDecl])
    /// Sources and dest raw (or decoded JSON strings). A heredoc source appears as its
    /// name (`<<EOF` → `EOF`); `Instruction.copySources` tells them apart.
    case copy(sources: [String], dest: String, heredocs: [Heredoc])
    case add(sources: [String], dest: String, heredocs: [Heredoc])
    case expose([String])
    case volume([String])
    case user(String)
    case workdir(String)
    case stopsignal(String)
    /// nil for HEALTHCHECK NONE.
    case healthcheck(Healthcheck?)
    /// The trigger text as written (e.g. `RUN echo hi`), already validated.
    case onbuild(String)
    case maintainer(String)
}

/// A source of COPY/ADD: a path (raw) or a heredoc.
public enum CopySource: Sendable, Hashable {
    case path(String)
    case heredoc(Heredoc)
}

public struct Instruction: Sendable, Hashable {
    /// Uppercased: RUN, COPY, ...
    public var keyword: String
    /// First line of the instruction (1-based).
    public var line: Int
    /// The instruction as written, continuations joined (escape char + newline removed),
    /// surrounding whitespace trimmed. Heredoc bodies are not included.
    public var original: String
    public var flags: [Flag]
    public var kind: Kind
    /// true when the arguments were given in JSON array form.
    public var jsonForm: Bool

    public init(keyword: String, line: Int, original: String, flags: [Flag] = [], kind: Kind, jsonForm: Bool = false) {
        self.keyword = keyword
        self.line = line
        self.original = original
        self.flags = flags
        self.kind = kind
        self.jsonForm = jsonForm
    }

    /// The value of the last `--name` flag (`"true"` for a bare boolean flag), nil when absent.
    public func flagValue(_ name: String) -> String? {
        guard let f = flags.last(where: { $0.name == name }) else { return nil }
        return f.value ?? "true"
    }

    /// All values of a repeatable flag (`--mount`, `--exclude`), in order.
    public func flagValues(_ name: String) -> [String] {
        flags.filter { $0.name == name }.map { $0.value ?? "true" }
    }

    /// A boolean flag (`--link`, `--link=true`, `--link=false`); false when absent.
    public func boolFlag(_ name: String) -> Bool {
        flagValue(name)?.lowercased() == "true"
    }

    /// For COPY/ADD: the sources with heredocs resolved; empty for other instructions.
    public var copySources: [CopySource] {
        let sources: [String], heredocs: [Heredoc]
        switch kind {
        case let .copy(s, _, h), let .add(s, _, h): (sources, heredocs) = (s, h)
        default: return []
        }
        var remaining = heredocs[...]
        return sources.map { src in
            if let h = remaining.first, h.name == src {
                remaining = remaining.dropFirst()
                return .heredoc(h)
            }
            return .path(src)
        }
    }
}

public struct Stage: Sendable, Hashable {
    public var index: Int
    /// The `AS` name, lowercased.
    public var name: String?
    /// The image (or stage name) after FROM, unexpanded.
    public var base: String
    /// The --platform flag, unexpanded.
    public var platform: String?
    /// Line of the FROM.
    public var line: Int
    /// The FROM instruction itself.
    public var from: Instruction
    /// The instructions after FROM (the FROM is not included).
    public var instructions: [Instruction]

    public init(index: Int, name: String?, base: String, platform: String?, line: Int, from: Instruction, instructions: [Instruction]) {
        self.index = index
        self.name = name
        self.base = base
        self.platform = platform
        self.line = line
        self.from = from
        self.instructions = instructions
    }
}

public struct Dockerfile: Sendable {
    /// Parser directives from the top of the file, lowercased keys ("syntax", "escape", "check").
    public var directives: [String: String]
    /// "\\" or "`".
    public var escape: Character
    /// ARG instructions before the first FROM.
    public var globalArgs: [Instruction]
    public var stages: [Stage]

    public init(directives: [String: String] = [:], escape: Character = "\\", globalArgs: [Instruction] = [], stages: [Stage] = []) {
        self.directives = directives
        self.escape = escape
        self.globalArgs = globalArgs
        self.stages = stages
    }

    /// Automatic platform ARGs (usable after `ARG NAME` without a default).
    public static let platformArgNames = [
        "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
        "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
    ]

    /// Predefined proxy ARGs (usable with --build-arg without an ARG, left out of history).
    public static let proxyArgNames = [
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
    ]

    /// A stage by its name (case-insensitive) or by its index ("0", "1", ...).
    public func stage(named ref: String) -> Stage? {
        let lower = ref.lowercased()
        if let s = stages.first(where: { $0.name == lower }) { return s }
        if let i = Int(ref), i >= 0, i < stages.count { return stages[i] }
        return nil
    }
}
