import Dockerfile
import Errors
import Foundation
import HostOS

/// Dockerfile instructions that only touch the image config, as `podman import --change` and
/// `docker import --change` accept them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
/// STOPSIGNAL, USER, VOLUME, WORKDIR. Parsed by the Dockerfile parser; values have their quotes
/// and escapes removed, and `$VAR` is kept as written (there is no build environment).
public enum ConfigChange {
    public static let allowed = ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"]

    public static func apply(_ change: String, to config: inout ContainerConfig) throws {
        // errors name the instruction
        func fail(_ why: String) -> CtrError { .usage("--change \"\(change)\": \(why)") }
        let trimmed = change.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw fail("empty instruction") }
        let keywordEnd = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" }) ?? trimmed.endIndex
        let keyword = trimmed[..<keywordEnd].uppercased()
        guard allowed.contains(keyword) else {
            throw fail("\(keyword) cannot be used here (allowed: \(allowed.joined(separator: ", ")))")
        }
        // podman also accepts "CMD=..." forms
        var rest = trimmed[keywordEnd...].drop(while: { $0 == " " || $0 == "\t" })
        if rest.hasPrefix("=") { rest = rest.dropFirst() }
        let inst: Instruction
        do { inst = try Dockerfile.parseInstruction(keyword + " " + rest, file: "--change") } catch { throw fail(error.message) }
        func unquote(_ word: String) throws -> String {
            do { return try Expander.unquote(word) } catch { throw fail(error.message) }
        }
        switch inst.kind {
        // exec form as it is, shell form wrapped in /bin/sh -c
        case .cmd(.exec(let args)):
            config.cmd = args
        case .cmd(.shell(let script)):
            config.cmd = ["/bin/sh", "-c", script]
        case .entrypoint(.exec(let args)):
            config.entrypoint = args.isEmpty ? nil : args
        case .entrypoint(.shell(let script)):
            config.entrypoint = ["/bin/sh", "-c", script]
        case .env(let pairs):
            for kv in pairs { config.setEnv(try unquote(kv.key), try unquote(kv.value)) }
        case .label(let pairs):
            var labels = config.labels ?? [:]
            for kv in pairs { labels[try unquote(kv.key)] = try unquote(kv.value) }
            config.labels = labels
        case .expose(let words):
            var exposed = config.exposedPorts ?? [:]
            for w in words {
                let p = try unquote(w)
                guard let key = exposedPortKey(p) else { throw fail("invalid port \"\(p)\": expected PORT[/tcp|udp|sctp] or a range START-END") }
                exposed[key] = EmptyObject()
            }
            config.exposedPorts = exposed
        case .volume(let words):
            var v = config.volumes ?? [:]
            for w in words { v[inst.jsonForm ? w : try unquote(w)] = EmptyObject() }
            config.volumes = v
        case .user(let raw):
            config.user = try unquote(raw)
        case .workdir(let raw):
            let path = try unquote(raw)
            if path.hasPrefix("/") {
                config.workingDir = path
            } else {
                let base = config.workingDir ?? "/"
                config.workingDir = (base.hasSuffix("/") ? base : base + "/") + path
            }
        case .stopsignal(let raw):
            let signal = try unquote(raw)
            guard Signals.number(signal) != nil else { throw fail("unknown signal \"\(signal)\"") }
            config.stopSignal = signal
        case .onbuild(let trigger):
            config.onBuild = (config.onBuild ?? []) + [trigger]
        default:
            throw fail("\(keyword) cannot be used here")
        }
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
