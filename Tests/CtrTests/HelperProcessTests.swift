import Foundation
import Testing

/// The programs ctr starts (here a docker-credential helper) get what HostOS's spawner hands
/// them and nothing more: stdin, stdout and stderr only (no fd of ctr's leaks in), no signal
/// blocked or ignored (ctr blocks INT, TERM, HUP… in its own threads; a helper that inherited
/// that mask could not be interrupted).
@Suite(.serialized) struct HelperProcessTests {
    @Test(arguments: [Who.rootless, .root])
    func credentialHelperStartsClean(_ who: Who) throws {
        guard who.available, TestEnv.haveBusybox else { print("skip \(who): \(TestEnv.setupHint)"); return }
        guard TestRegistry.available, let reg = TestRegistry.secure else { print("skip: \(TestRegistry.skipReason)"); return }
        let w = try Workspace(who)
        try w.trust(reg)
        expectOK(try w.ctrHome(["import", "--tag", "busybox:local", TestEnv.busyboxTar]))
        let ref = "\(reg.addr)/helper\(UUID().uuidString.prefix(8).lowercased())/busybox:1"
        expectOK(try w.ctrHome(["push", "--creds", "\(TestRegistry.user):\(TestRegistry.password)", "busybox:local", ref]))

        // the helper notes its signal mask, ignored signals and open fds, then answers
        let helper = """
            #!/bin/sh
            read -r server
            # the shell's own state, read by the shell itself (a child such as grep could catch
            # dash in its vfork window, when it blocks every signal for a moment)
            while read -r k v; do case $k in SigBlk:|SigIgn:) echo "$k $v";; esac; done < /proc/$$/status > "$PROBE_OUT"
            ls -l /proc/self/fd/ | awk 'NR > 1 && $11 !~ "^/proc/[0-9]+/fd$" { printf "%s ", $9 }' >> "$PROBE_OUT"
            printf '{"ServerURL":"%s","Username":"\(TestRegistry.user)","Secret":"\(TestRegistry.password)"}\\n' "$server"
            """
        expectOK(try w.bash("""
            mkdir -p home/bin home/.docker
            cat > home/bin/docker-credential-probe <<'X'
            \(helper)
            X
            chmod 755 home/bin/docker-credential-probe
            echo '{"credHelpers":{"\(reg.addr)":"probe"}}' > home/.docker/config.json
            """))
        let env = ["PATH": "\(w.home)/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "PROBE_OUT": "\(w.dir)/probe.txt"]
        expectOK(try w.ctrHome(["pull", "-q", ref], env: env, root: "\(w.dir)/pulled"), "pull through the helper")
        let probe = (try? String(contentsOfFile: "\(w.dir)/probe.txt", encoding: .utf8)) ?? ""
        let lines = probe.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
        #expect(lines == ["SigBlk: 0000000000000000", "SigIgn: 0000000000000000", "0 1 2"], "\(probe)")
    }
}
