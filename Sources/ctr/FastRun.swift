import ArgumentParser
import Foundation
import Layers
import Sandbox

/// `ctr run` with the common flags, read without ArgumentParser: its reflection-driven parsing
/// was about a third of `ctr run`'s start-up. Anything this does not know (help, registry
/// flags, a flag it has not seen, --debug) returns nil and goes the ArgumentParser way, which
/// stays the reference: the flags and their meaning are Run's.
enum FastRun {
    struct Parsed {
        var root: String?
        var options: RunFlags
        var pull = "missing"
        var platform: String?
    }

    /// The value flags it knows (a switch, not a table of closures or key paths: their types'
    /// first use costs a third of a millisecond of every start-up).
    static let valueFlags = ["--name", "-w", "--workdir", "-u", "--user", "--network", "--net", "--hostname", "-m", "--memory",
                             "--memory-swap", "--pids-limit", "--cpus", "--userns", "--pull", "--platform", "--entrypoint", "--root",
                             "-e", "--env", "--env-file", "-v", "--volume", "--tmpfs", "-p", "--publish", "--add-host", "--cap-add",
                             "--cap-drop", "--security-opt", "--ulimit"]
    /// The boolean flags it knows (the short ones also combine: -it, -dit).
    static let boolFlags = ["-d", "--detach", "--rm", "-i", "--interactive", "-t", "--tty", "--read-only", "--init"]

    /// Where a value flag's value goes; false: not one of `valueFlags`.
    static func set(_ flag: String, _ v: String, _ p: inout Parsed) -> Bool {
        switch flag {
        case "--name": p.options.name = v
        case "-w", "--workdir": p.options.workdir = v
        case "-u", "--user": p.options.user = v
        case "--network", "--net": p.options.network = v
        case "--hostname": p.options.hostname = v
        case "-m", "--memory": p.options.memory = v
        case "--memory-swap": p.options.memorySwap = v
        case "--pids-limit": p.options.pidsLimit = v
        case "--cpus": p.options.cpus = v
        case "--userns": p.options.userns = v
        case "--pull": p.pull = v
        case "--platform": p.platform = v
        case "--entrypoint": p.options.entrypoint = v
        case "--root": p.root = v
        case "-e", "--env": p.options.env.append(v)
        case "--env-file": p.options.envFiles.append(v)
        case "-v", "--volume": p.options.volumes.append(v)
        case "--tmpfs": p.options.tmpfs.append(v)
        case "-p", "--publish": p.options.ports.append(v)
        case "--add-host": p.options.addHosts.append(v)
        case "--cap-add": p.options.capAdd.append(v)
        case "--cap-drop": p.options.capDrop.append(v)
        case "--security-opt": p.options.securityOpts.append(v)
        case "--ulimit": p.options.ulimits.append(v)
        default: return false
        }
        return true
    }

    /// Set a boolean flag; false: not one of `boolFlags`.
    static func set(_ flag: String, _ o: inout RunFlags) -> Bool {
        switch flag {
        case "-d", "--detach": o.detach = true
        case "--rm": o.autoRemove = true
        case "-i", "--interactive": o.interactive = true
        case "-t", "--tty": o.tty = true
        case "--read-only": o.readOnly = true
        case "--init": o.initProcess = true
        default: return false
        }
        return true
    }

    static func parse(_ args: [String]) -> Parsed? {
        var i = 0
        var root: String?
        // global options before the subcommand
        while i < args.count, args[i] != "run" {
            if args[i] == "--root", i + 1 < args.count { root = args[i + 1]; i += 2; continue }
            if args[i].hasPrefix("--root=") { root = String(args[i].dropFirst(7)); i += 1; continue }
            return nil
        }
        guard i < args.count else { return nil }
        i += 1
        var p = Parsed(root: root, options: RunFlags(image: ""))
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("-"), a != "-" else { break }  // the image
            if a == "--" { i += 1; break }
            if set(a, &p.options) { i += 1; continue }
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                guard set(String(a[..<eq]), String(a[a.index(after: eq)...]), &p) else { return nil }
                i += 1
                continue
            }
            if valueFlags.contains(a) {
                guard i + 1 < args.count else { return nil }
                _ = set(a, args[i + 1], &p)
                i += 2
                continue
            }
            // -it, -dit, …
            if !a.hasPrefix("--"), a.count > 2, a.dropFirst().allSatisfy({ "dit".contains($0) }) {
                for c in a.dropFirst() { _ = set("-\(c)", &p.options) }
                i += 1
                continue
            }
            return nil
        }
        guard i < args.count else { return nil }
        p.options.image = args[i]
        p.options.command = Array(args[(i + 1)...])
        return p
    }

    /// Run it (`CTR.finish` ends the process, as for `CTR.runMain`).
    static func run(_ p: Parsed) throws {
        Trace.point("main")
        try Run.execute(p.options, store: try GlobalOptions.store(root: p.root), pull: p.pull, platform: p.platform,
                        registry: { RegistryOptions.cli() })
    }
}
