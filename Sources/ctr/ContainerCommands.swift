import ArgumentParser
import CSysShims
import Errors
import Foundation
import HostOS
import Layers
import Sandbox

/// Said once on stderr.
final class Notices: @unchecked Sendable {
    private var said = Set<String>()
    private let lock = NSLock()
    func say(_ s: String) {
        lock.lock()
        let first = said.insert(s).inserted
        lock.unlock()
        if first { Out.warn(s) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a command in a new container.")

    @OptionGroup var global: GlobalOptions

    @Flag(name: [.short, .long], help: "Run in the background and print the container id.") var detach = false
    @Flag(name: .long, help: "Remove the container when it exits.") var rm = false
    @Flag(name: [.short, .long], help: "Keep standard input open.") var interactive = false
    @Flag(name: [.short, .long], help: "Give the container a terminal.") var tty = false
    @Option(name: .long, help: "Name the container.") var name: String?
    @Option(name: [.short, .long], help: "Set an environment variable (NAME=VALUE, or NAME to copy ours).") var env: [String] = []
    @Option(name: .customLong("env-file"), help: "Read environment variables from a file.") var envFile: [String] = []
    @Option(name: [.short, .customLong("workdir")], help: "Working directory inside the container.") var workdir: String?
    @Option(name: [.short, .long], help: "User (name or uid[:gid]) to run as.") var user: String?
    @Option(name: [.short, .long], help: "Bind mount SOURCE:TARGET[:ro] (or a named volume).") var volume: [String] = []
    @Option(name: .long, help: "Mount a tmpfs at PATH[:OPTIONS].") var tmpfs: [String] = []
    @Flag(name: .customLong("read-only"), help: "Mount the root filesystem read-only.") var readOnly = false
    @Option(name: [.customLong("network"), .customLong("net")], help: "none, host, pasta, slirp4netns (default: slirp4netns or pasta when usable, else none).") var network: String?
    @Option(name: [.short, .customLong("publish")], help: "Publish a port: [IP:]HOSTPORT:CONTAINERPORT[/udp] (needs pasta or slirp4netns).") var publish: [String] = []
    @Option(name: .long, help: "Container host name.") var hostname: String?
    @Option(name: .customLong("add-host"), help: "Add HOST:IP to /etc/hosts.") var addHost: [String] = []
    @Flag(name: .customLong("init"), help: "Run a minimal init as pid 1 that forwards signals and reaps zombies.") var initProcess = false
    @Option(name: .customLong("cap-add"), help: "Add a capability.") var capAdd: [String] = []
    @Option(name: .customLong("cap-drop"), help: "Drop a capability.") var capDrop: [String] = []
    @Option(name: .customLong("security-opt"), help: "no-new-privileges[=false], seccomp=unconfined|PROFILE.json.") var securityOpt: [String] = []
    @Option(name: [.short, .long], help: "Memory limit (e.g. 256m).") var memory: String?
    @Option(name: .customLong("memory-swap"), help: "Memory plus swap limit.") var memorySwap: String?
    @Option(name: .customLong("pids-limit"), help: "Maximum number of processes.") var pidsLimit: String?
    @Option(name: .long, help: "CPUs (e.g. 0.5).") var cpus: String?
    @Option(name: .long, help: "Resource limit NAME=SOFT[:HARD].") var ulimit: [String] = []
    @Option(name: .long, help: "User namespace: host (root's default) or auto.") var userns: String?
    @Option(name: .long, help: "Pull the image: missing (default), always, never.") var pull: String = "missing"
    @Option(name: .long, help: "Platform when pulling.") var platform: String?
    @Option(name: .long, help: "Override the image's entrypoint.") var entrypoint: String?
    @OptionGroup var registry: RegistryFlags

    @Argument(help: "Image.") var image: String
    @Argument(parsing: .captureForPassthrough, help: "Command and arguments.") var command: [String] = []

    func run() throws {
        try Self.execute(flags, store: try global.store(), pull: pull, platform: platform, registry: { try registry.options() })
    }

    /// The flags as typed (FastRun fills the same struct; `RunFlags.spec()` checks them).
    var flags: RunFlags {
        var o = RunFlags(image: image)
        o.command = command
        o.entrypoint = entrypoint
        o.name = name
        o.detach = detach
        o.autoRemove = rm
        o.tty = tty
        o.interactive = interactive
        o.env = env
        o.envFiles = envFile
        o.workdir = workdir
        o.user = user
        o.volumes = volume
        o.tmpfs = tmpfs
        o.readOnly = readOnly
        o.network = network
        o.ports = publish
        o.hostname = hostname
        o.addHosts = addHost
        o.initProcess = initProcess
        o.capAdd = capAdd
        o.capDrop = capDrop
        o.securityOpts = securityOpt
        o.memory = memory
        o.memorySwap = memorySwap
        o.pidsLimit = pidsLimit
        o.cpus = cpus
        o.ulimits = ulimit
        o.userns = userns
        return o
    }

    /// `ctr run` after its flags are read (by ArgumentParser, or by FastRun for the common ones).
    /// Its failures exit as docker run's (see `ExitMapping`).
    static func execute(_ flags: RunFlags, store: Store, pull: String, platform: String?,
                        registry: () throws -> RegistryOptions) throws {
        // the flags are checked before anything is pulled or made
        let spec = try flags.spec()
        let notices = Notices()
        let plat = try platform.map { try Platform(parsing: $0) } ?? .current
        // from resolving the image until the container's record names it (then prune keeps
        // its layers for as long as the container exists), the gc lock is held shared
        let hold = try store.holdForWriting()
        let record = try Run.image(flags.image, store: store, policy: pull, platform: plat, registry: registry)
        var runtime = Runtime(store: store, notice: { notices.say($0) })
        runtime.selfPath = Run.selfPath()
        let (code, rec) = try runtime.run(spec, image: record, hold: hold)
        if spec.detach { Out.line(rec.id) }
        if code != 0 { throw CtrError(.container(status: code), "") }
    }

    static func selfPath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The image from the store, pulled per policy.
    static func image(_ name: String, store: Store, policy: String, platform: Platform, registry: RegistryFlags) throws -> ImageRecord {
        try image(name, store: store, policy: policy, platform: platform, registry: { try registry.options() })
    }

    static func image(_ given: String, store: Store, policy: String, platform: Platform, registry: () throws -> RegistryOptions,
                      unpack: Bool = true) throws -> ImageRecord {
        // a layout or archive (oci:, oci-archive:, docker-archive:): its image, copied in
        let loc = ImageLocation(given)
        if loc.isFile {
            guard ["missing", "always", "never"].contains(policy) else { throw ValidationError("--pull must be missing, always or never") }
            return try ImageTransport.load(loc, into: store, platform: platform, unpack: unpack)
        }
        let name = loc.registryName ?? given
        switch policy {
        case "never":
            return try store.resolve(name)
        case "missing", "always":
            if policy == "missing", let r = try? store.resolve(name) { return r }
            let ref = try Reference(parsing: name)
            let access = try RegistryAccess(registry())
            let view = ProgressView(verb: "pull")
            // Ctrl-C during the pull: it removes what it wrote (see Pull)
            csys_catch_stop_signals(1)
            let result = try ImagePull.run(ref, store: store, access: access, platform: platform, progress: view, unpack: unpack)
            csys_catch_stop_signals(0)
            view.finish()
            let sig = csys_stop_signal()
            if sig != 0 { throw CtrError(.interrupted(signal: sig), "") }
            return try store.resolve(result.name.string)
        default:
            throw ValidationError("--pull must be missing, always or never")
        }
    }
}

struct Ps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List containers.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Show all containers (default: running ones).") var all = false
    @Flag(name: [.short, .long], help: "Print only ids.") var quiet = false
    @Option(help: "table, json, or a Go template ('{{.Names}} {{.Status}}').") var format: String = "table"

    func run() throws {
        let store = try global.store()
        let cs = ContainerStore(store)
        var rows: [(ContainerRecord, ContainerStatus)] = cs.all().map { ($0, cs.status($0)) }
        if !all { rows = rows.filter { if case .running = $0.1 { return true }; if case .runningUnmonitored = $0.1 { return true }; return false } }
        if quiet { rows.forEach { Out.line($0.0.shortID) }; return }
        if format == "json" {
            try Out.json(rows.map { r, st -> [String: Any] in
                var o: [String: Any] = ["id": r.id, "name": r.name, "image": r.image, "imageId": r.imageID,
                                        "command": r.command, "created": r.created, "state": st.word, "ports": r.ports]
                if let p = r.pid { o["pid"] = p }
                if case .exited(let c, _) = st { o["exitCode"] = c }
                if case .runningUnmonitored = st { o["monitor"] = "gone" }
                return o
            })
            return
        }
        guard format == "table" || format.contains("{{") else {
            throw ValidationError("unknown format \"\(format)\" (table, json or a Go template such as '{{.Names}} {{.Status}}')")
        }
        func status(_ st: ContainerStatus) -> String {
            switch st {
            case .running: return "Up"
            case .runningUnmonitored: return "Up (monitor gone: exit will not be recorded)"
            case .exited(let c, let at): return "Exited (\(c)) \(Out.ago(at))"
            case .created: return "Created"
            case .unknown: return "Unknown (the process is gone and no exit was recorded)"
            }
        }
        if format != "table" {
            // docker's field names
            for (r, st) in rows {
                let row: [String: Any] = ["ID": r.shortID, "Image": r.image, "Command": "\"\(r.command.joined(separator: " "))\"",
                                          "CreatedAt": r.created, "RunningFor": Out.ago(Out.parseDate(r.created)),
                                          "Status": status(st), "State": st.word, "Ports": r.ports.joined(separator: ", "), "Names": r.name]
                Out.line(try GoTemplate.render(format, row))
            }
            return
        }
        Out.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows.map { r, st in
            var cmd = r.command.joined(separator: " ")
            if cmd.count > 20 { cmd = String(cmd.prefix(19)) + "…" }
            return [r.shortID, r.image, "\"\(cmd)\"", Out.ago(Out.parseDate(r.created)), status(st), r.ports.joined(separator: ", "), r.name]
        })
    }
}

struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a detached container's output.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Follow the output until the container exits.") var follow = false
    @Flag(name: [.short, .long], help: "Show timestamps.") var timestamps = false
    @Option(name: [.customShort("n"), .customLong("tail")], help: "Only the last N lines (all: every line).") var tail: String = "all"
    @Argument var container: String

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { _ in })
        let r = try runtime.containers.find(container)
        var last: Int? = nil
        if tail != "all" {
            guard let n = Int(tail), n >= 0 else { throw ValidationError("--tail \(tail): expected a number of lines or all") }
            last = n
        }
        var offset: UInt64 = 0
        func emit() {
            var (records, end) = runtime.logs(r, from: offset)
            offset = end
            if let n = last { records = Array(records.suffix(n)); last = nil }  // only the first batch is cut
            for (ts, stream, text) in records {
                let line = (timestamps ? ts + " " : "") + text + "\n"
                Out.write(stream == "stderr" ? 2 : 1, Data(line.utf8))
            }
        }
        emit()
        guard follow else { return }
        while true {
            let st = runtime.containers.status(runtime.containers.load(id: r.id) ?? r)
            if case .running = st {} else if case .runningUnmonitored = st {} else { emit(); return }
            usleep(100_000)
            emit()
        }
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a command in a running container.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Keep standard input open.") var interactive = false
    @Flag(name: [.short, .long], help: "Give the process a terminal.") var tty = false
    @Option(name: [.short, .long], help: "Set an environment variable.") var env: [String] = []
    @Option(name: [.short, .customLong("workdir")], help: "Working directory.") var workdir: String?
    @Option(name: [.short, .long], help: "User.") var user: String?
    @Argument var container: String
    @Argument(parsing: .captureForPassthrough) var command: [String] = []

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { Out.warn($0) })
        let r = try runtime.containers.find(container)
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        guard !cmd.isEmpty else { throw ValidationError("give a command to run") }
        let code = try runtime.exec(r, command: cmd, env: env, workdir: workdir, user: user, tty: tty, interactive: interactive)
        if code != 0 { throw CtrError(.container(status: code), "") }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop containers: the stop signal, then SIGKILL after a timeout.")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .customLong("time")], help: "Seconds to wait before SIGKILL.") var time: Double = 10
    @Argument var containers: [String]

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { _ in })
        for c in containers {
            let r = try runtime.containers.find(c)
            try runtime.stop(r, timeout: time)
            Out.line(c)
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send a signal to containers.")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "Signal (name or number).") var signal: String = "KILL"
    @Argument var containers: [String]

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { _ in })
        let sig = try Runtime.signal(signal)
        for c in containers {
            try runtime.kill(try runtime.containers.find(c), signal: sig)
            Out.line(c)
        }
    }
}

struct Rm: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove containers.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Kill running ones first.") var force = false
    @Argument var containers: [String]

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { _ in })
        for c in containers {
            guard let r = try? runtime.containers.find(c) else {
                if force { continue }
                throw CtrError.notFound("no such container: \(c)")
            }
            try runtime.rm(r, force: force)
            Out.line(c)
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What this host and user can do.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let store = try global.store()
        var u = utsname()
        uname(&u)
        let kernel = withUnsafeBytes(of: &u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        Out.line("store: \(store.root)")
        Out.line("kernel: \(kernel)")
        switch store.ops.mapping {
        case .root: Out.line("user: root (no user namespace unless --userns auto)")
        case .mapped(let uids, let gids):
            Out.line("user: rootless with subordinate ids: uids \(uids.map(\.description).joined(separator: " ")), gids \(gids.map(\.description).joined(separator: " "))")
        case .single(let uid, _):
            Out.line("user: rootless without subordinate ids (uid \(uid)): single mapping, setgroups denied")
        }
        do {
            let f = try FuseOverlay.current()
            switch f.mode {
            case .always: Out.line("root filesystem: fuse-overlayfs (\(f.program ?? "")), as CTR_OVERLAY=fuse asks")
            case .fallback: Out.line("root filesystem: kernel overlayfs; fuse-overlayfs (\(f.program ?? "")) where the kernel refuses it")
            case .off: Out.line("root filesystem: kernel overlayfs only; no fuse-overlayfs fallback: \(f.missing ?? "off")")
            }
        } catch {
            Out.line("root filesystem: \(error)")
        }
        for a in NetworkMode.availability() {
            Out.line("network \(a.name): \(a.available ? "available" : "unavailable") (\(a.detail))")
        }
        for line in CgroupSupport.detect().summary { Out.line(line) }
        let tty = access("/dev/net/tun", R_OK | W_OK) == 0
        Out.line("/dev/net/tun: \(tty ? "usable" : "not usable by this user")")
        for line in SandboxFacts.shared(storeDir: store.root).summary { Out.line(line) }
        let handlers = Binfmt.handlers()
        if handlers.isEmpty {
            Out.line("binfmt_misc: no handlers (RUN for another architecture than \(Platform.current.architecture) is not possible)")
        }
        for h in handlers { Out.line("binfmt_misc: \(h.name) \(h.enabled ? "enabled" : "disabled") (\(h.interpreter))") }
    }
}

/// Run by a detached container's monitor after the exit is recorded.
struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Release what an exited container held.", shouldDisplay: false)

    @OptionGroup var global: GlobalOptions
    @Argument var id: String

    func run() throws {
        let store = try global.store()
        let runtime = Runtime(store: store, notice: { _ in })
        guard let r = runtime.containers.load(id: id) else { return }
        runtime.cleanup(r, removeState: r.autoRemove)
    }
}
