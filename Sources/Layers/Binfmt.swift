import Foundation

/// binfmt_misc handlers: what lets the kernel run another architecture's binaries (qemu-user
/// registered by qemu-user-static or binfmt-support). `ctr info` lists them; a build's RUN
/// for another platform needs one.
public enum Binfmt {
    public struct Handler: Sendable, Equatable {
        public var name: String
        public var interpreter: String
        public var enabled: Bool
    }

    /// The handlers registered in `dir` (/proc/sys/fs/binfmt_misc); empty when it is not
    /// mounted or readable.
    public static func handlers(dir: String = "/proc/sys/fs/binfmt_misc") -> [Handler] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0 != "register" && $0 != "status" }.sorted()
        return names.compactMap { n in
            guard let text = try? String(contentsOfFile: "\(dir)/\(n)", encoding: .utf8) else { return nil }
            let lines = text.split(separator: "\n").map(String.init)
            let interp = lines.first { $0.hasPrefix("interpreter ") }.map { String($0.dropFirst("interpreter ".count)) } ?? ""
            return Handler(name: n, interpreter: interp, enabled: lines.first == "enabled")
        }
    }

    /// The kernel's (and qemu's) name of an OCI architecture.
    public static func machine(_ architecture: String) -> String {
        switch architecture {
        case "amd64": return "x86_64"
        case "arm64": return "aarch64"
        case "386": return "i386"
        case "ppc64le": return "ppc64le"
        case "arm": return "arm"
        default: return architecture
        }
    }

    /// An enabled handler for `architecture` (by qemu's naming: a name or interpreter that
    /// mentions its machine name), if any.
    public static func handler(for architecture: String, in handlers: [Handler] = handlers()) -> Handler? {
        let m = machine(architecture)
        return handlers.first { h in
            h.enabled && (h.name.hasSuffix("-\(m)") || h.name == m || h.interpreter.hasSuffix("-\(m)") || h.interpreter.hasSuffix("-\(m)-static"))
        }
    }
}
