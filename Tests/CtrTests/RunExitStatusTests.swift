import Foundation
import Testing

/// `ctr run` exits 125 for every failure of ctr's own, as docker run does (126 and 127 are the
/// command's, and its own status passes through): a seccomp profile that does not load once
/// slipped past that to 1; registries.conf and auth file errors (125 already) are held to it
/// here too. `ctr exec` keeps docker exec's: 1 for a container that is not there or not running.
@Suite(.serialized) struct RunExitStatusTests {
    static let modes: [Who] = [.rootless, .root]

    /// A workspace with busybox:local, as RunTests makes it.
    func prepared(_ who: Who) throws -> Workspace? { try RunTests().prepared(who) }

    func containersLeft(_ w: Workspace) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: "\(w.store)/containers")) ?? []
    }

    @Test(arguments: modes)
    func seccompProfilesThatDoNotLoad(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let profiles = [
            ("nodefault.json", "{}", "defaultAction is missing"),
            ("notjson.json", "not json", "invalid JSON"),
            ("badaction.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE"}]}"#,
             "unknown action \"SCMP_ACT_NOPE\""),
        ]
        for (file, text, says) in profiles {
            try Data(text.utf8).write(to: URL(fileURLWithPath: "\(w.dir)/\(file)"))
            chmod("\(w.dir)/\(file)", 0o644)
            let r = try w.ctrHome(["run", "--rm", "--network", "none", "--security-opt", "seccomp=\(w.dir)/\(file)", "busybox:local", "true"])
            #expect(r.status == 125, "\(file): \(r)")
            expectOneLineError(r, mentions: "seccomp profile \(w.dir)/\(file): ")
            #expect(r.stderr.contains(says), "\(file): \(r)")
        }
        #expect(containersLeft(w).isEmpty, "failed runs leave no container: \(containersLeft(w))")
    }

    @Test(arguments: modes)
    func registriesConfAndAuthFileErrors(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        let conf = "\(w.home)/.config/containers/registries.conf"
        try w.bash("printf '[[registry]]\\nlocation = \"x\\n' > \(conf)")
        let run = try w.ctrHome(["run", "--rm", "--network", "none", "--pull", "always", "busybox:local", "true"])
        #expect(run.status == 125, "\(run)")
        expectOneLineError(run, mentions: "\(conf):2: unterminated string")
        // the same error is 1 for pull, as every failure of a command other than run and exec
        let pull = try w.ctrHome(["pull", "busybox:local"])
        #expect(pull.status == 1, "\(pull)")
        expectOneLineError(pull, mentions: "\(conf):2: unterminated string")
        try w.bash("rm \(conf) && printf '{bad' > \(w.dir)/auth.json")
        let auth = try w.ctrHome(["run", "--rm", "--network", "none", "--pull", "always", "127.0.0.1:9/x/y:1", "true"],
                                 env: ["REGISTRY_AUTH_FILE": "\(w.dir)/auth.json"])
        #expect(auth.status == 125, "\(auth)")
        expectOneLineError(auth, mentions: "\(w.dir)/auth.json: invalid JSON")
        #expect(containersLeft(w).isEmpty, "failed runs leave no container: \(containersLeft(w))")
    }

    @Test(arguments: modes)
    func execStatuses(_ who: Who) throws {
        guard let w = try prepared(who) else { return }
        expectOK(try w.ctrHome(["run", "-d", "--name", "web", "--network", "none", "busybox:local", "sleep", "60"]))
        defer { _ = try? w.ctrHome(["rm", "-f", "web"]) }
        #expect(try w.ctrHome(["exec", "web", "sh", "-c", "exit 5"]).status == 5)
        let missing = try w.ctrHome(["exec", "web", "/nope"])
        #expect(missing.status == 127, "\(missing)")
        expectOneLineError(missing, mentions: "exec: \"/nope\"")
        let notExec = try w.ctrHome(["exec", "web", "/etc/passwd"])
        #expect(notExec.status == 126, "\(notExec)")
        let tty = try w.ctrHome(["exec", "-it", "web", "true"])
        #expect(tty.status == 125, "ctr's own failure: \(tty)")
        expectOneLineError(tty, mentions: "the input device is not a TTY")
        let nosuch = try w.ctrHome(["exec", "nosuch", "true"])
        #expect(nosuch.status == 1, "as docker exec: \(nosuch)")
        expectOneLineError(nosuch, mentions: "no such container: nosuch")
        expectOK(try w.ctrHome(["stop", "-t", "1", "web"]))
        let stopped = try w.ctrHome(["exec", "web", "true"])
        #expect(stopped.status == 1, "as docker exec: \(stopped)")
        expectOneLineError(stopped, mentions: "container web is not running")
    }
}
