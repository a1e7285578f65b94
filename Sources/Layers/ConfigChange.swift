import Foundation
import HostOS

/// Errors in a `--change` instruction, naming it.
public struct ConfigChangeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// Dockerfile instructions that only touch the image config, as `podman import --change` and
/// `docker import --change` accept them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
/// STOPSIGNAL, USER, VOLUME, WORKDIR.
public enum ConfigChange {
    public static let allowed = ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"]

    public static func apply(_ change: String, to config: inout ContainerConfig) throws {
        let trimmed = change.trimmingCharacters(in: .whitespacesAndNewlines)
        func fail(_ why: String) -> ConfigChangeError { ConfigChangeError(message: "--change \"\(change)\": \(why)") }
        guard !trimmed.isEmpty else { throw fail("empty instruction") }
        let keywordEnd = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" }) ?? trimmed.endIndex
        let keyword = trimmed[..<keywordEnd].uppercased()
        var rest = String(trimmed[keywordEnd...]).trimmingCharacters(in: .whitespaces)
        // podman also accepts "CMD=..." forms
        if rest.hasPrefix("=") { rest = String(rest.dropFirst()).trimmingCharacters(in: .whitespaces) }
        guard allowed.contains(keyword) else {
            throw fail("\(keyword) cannot be used here (allowed: \(allowed.joined(separator: ", ")))")
        }
        switch keyword {
        case "CMD":
            config.cmd = try commandForm(rest, fail)
        case "ENTRYPOINT":
            config.entrypoint = try commandForm(rest, fail)
            if config.entrypoint?.isEmpty == true { config.entrypoint = nil }
        case "ENV":
            for (k, v) in try keyValues(rest, allowSpaceForm: true, fail) { config.setEnv(k, v) }
        case "LABEL":
            for (k, v) in try keyValues(rest, allowSpaceForm: false, fail) {
                var labels = config.labels ?? [:]
                labels[k] = v
                config.labels = labels
            }
        case "EXPOSE":
            let ports = try ShellWords.split(rest).map { p -> String in
                guard let key = exposedPortKey(p) else { throw fail("invalid port \"\(p)\": expected PORT[/tcp|udp|sctp] or a range START-END") }
                return key
            }
            guard !ports.isEmpty else { throw fail("EXPOSE needs at least one port") }
            var exposed = config.exposedPorts ?? [:]
            for p in ports { exposed[p] = EmptyObject() }
            config.exposedPorts = exposed
        case "VOLUME":
            let vols: [String] = rest.hasPrefix("[") ? try jsonArray(rest, fail) : try ShellWords.split(rest)
            guard !vols.isEmpty else { throw fail("VOLUME needs a path") }
            var v = config.volumes ?? [:]
            for p in vols { v[p] = EmptyObject() }
            config.volumes = v
        case "USER":
            guard !rest.isEmpty else { throw fail("USER needs a user") }
            config.user = rest
        case "WORKDIR":
            guard !rest.isEmpty else { throw fail("WORKDIR needs a path") }
            if rest.hasPrefix("/") {
                config.workingDir = rest
            } else {
                let base = config.workingDir ?? "/"
                config.workingDir = (base.hasSuffix("/") ? base : base + "/") + rest
            }
        case "STOPSIGNAL":
            guard !rest.isEmpty else { throw fail("STOPSIGNAL needs a signal") }
            guard Signals.number(rest) != nil else { throw fail("unknown signal \"\(rest)\"") }
            config.stopSignal = rest
        case "ONBUILD":
            guard !rest.isEmpty else { throw fail("ONBUILD needs an instruction") }
            config.onBuild = (config.onBuild ?? []) + [rest]
        default:
            break
        }
    }

    /// Exec form (a JSON array) or shell form (wrapped in /bin/sh -c).
    static func commandForm(_ s: String, _ fail: (String) -> ConfigChangeError) throws -> [String] {
        if s.hasPrefix("[") {
            return try jsonArray(s, fail)
        }
        guard !s.isEmpty else { throw fail("missing command") }
        return ["/bin/sh", "-c", s]
    }

    static func jsonArray(_ s: String, _ fail: (String) -> ConfigChangeError) throws -> [String] {
        guard let a = try? JSONDecoder().decode([String].self, from: Data(s.utf8)) else {
            throw fail("not a JSON array of strings")
        }
        return a
    }

    /// `k=v k2="v 2"`, or the legacy `k v w` form (one pair, the rest is the value).
    static func keyValues(_ s: String, allowSpaceForm: Bool, _ fail: (String) -> ConfigChangeError) throws -> [(String, String)] {
        let words = try ShellWords.split(s)
        guard let first = words.first else { throw fail("missing key=value") }
        if !first.contains("=") {
            guard allowSpaceForm, words.count >= 2 else { throw fail("expected key=value, got \"\(first)\"") }
            // value: the text after the key, as written (quotes removed)
            let value = words.dropFirst().joined(separator: " ")
            return [(first, value)]
        }
        return try words.map { w in
            guard let eq = w.firstIndex(of: "="), eq != w.startIndex else { throw fail("expected key=value, got \"\(w)\"") }
            return (String(w[..<eq]), String(w[w.index(after: eq)...]))
        }
    }
}

/// Splits words the way a Dockerfile does for ENV/LABEL: whitespace separates, double and
/// single quotes group, a backslash escapes the next character (not inside single quotes).
public enum ShellWords {
    public struct QuoteError: Error, CustomStringConvertible {
        public var description: String { "unterminated quote" }
    }

    public static func split(_ s: String, escape: Character = "\\") throws -> [String] {
        var words: [String] = []
        var cur = ""
        var inWord = false
        var quote: Character? = nil
        var it = s.makeIterator()
        while let c = it.next() {
            if let q = quote {
                if c == q { quote = nil; continue }
                if c == escape && q == "\"" {
                    if let n = it.next() {
                        if n != "\"" && n != escape && n != "$" { cur.append(escape) }
                        cur.append(n)
                    }
                    continue
                }
                cur.append(c)
                continue
            }
            if c == " " || c == "\t" || c == "\n" {
                if inWord { words.append(cur); cur = ""; inWord = false }
                continue
            }
            inWord = true
            if c == "\"" || c == "'" { quote = c; continue }
            if c == escape {
                if let n = it.next() { cur.append(n) }
                continue
            }
            cur.append(c)
        }
        if quote != nil { throw QuoteError() }
        if inWord { words.append(cur) }
        return words
    }
}

/// An exposed port as an image config keys it: `80` → `80/tcp`, `53/UDP` → `53/udp`,
/// `8000-8010` kept as a range; nil when it is not PORT[-PORT][/tcp|udp|sctp].
public func exposedPortKey(_ spec: String) -> String? {
    let parts = spec.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    let range = parts[0].split(separator: "-", omittingEmptySubsequences: false)
    guard (1...2).contains(range.count), range.allSatisfy({ UInt16($0) != nil }) else { return nil }
    let proto = parts.count > 1 ? parts[1].lowercased() : "tcp"
    guard ["tcp", "udp", "sctp"].contains(proto) else { return nil }
    return "\(parts[0])/\(proto)"
}

extension ContainerConfig {
    /// Set NAME=value in `env`. A variable that is there already keeps its place, as Docker
    /// replaces it (`ENV a=1 b=2` then `ENV a=3` gives a=3 b=2); a new one goes last. The
    /// order is part of the config, so of the image id.
    public mutating func setEnv(_ name: String, _ value: String) {
        var list = env ?? []
        let isIt = { (e: String) in e.hasPrefix("\(name)=") || e == name }
        if let i = list.firstIndex(where: isIt) {
            list[i] = "\(name)=\(value)"
            list = list.enumerated().filter { $0.offset == i || !isIt($0.element) }.map(\.element)
        } else {
            list.append("\(name)=\(value)")
        }
        env = list
    }
}
