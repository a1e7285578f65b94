import Errors
import Foundation

/// The system a base image is, from its `/etc/os-release`: what bindep's `platform:` selectors
/// are matched against and which package manager installs.
public struct OSRelease: Sendable, Equatable {
    public var id: String
    public var idLike: [String]
    public var versionID: String?
    public var codename: String?

    public init(id: String, idLike: [String] = [], versionID: String? = nil, codename: String? = nil) {
        (self.id, self.idLike, self.versionID, self.codename) = (id, idLike, versionID, codename)
    }

    public init(parsing text: String) {
        var f: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            var v = String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            if v.count >= 2, let q = v.first, q == "\"" || q == "'", v.last == q { v = String(v.dropFirst().dropLast()) }
            f[String(line[..<eq])] = v
        }
        self.init(id: (f["ID"] ?? "linux").lowercased(), idLike: (f["ID_LIKE"] ?? "").lowercased().split(separator: " ").map(String.init),
                  versionID: f["VERSION_ID"], codename: f["VERSION_CODENAME"])
    }

    public enum PackageManager: String, Sendable { case dpkg, apk, rpm }

    public var packageManager: PackageManager? {
        let ids = [id] + idLike
        if ids.contains(where: { ["debian", "ubuntu"].contains($0) }) { return .dpkg }
        if ids.contains("alpine") { return .apk }
        if ids.contains(where: { ["fedora", "rhel", "centos", "suse", "opensuse"].contains($0) }) { return .rpm }
        return nil
    }

    /// What `platform:X` matches: the package family, the distribution and those it is like,
    /// and `ID-CODENAME`, `ID-VERSION` and `ID-MAJOR` (`debian-bookworm`, `debian-12`).
    public var platformAtoms: Set<String> {
        var s: Set<String> = [id]
        s.formUnion(idLike)
        if let pm = packageManager { s.insert(pm.rawValue) }
        if let c = codename, !c.isEmpty { s.insert("\(id)-\(c)") }
        if let v = versionID, !v.isEmpty {
            s.insert("\(id)-\(v)")
            if let major = v.split(separator: ".").first { s.insert("\(id)-\(major)") }
        }
        return s
    }
}

/// bindep.txt, with bindep's grammar: `name [selector …]`, a selector a profile (`compile`,
/// `test`, …) or `platform:X`, either negated with `!`. A package is for a platform when none
/// of its positive platform selectors is given or one matches, and no negated one matches; it
/// is in a profile when it names that profile (or names none and is not excluded by `!`).
public struct Bindep: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var package: String
        public var profiles: [String] = []
        public var notProfiles: [String] = []
        public var platforms: [String] = []
        public var notPlatforms: [String] = []
        public var line: Int
    }

    public var entries: [Entry]

    public static func parse(_ text: String, file: String = "bindep.txt") throws -> Bindep {
        var out: [Entry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = i + 1
            var line = String(raw)
            if let hash = line.firstIndex(of: "#") { line = String(line[..<hash]) }
            line = line.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            func bad(_ why: String) -> CtrError { .invalid("\(file):\(n): \(why)") }
            var rest = Substring(line)
            let name = rest.prefix { !$0.isWhitespace && $0 != "[" }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.+:".contains($0) }) else {
                throw bad("\"\(line)\" does not start with a package name")
            }
            rest = rest.dropFirst(name.count).drop { $0.isWhitespace }
            var e = Entry(package: String(name), line: n)
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]") else { throw bad("a selector list without ]") }
                for sel in rest[rest.index(after: rest.startIndex)..<close].split(whereSeparator: \.isWhitespace) {
                    var s = Substring(sel)
                    let neg = s.hasPrefix("!")
                    if neg { s = s.dropFirst() }
                    guard !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "-_.:".contains($0) }) else {
                        throw bad("selector \"\(sel)\" is not a profile or platform:NAME")
                    }
                    if s.hasPrefix("platform:") {
                        let p = String(s.dropFirst("platform:".count)).lowercased()
                        guard !p.isEmpty else { throw bad("selector \"\(sel)\" names no platform") }
                        if neg { e.notPlatforms.append(p) } else { e.platforms.append(p) }
                    } else if s.contains(":") {
                        throw bad("selector \"\(sel)\" is not supported (profiles and platform:NAME only)")
                    } else {
                        if neg { e.notProfiles.append(String(s)) } else { e.profiles.append(String(s)) }
                    }
                }
                rest = rest[rest.index(after: close)...].drop { $0.isWhitespace }
            }
            if !rest.isEmpty {
                throw bad("\"\(rest)\" after the package: version constraints and other syntax are not supported")
            }
            out.append(e)
        }
        return Bindep(entries: out)
    }

    /// The packages of `profile` (nil: the default profile, the packages that name no profile)
    /// on `os`, in file order, each once.
    public func packages(profile: String?, on os: OSRelease) -> [String] {
        let atoms = os.platformAtoms
        var seen = Set<String>(), out: [String] = []
        for e in entries {
            if !e.platforms.isEmpty && !e.platforms.contains(where: atoms.contains) { continue }
            if e.notPlatforms.contains(where: atoms.contains) { continue }
            let inProfile: Bool
            if let profile {
                if e.notProfiles.contains(profile) { inProfile = false }
                else { inProfile = e.profiles.contains(profile) || (e.profiles.isEmpty && !e.notProfiles.isEmpty) }
            } else {
                inProfile = e.profiles.isEmpty
            }
            if inProfile && seen.insert(e.package).inserted { out.append(e.package) }
        }
        return out
    }
}
