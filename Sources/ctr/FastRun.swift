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
        var options: RunOptions
        var pull = "missing"
        var platform: String?
        var memory: String?, memorySwap: String?, pidsLimit: String?, cpus: String?
    }

    static let bools: Set<String> = ["-d", "--detach", "--rm", "-i", "--interactive", "-t", "--tty", "--read-only", "--init"]
    static let values: Set<String> = [
        "--name", "-w", "--workdir", "-u", "--user", "--network", "--net", "--hostname", "-m", "--memory", "--memory-swap",
        "--pids-limit", "--cpus", "--userns", "--pull", "--platform", "--entrypoint", "--root",
        "-e", "--env", "--env-file", "-v", "--volume", "--tmpfs", "-p", "--publish", "--add-host", "--cap-add",
        "--cap-drop", "--security-opt", "--ulimit",
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
        var p = Parsed(root: root, options: RunOptions(image: ""))
        func set(_ flag: String, _ v: String) {
            switch flag {
            case "--name": p.options.name = v
            case "-w", "--workdir": p.options.workdir = v
            case "-u", "--user": p.options.user = v
            case "--network", "--net": p.options.network = v
            case "--hostname": p.options.hostname = v
            case "-m", "--memory": p.memory = v
            case "--memory-swap": p.memorySwap = v
            case "--pids-limit": p.pidsLimit = v
            case "--cpus": p.cpus = v
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
            default: break
            }
        }
        func flag(_ f: String) {
            switch f {
            case "-d", "--detach": p.options.detach = true
            case "--rm": p.options.autoRemove = true
            case "-i", "--interactive": p.options.interactive = true
            case "-t", "--tty": p.options.tty = true
            case "--read-only": p.options.readOnly = true
            case "--init": p.options.initProcess = true
            default: break
            }
        }
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("-"), a != "-" else { break }  // the image
            if a == "--" { i += 1; break }
            if bools.contains(a) { flag(a); i += 1; continue }
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                let name = String(a[..<eq])
                guard values.contains(name) else { return nil }
                set(name, String(a[a.index(after: eq)...]))
                i += 1
                continue
            }
            if values.contains(a) {
                guard i + 1 < args.count else { return nil }
                set(a, args[i + 1])
                i += 2
                continue
            }
            // -it, -dit, …
            if !a.hasPrefix("--"), a.count > 2, a.dropFirst().allSatisfy({ "dit".contains($0) }) {
                for c in a.dropFirst() { flag("-\(c)") }
                i += 1
                continue
            }
            return nil
        }
        guard i < args.count else { return nil }
        p.options.image = args[i]
        var rest = Array(args[(i + 1)...])
        if rest.first == "--" { rest.removeFirst() }
        p.options.command = rest
        return p
    }

    /// Run it; errors end the process as CTR.runMain would.
    static func run(_ p: Parsed) -> Never {
        Trace.point("main")
        do {
            var o = p.options
            o.limits = try ResourceLimits.parse(memory: p.memory, memorySwap: p.memorySwap, pidsLimit: p.pidsLimit, cpus: p.cpus)
            let path = p.root ?? Store.defaultRoot()
            let store: Store
            do { store = try Store(root: path) } catch { throw CLIError("cannot open the store at \(path): \(error)") }
            try Run.execute(o, store: store, pull: p.pull, platform: p.platform, registry: { RegistryOptions() })
            exit(0)
        } catch let e as ExitCode {
            exit(e.rawValue)
        } catch {
            if let u = error as? UserFacing {
                FileHandle.standardError.write(Data("Error: \(u.message)\n".utf8))
                exit(u.exitCode)
            }
            CTR.exit(withError: error)
        }
    }
}
