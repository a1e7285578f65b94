import CSysShims
import Errors
import Foundation
import HostOS

/// fuse-overlayfs, where the kernel refuses overlayfs (more than 500 layers, an upper dir on a
/// filesystem it cannot use, no overlay module, a user namespace before 5.11).
///
/// The container's first process tries the kernel first; when that fails (or `CTR_OVERLAY=fuse`
/// asks for it) it mounts a /dev/fuse connection on its root itself and passes it back over
/// the sync socket. ctr then starts fuse-overlayfs on that connection (`/dev/fd/3`), in the
/// container's user namespace but outside its mount and pid namespaces, so pivot_root and the
/// end of the container do not touch it: it exits once the last user of the mount is gone.
/// This is podman's arrangement (the mount program runs beside the container, not in it).
public struct FuseOverlay: Sendable, Equatable {
    public enum Mode: Int32, Sendable { case off = 0, fallback = 1, always = 2 }

    public let mode: Mode
    /// The program, when the fallback is usable.
    public let program: String?
    /// Why there is no fallback (for the kernel's refusal message, and `ctr info`).
    public let missing: String?

    public init(mode: Mode, program: String?, missing: String?) {
        self.mode = mode
        self.program = program
        self.missing = missing
    }

    /// From `CTR_OVERLAY` (`kernel`, `fuse`, unset: kernel with the fuse fallback) and the host.
    public static func current() throws -> FuseOverlay {
        let want = getenv("CTR_OVERLAY").map { String(cString: $0) } ?? ""
        guard ["", "kernel", "fuse"].contains(want) else {
            throw CtrError.usage("CTR_OVERLAY=\(want): use kernel or fuse")
        }
        if want == "kernel" { return FuseOverlay(mode: .off, program: nil, missing: "CTR_OVERLAY=kernel") }
        let program = Command.find("fuse-overlayfs")
        var missing: String?
        if program == nil {
            missing = "fuse-overlayfs is not installed (apt-get install fuse-overlayfs)"
        } else if access("/dev/fuse", R_OK | W_OK) != 0 {
            missing = access("/dev/fuse", F_OK) != 0 ? "there is no /dev/fuse" : "/dev/fuse is not readable and writable by this user"
        }
        if want == "fuse", let missing {
            throw CtrError.unsupported("CTR_OVERLAY=fuse: \(missing)")
        }
        if let missing { return FuseOverlay(mode: .off, program: nil, missing: missing) }
        return FuseOverlay(mode: want == "fuse" ? .always : .fallback, program: program, missing: nil)
    }

    /// The daemon's command line for one root: lower dirs topmost first, as overlayfs takes them.
    public static func arguments(program: String, lowers: [String], upper: String, work: String) -> [String] {
        // fuse-overlayfs splits its options on ',' and lower dirs on ':'; store paths have neither
        [program, "-f", "-o", "lowerdir=\(lowers.joined(separator: ":")),upperdir=\(upper),workdir=\(work)", "/dev/fd/3"]
    }

    /// fuse-overlayfs before 1.8 reads opaque directories only from its own xattr and
    /// trusted.overlay.opaque, not from user.overlay.opaque, which is what rootless layers carry.
    /// Asked only when the fallback is taken (it costs a process).
    public static func oldVersionWarning(program: String) -> String? {
        // a program that does not answer in 2 s is not worth waiting for
        guard let out = try? Command(program, ["--version"], fds: [-1, -1, -1]).run(timeout: 2) else { return nil }
        let data = out.stdout
        guard let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("fuse-overlayfs: version ") }) else { return nil }
        let v = line.dropFirst("fuse-overlayfs: version ".count).split(separator: ".").compactMap { Int($0) }
        guard v.count >= 2, (v[0], v[1]) < (1, 8) else { return nil }
        return "fuse-overlayfs \(v.map(String.init).joined(separator: ".")) is older than 1.8 and ignores the opaque directories of rootless layers: a directory that a later layer replaced may show files of the layers below it"
    }

    /// How long the container waits for the daemon to serve its root (CTR_FUSE_TIMEOUT, s).
    public static var answerTimeout: Int {
        getenv("CTR_FUSE_TIMEOUT").flatMap { Int(String(cString: $0)) }.map { max(1, $0) } ?? 30
    }

    /// The daemon's last line of complaint in its log, if any (its harmless notices skipped).
    public static func lastWords(log: String) -> String? {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .last { !$0.isEmpty && !$0.hasPrefix("unknown argument ignored") }
    }

    /// After the container is gone: give the daemon a moment to see its mount go, then make sure.
    public static func reap(_ pid: pid_t) {
        var status: Int32 = 0
        for _ in 0..<400 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { return }
            usleep(5_000)
        }
        kill(pid, SIGKILL)
        _ = waitpid(pid, &status, 0)
    }
}
