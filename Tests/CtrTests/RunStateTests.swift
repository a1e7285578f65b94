import Foundation
import Testing

/// Where a container's state lives and when it goes: its /etc files and root mount point in
/// the runtime dir, its upper dir and record in the store, a --rm container's removal finished
/// by a detached child after ctr returned (and by prune when that child was stopped).
@Suite(.serialized) struct RunStateTests {
    static let modes: [Who] = [.rootless, .root]

    func entries(_ dir: String) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] }

    @Test(arguments: modes)
    func rmContainersLeaveNothing(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        let w = try Workspace(who)
        try w.makeHome()
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        // files of several ids in the upper dir (rootless: subordinate ids) must go too
        let r = try w.ctrHome(["run", "--rm", "--network", "none", "busybox:local", "sh", "-c",
                               "mkdir -p /data/x && touch /data/x/f && chown -R 1000:1000 /data && chmod 0500 /data/x && cat /etc/hostname"])
        expectOK(r)
        let ps = try w.ctrHome(["ps", "-a", "--format", "{{.Names}}"])
        #expect(ps.stdout.isEmpty, "gone from ps at once: \(ps)")
        var left: [String] = []
        for _ in 0..<50 {
            left = entries("\(w.store)/containers")
            if left.isEmpty { break }
            usleep(100_000)
        }
        #expect(left.isEmpty, "the store's container dirs are removed: \(left)")
        let run = entries("\(w.dir)/run/ctr").filter { $0.hasPrefix("containers-") }
        for d in run { #expect(entries("\(w.dir)/run/ctr/\(d)").isEmpty, "runtime dir \(d): \(entries("\(w.dir)/run/ctr/\(d)"))") }
        // a removal that was cut short: prune finishes it
        expectOK(try w.ctrHome(["run", "-d", "--name", "keep", "--network", "none", "busybox:local", "sh", "-c",
                                "mkdir -p /data && touch /data/f && chown -R 1000:1000 /data"]))
        usleep(300_000)
        expectOK(try w.ctrHome(["stop", "keep"]))
        let id = try w.ctrHome(["ps", "-a", "--format", "{{.ID}}"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let full = try #require(entries("\(w.store)/containers").first { $0.hasPrefix(id) })
        expectOK(try w.bash("mv \(w.store)/containers/\(full) \(w.store)/containers/.removing-\(full)"))
        expectOK(try w.ctrHome(["prune"]))
        #expect(entries("\(w.store)/containers").isEmpty, "\(entries("\(w.store)/containers"))")
    }

    /// The shipped binary needs only glibc's libraries and libgcc_s of the system at start: the
    /// Swift runtime and libstdc++ are linked in (a CI image may have no libstdc++).
    @Test func shippedBinaryNeedsNoLibstdcxx() throws {
        guard TestEnv.binary.contains(".build-static") || ProcessInfo.processInfo.environment["CTR_BIN"]?.contains(".build-static") == true else {
            print("skip: \(TestEnv.binary) is not the shipped build (scripts/build.sh)")
            return
        }
        guard TestEnv.have("readelf") else { print("skip: readelf (binutils) is needed"); return }
        let r = try Workspace.exec("/usr/bin/readelf", ["-d", TestEnv.binary])
        let needed = r.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }
            .compactMap { $0.split(separator: "[").last?.split(separator: "]").first.map(String.init) }
        #expect(!needed.isEmpty && needed.allSatisfy { ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"].contains($0) },
                "\(needed)")
    }
}
