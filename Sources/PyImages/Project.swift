import Errors
import Foundation
import TOML

/// A Python project as pbrx's `build-images` reads it: its name, console scripts and extras,
/// from `pyproject.toml` (`[project]`) or `setup.cfg` (`[metadata]`, `[entry_points]`,
/// `[extras]`, `[options.extras_require]`).
public struct PythonProject: Sendable, Equatable {
    /// As written (`Zuul_Server`).
    public var name: String
    /// Console scripts in the order written: name → entry point (`pkg.cli:main`).
    public var scripts: [(name: String, entry: String)]
    /// Extra → its requirements, names normalised (see `extraName`).
    public var extras: [String: [String]]
    /// Normalised extra name → as the project writes it (what pip is asked for: pip 23 and
    /// setuptools compare extras as written, `a-b` is not `a_b` to them).
    public var extraSpellings: [String: String] = [:]

    public init(name: String, scripts: [(name: String, entry: String)], extras: [String: [String]], source: String,
                extraSpellings: [String: String] = [:]) {
        (self.name, self.scripts, self.extras, self.source, self.extraSpellings) = (name, scripts, extras, source, extraSpellings)
    }

    /// The extra `normalized` as pip must be asked for it.
    public func spelling(ofExtra normalized: String) -> String { extraSpellings[normalized] ?? normalized }
    /// Where it came from (for errors): pyproject.toml or setup.cfg.
    public var source: String

    public static func == (a: PythonProject, b: PythonProject) -> Bool {
        a.name == b.name && a.scripts.map(\.name) == b.scripts.map(\.name) && a.scripts.map(\.entry) == b.scripts.map(\.entry)
            && a.extras == b.extras && a.source == b.source
    }

    /// pip's name for it (PEP 503: lower case, runs of `-_.` as one `-`): what images are named by.
    public var normalizedName: String { Self.normalize(name) }

    public static func normalize(_ s: String) -> String {
        var out = ""
        var sep = false
        for c in s.lowercased() {
            if c == "-" || c == "_" || c == "." { sep = true; continue }
            if sep && !out.isEmpty { out.append("-") }
            sep = false
            out.append(c)
        }
        return out
    }

    /// An extra's name as pbrx looks it up: normalised, dashes as underscores (`zuul-executor` →
    /// `zuul_executor`).
    public static func extraName(_ s: String) -> String { normalize(s).replacingOccurrences(of: "-", with: "_") }

    /// The extra that goes into the base image: `{project}_base`.
    public var baseExtra: String? {
        let e = Self.extraName(name) + "_base"
        return extras[e] != nil ? e : nil
    }

    /// The extra of a script's image: the script's name as an extra name.
    public func extra(ofScript s: String) -> String? {
        let e = Self.extraName(s)
        return extras[e] != nil ? e : nil
    }

    /// The project in `dir`: pyproject.toml with a `[project]` table first, else setup.cfg.
    public static func load(_ dir: String) throws -> PythonProject {
        let py = "\(dir)/pyproject.toml"
        if let text = try? String(contentsOfFile: py, encoding: .utf8) {
            let t = try TOML.parse(text, file: "pyproject.toml")
            if case .table = t["project"] { return try fromPyproject(t) }
        }
        let cfg = "\(dir)/setup.cfg"
        if let text = try? String(contentsOfFile: cfg, encoding: .utf8) {
            return try fromSetupCfg(text)
        }
        throw CtrError.notFound("\(dir): no pyproject.toml with [project] and no setup.cfg (not a Python project)")
    }

    public static func fromPyproject(_ t: TOMLTable) throws -> PythonProject {
        guard case .table(let p) = t["project"] else { throw CtrError.invalid("pyproject.toml: no [project] table") }
        guard case .string(let name) = p["name"], !name.isEmpty else {
            throw CtrError.invalid("pyproject.toml:\(p.line): [project] has no name")
        }
        var scripts: [(String, String)] = []
        if let v = p["scripts"] {
            guard case .table(let s) = v else { throw CtrError.invalid("pyproject.toml:\(p.line(of: "scripts") ?? p.line): [project.scripts] is not a table") }
            for k in s.keys {
                guard case .string(let e) = s[k] else { throw CtrError.invalid("pyproject.toml:\(s.line(of: k) ?? 0): script \(k) is not a string") }
                scripts.append((k, e))
            }
        }
        var extras: [String: [String]] = [:]
        var spellings: [String: String] = [:]
        if let v = p["optional-dependencies"] {
            guard case .table(let o) = v else { throw CtrError.invalid("pyproject.toml: [project.optional-dependencies] is not a table") }
            for k in o.keys {
                guard case .array(let a) = o[k] else { throw CtrError.invalid("pyproject.toml:\(o.line(of: k) ?? 0): extra \(k) is not an array") }
                spellings[extraName(k)] = k
                extras[extraName(k)] = try a.map { item in
                    guard case .string(let s) = item else { throw CtrError.invalid("pyproject.toml:\(o.line(of: k) ?? 0): extra \(k) holds a non-string") }
                    return s
                }
            }
        }
        return PythonProject(name: name, scripts: scripts, extras: extras, source: "pyproject.toml", extraSpellings: spellings)
    }

    /// setup.cfg: INI sections, values continued on indented lines, `#`/`;` comments.
    public static func fromSetupCfg(_ text: String) throws -> PythonProject {
        let ini = try INI.parse(text, file: "setup.cfg")
        guard let name = ini["metadata"]?["name"]?.value.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            throw CtrError.invalid("setup.cfg: [metadata] has no name")
        }
        var scripts: [(String, String)] = []
        if let cs = ini["entry_points"]?["console_scripts"] {
            for (i, line) in cs.lines.enumerated() where !line.isEmpty {
                guard let eq = line.firstIndex(of: "=") else {
                    throw CtrError.invalid("setup.cfg:\(cs.line + i): console_scripts entry \"\(line)\" is not NAME = MODULE:FUNCTION")
                }
                scripts.append((line[..<eq].trimmingCharacters(in: .whitespaces), line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)))
            }
        }
        var extras: [String: [String]] = [:]
        var spellings: [String: String] = [:]
        for section in ["options.extras_require", "extras"] {
            guard let s = ini[section] else { continue }
            for (k, v) in s.entries {
                extras[extraName(k)] = v.lines.filter { !$0.isEmpty }
                spellings[extraName(k)] = k
            }
        }
        return PythonProject(name: name, scripts: scripts, extras: extras, source: "setup.cfg", extraSpellings: spellings)
    }
}

/// The INI dialect of setup.cfg (configparser's): `[section]`, `key = value` or `key: value`,
/// continuation lines indented, comments on lines starting with `#` or `;`.
public struct INI: Sendable {
    public struct Value: Sendable {
        public var value: String
        public var line: Int
        /// The value's lines (the first, then each continuation), trimmed.
        public var lines: [String] { value.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
    }
    public struct Section: Sendable {
        public var entries: [(String, Value)] = []
        public subscript(key: String) -> Value? { entries.first { $0.0 == key }?.1 }
    }
    public var sections: [(String, Section)] = []
    public subscript(name: String) -> Section? { sections.first { $0.0 == name }?.1 }

    public static func parse(_ text: String, file: String) throws -> INI {
        var ini = INI()
        var current: Int?
        var lastKey: Int?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = i + 1
            let line = String(raw)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.isEmpty { lastKey = nil; continue }
            if line.first == " " || line.first == "\t" {
                guard let s = current, let k = lastKey else { throw CtrError.invalid("\(file):\(n): an indented line that continues nothing") }
                ini.sections[s].1.entries[k].1.value += "\n" + trimmed
                continue
            }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]") else { throw CtrError.invalid("\(file):\(n): a section header without ]") }
                ini.sections.append((String(trimmed.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces), Section()))
                current = ini.sections.count - 1
                lastKey = nil
                continue
            }
            guard let s = current else { throw CtrError.invalid("\(file):\(n): a key before any [section]") }
            guard let sep = trimmed.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw CtrError.invalid("\(file):\(n): expected KEY = VALUE")
            }
            let key = trimmed[..<sep].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: sep)...].trimmingCharacters(in: .whitespaces)
            ini.sections[s].1.entries.append((key, Value(value: value, line: n)))
            lastKey = ini.sections[s].1.entries.count - 1
        }
        return ini
    }
}
