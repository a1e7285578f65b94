import ArgumentParser
import Sandbox
import Testing
@testable import ctr

/// `ctr run` has two parsers: FastRun for the common flags (start-up) and ArgumentParser's
/// `Run` (the reference). Both fill `RunFlags`; for every flag FastRun knows, they must agree.
@Suite struct FastRunAgreementTests {
    /// A value each value flag takes in the table below.
    static func sample(_ flag: String) -> String {
        switch flag {
        case "-v", "--volume": return "/srv:/srv:ro"
        case "--tmpfs": return "/scratch:size=1m"
        case "-p", "--publish": return "8080:80"
        case "--add-host": return "db:10.0.0.5"
        case "--cap-add", "--cap-drop": return "NET_RAW"
        case "--security-opt": return "seccomp=unconfined"
        case "--ulimit": return "nofile=1024:2048"
        case "-e", "--env": return "A=1"
        case "--network", "--net": return "none"
        case "--userns": return "auto"
        case "--pull": return "never"
        case "--platform": return "linux/amd64"
        case "-m", "--memory", "--memory-swap": return "256m"
        case "--pids-limit": return "64"
        case "--cpus": return "0.5"
        case "-u", "--user": return "1000:1000"
        case "-w", "--workdir": return "/tmp"
        default: return "value"
        }
    }

    func both(_ args: [String]) throws -> (fast: RunFlags, reference: RunFlags) {
        let fast = try #require(FastRun.parse(["run"] + args), "FastRun did not take \(args)")
        let ref = try Run.parse(args)
        return (fast.options, ref.flags)
    }

    @Test(arguments: FastRun.valueFlags.filter { $0 != "--root" && $0 != "--pull" && $0 != "--platform" }.sorted())
    func valueFlag(_ flag: String) throws {
        for args in [[flag, Self.sample(flag), "busybox", "echo", "hi"], ["\(flag)=\(Self.sample(flag))", "busybox"]] where !(args[0].hasPrefix("-") && !args[0].hasPrefix("--") && args[0].contains("=")) {
            let (f, r) = try both(args)
            #expect(f == r, "\(args)")
            #expect(f != RunFlags(image: "busybox") || flag == "--pull", "\(flag) changed nothing")
        }
    }

    @Test(arguments: FastRun.boolFlags.sorted())
    func boolFlag(_ flag: String) throws {
        let (f, r) = try both([flag, "busybox", "true"])
        #expect(f == r, "\(flag)")
    }

    @Test(arguments: [
        ["-it", "busybox"], ["-dit", "--name", "web", "busybox", "sleep", "1"],
        ["--rm", "-e", "A=1", "-e", "B", "--env-file", "vars", "-v", "./x:/x", "busybox", "--", "sh", "-c", "echo $A"],
        ["--rm", "busybox", "ls", "-l", "--color"], ["busybox"],
    ])
    func combinations(_ args: [String]) throws {
        let (f, r) = try both(args)
        #expect(f == r, "\(args)")
        #expect(try f.spec(cwd: "/w") == r.spec(cwd: "/w"))
    }

    /// The run options FastRun takes, and what the pull and platform flags set.
    @Test func pullAndPlatform() throws {
        let fast = try #require(FastRun.parse(["run", "--pull", "never", "--platform", "linux/arm64", "busybox"]))
        let ref = try Run.parse(["--pull", "never", "--platform", "linux/arm64", "busybox"])
        #expect(fast.pull == ref.pull && fast.platform == ref.platform)
    }
}
