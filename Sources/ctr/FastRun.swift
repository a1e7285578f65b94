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

    /// The value flags it knows, and where each value goes.
    static let values: [String: @Sendable (inout Parsed, String) -> Void] = [
        "--name": { $0.options.name = $1 }, "-w": { $0.options.workdir = $1 }, "--workdir": { $0.options.workdir = $1 },
        "-u": { $0.options.user = $1 }, "--user": { $0.options.user = $1 },
        "--network": { $0.options.network = $1 }, "--net": { $0.options.network = $1 },
        "--hostname": { $0.options.hostname = $1 }, "-m": { $0.options.memory = $1 }, "--memory": { $0.options.memory = $1 },
        "--memory-swap": { $0.options.memorySwap = $1 }, "--pids-limit": { $0.options.pidsLimit = $1 }, "--cpus": { $0.options.cpus = $1 },
        "--userns": { $0.options.userns = $1 }, "--pull": { $0.pull = $1 }, "--platform": { $0.platform = $1 },
        "--entrypoint": { $0.options.entrypoint = $1 }, "--root": { $0.root = $1 },
        "-e": { $0.options.env.append($1) }, "--env": { $0.options.env.append($1) },
        "--env-file": { $0.options.envFiles.append($1) },
        "-v": { $0.options.volumes.append($1) }, "--volume": { $0.options.volumes.append($1) },
        "--tmpfs": { $0.options.tmpfs.append($1) },
        "-p": { $0.options.ports.append($1) }, "--publish": { $0.options.ports.append($1) },
        "--add-host": { $0.options.addHosts.append($1) }, "--cap-add": { $0.options.capAdd.append($1) },
        "--cap-drop": { $0.options.capDrop.append($1) }, "--security-opt": { $0.options.securityOpts.append($1) },
        "--ulimit": { $0.options.ulimits.append($1) },
    ]
    /// The boolean flags it knows (the short ones also combine: -it, -dit).
    static let bools: [String: WritableKeyPath<RunFlags, Bool> & Sendable] = [
        "-d": \.detach, "--detach": \.detach, "--rm": \.autoRemove, "-i": \.interactive, "--interactive": \.interactive,
        "-t": \.tty, "--tty": \.tty, "--read-only": \.readOnly, "--init": \.initProcess,
    ]

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
            if let k = bools[a] { p.options[keyPath: k] = true; i += 1; continue }
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                guard let set = values[String(a[..<eq])] else { return nil }
                set(&p, String(a[a.index(after: eq)...]))
                i += 1
                continue
            }
            if let set = values[a] {
                guard i + 1 < args.count else { return nil }
                set(&p, args[i + 1])
                i += 2
                continue
            }
            // -it, -dit, …
            if !a.hasPrefix("--"), a.count > 2, a.dropFirst().allSatisfy({ "dit".contains($0) }) {
                for c in a.dropFirst() { p.options[keyPath: bools["-\(c)"]!] = true }
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

    /// Run it; errors end the process as CTR.runMain would.
    static func run(_ p: Parsed) -> Never {
        Trace.point("main")
        do {
            try Run.execute(p.options, store: try GlobalOptions.store(root: p.root), pull: p.pull, platform: p.platform,
                            registry: { RegistryOptions.cli() })
            exit(0)
        } catch {
            CTR.exit(after: error)
        }
    }
}
