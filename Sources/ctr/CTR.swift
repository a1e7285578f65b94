import ArgumentParser
import CSysShims
import Errors
import Foundation
import HostOS
import Layers

struct CTR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctr",
        abstract: "A rootless container runtime and OCI image builder.",
        subcommands: [
            Import.self, Append.self, Mutate.self, Images.self, Inspect.self, Tag.self, Save.self, Load.self, Unpack.self, Rmi.self, Prune.self,
            Pull.self, Push.self, Copy.self, Login.self, Logout.self, Unshare.self,
            Build.self, BuildImages.self, OCIBuildTask.self, Commit.self, Run.self, Ps.self, Logs.self, Exec.self, Stop.self, Kill.self, Rm.self, Info.self, Cleanup.self,
        ]
    )

    /// Parse and run; errors become one line on stderr and a non-zero exit.
    static func runMain(_ args: [String]) -> Never {
        var command: ParsableCommand
        do {
            command = try parseAsRoot(args)
        } catch {
            finish(.other) { throw error }  // help, usage errors: ArgumentParser's
        }
        finish(ExitMapping.Command(command)) { try command.run() }
    }

    /// Run `body` and end the process: 0, or its failure printed and mapped to an exit status
    /// by `ExitMapping` (docker's conventions). The one place ctr exits; FastRun ends here too.
    static func finish(_ command: ExitMapping.Command, _ body: () throws -> Void) -> Never {
        do {
            try body()
            Glibc.exit(0)
        } catch {
            let end = ExitMapping.outcome(for: error, in: command, stopSignal: csys_stop_signal())
            if let text = end.text { Out.write(end.status == 0 ? 1 : 2, Data((text + "\n").utf8)) }
            Glibc.exit(end.status)
        }
    }
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Image store directory (default: $CTR_ROOT, /var/lib/ctr for root, else $XDG_DATA_HOME/ctr).", valueName: "dir"))
    var root: String?

    @Flag(name: .long, help: "Print more detail on errors.")
    var debug = false

    func store() throws -> Store { try Self.store(root: root) }

    static func store(root: String?) throws -> Store {
        let path = root ?? Store.defaultRoot()
        do {
            return try Store(root: path)
        } catch {
            throw CtrError.wrapping(error, "cannot open the store at \(path): \(error)")
        }
    }

    static let names: Set<String> = ["--root", "--debug"]
    static let takesValue: Set<String> = ["--root"]

    /// Move global options found before the subcommand path to just after it.
    static func hoist(_ args: [String], root: ParsableCommand.Type) -> [String] {
        // `ctr help CMD` is ArgumentParser's own
        if args.first == "help" { return args }
        var globals: [String] = []
        var rest: [String] = []
        var i = 0
        var command: ParsableCommand.Type = root
        var path: [String] = []
        var inPath = true
        while i < args.count {
            var a = args[i]
            // podman accepts a bare --tls-verify (meaning true)
            if a == "--tls-verify" && !(i + 1 < args.count && ["true", "false"].contains(args[i + 1])) { a = "--tls-verify=true" }
            let key = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            if inPath, names.contains(key) {
                globals.append(a)
                if takesValue.contains(a), i + 1 < args.count { globals.append(args[i + 1]); i += 1 }
                i += 1
                continue
            }
            if inPath, let sub = command.configuration.subcommands.first(where: { $0._commandName == a || $0.configuration.aliases.contains(a) }) {
                path.append(a)
                command = sub
                i += 1
                continue
            }
            if inPath && !a.hasPrefix("-") && path.isEmpty == false { inPath = false }
            if inPath && a.hasPrefix("-") && !path.isEmpty { inPath = false }
            rest.append(a)
            i += 1
        }
        // commands that take no store (unshare, login, logout) have no use for them; unshare
        // would run them as its command
        if [Unshare.self, Login.self, Logout.self].contains(where: { $0 == command }) { return path + rest }
        return path + globals + rest
    }
}

// MARK: output helpers

enum Out {
    /// Bytes to fd 1 or 2. A reader that went away (`ctr images | head -1`) ends ctr as
    /// SIGPIPE would, quietly; FileHandle.write would trap instead (ctr ignores SIGPIPE).
    static func write(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 && errno == EINTR { continue }
                if n < 0 && errno == EPIPE {
                    signal(SIGPIPE, SIG_DFL)
                    raise(SIGPIPE)
                }
                if n <= 0 { return }
                off += n
            }
        }
    }

    static func line(_ s: String) {
        write(1, Data((s + "\n").utf8))
    }

    static func progress(_ s: String) {
        write(2, Data((s + "\n").utf8))
    }

    static func warn(_ s: String) {
        write(2, Data(("warning: " + s + "\n").utf8))
    }

    static func json(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        write(1, data + Data("\n".utf8))
    }

    /// Columns padded to their widest cell, three spaces apart (docker's look).
    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func fmt(_ r: [String]) -> String {
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }.joined()
        }
        line(fmt(header))
        rows.forEach { line(fmt($0)) }
    }

    /// Docker's size format: decimal units, three significant digits.
    static func size(_ bytes: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var v = Double(bytes)
        var u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        if u == 0 { return "\(bytes)B" }
        let s = v >= 100 ? String(format: "%.0f", v) : v >= 10 ? String(format: "%.1f", v) : String(format: "%.2f", v)
        return s + units[u]
    }

    static func ago(_ date: Date?) -> String {
        guard let date else { return "unknown" }
        let s = Int(Date().timeIntervalSince(date))
        if s < 1 { return "Less than a second ago" }
        if s < 60 { return "\(s) seconds ago" }
        let m = s / 60
        if m < 60 { return m == 1 ? "About a minute ago" : "\(m) minutes ago" }
        let h = m / 60
        if h < 48 { return h == 1 ? "About an hour ago" : "\(h) hours ago" }
        let d = h / 24
        if d < 14 { return "\(d) days ago" }
        if d < 60 { return "\(d / 7) weeks ago" }
        if d < 730 { return "\(d / 30) months ago" }
        return "\(d / 365) years ago"
    }

    static func parseDate(_ s: String?) -> Date? {
        guard let s else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: s) { return d }
        // more than 3 fractional digits (Go writes nanoseconds)
        if let dot = s.firstIndex(of: "."), let end = s[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) {
            return f.date(from: String(s[..<dot]) + String(s[end...]))
        }
        return nil
    }
}

/// Notes about what a rootless unpack could not do, said once.
enum RootlessNotes {
    static func mapping(_ m: IDMapping) {
        if case .single = m {
            let user = IDMapping.userName(getuid()) ?? String(getuid())
            Out.warn("\(user) has no subordinate ids in /etc/subuid and /etc/subgid: unpacked files stay yours, and image owners are kept in the user.rootlesscontainers xattr")
        }
    }

    static func reports(_ reports: [ApplyReport]) {
        let skipped = reports.reduce(0) { $0 + $1.skippedDevices }
        if skipped > 0 {
            let first = reports.compactMap(\.firstSkipped).first ?? ""
            Out.progress("note: skipped \(skipped) device node(s) that cannot be created without privileges (first: /\(first))")
        }
        let restricted = reports.reduce(0) { $0 + $1.restrictedDevices }
        if restricted > 0 {
            let first = reports.compactMap(\.firstRestricted).first ?? ""
            Out.progress("note: \(restricted) device node(s) made mode 0600, so that only their owner can open them (first: /\(first))")
        }
    }
}
