import Errors
import Foundation
import HostOS
import Testing
@testable import Sandbox

private let isRoot = getuid() == 0
private let ctrtest = CgroupUser.lookup("ctrtest")

private func readText(_ path: String) -> String? { CgFS.read(path) }
private func words(_ s: String?) -> [String] {
    (s ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
}
private func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
private func uniqueName(_ tag: String) -> String { "cgtest-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

/// What /proc/self/mounts says, parsed independently of the code under test.
private struct ObservedMounts {
    var cgroup2: [String] = []
    var v1: [String: String] = [:]   // controller → mount point
    var anyV1 = false
    init() {
        for line in (readText("/proc/self/mounts") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 4 else { continue }
            if f[2] == "cgroup2" { cgroup2.append(String(f[1])) }
            if f[2] == "cgroup" {
                anyV1 = true
                for o in f[3].split(separator: ",") where ["memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer", "hugetlb"].contains(String(o)) {
                    if v1[String(o)] == nil { v1[String(o)] = String(f[1]) }
                }
            }
        }
    }
}

/// A fake host for detection: files, writable paths, existing paths.
private func fakeProbe(mounts: String, selfCgroup: String, user: CgroupUser,
                       files: [String: String], writable: Set<String>, dirs: Set<String> = []) -> CgroupProbe {
    CgroupProbe(mounts: mounts, selfCgroup: selfCgroup, user: user,
                readFile: { files[$0] },
                isWritable: { writable.contains($0) },
                exists: { files[$0] != nil || dirs.contains($0) || writable.contains($0) })
}

private let alice = CgroupUser(uid: 1000, gid: 1000, groups: [1000], name: "alice")
private let rootUser = CgroupUser(uid: 0, gid: 0, groups: [0], name: "root")
private let v2Mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n"
private let hybridMounts = """
    tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
    cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
    cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
    cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
    cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
    cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0

    """
private let userScope = "/user.slice/user-1000.slice/user@1000.service/app.slice/ctr.scope"
private let userScopeDir = "/sys/fs/cgroup" + userScope
private let fullLimits = ResourceLimits(memory: 256 << 20, pids: 64, cpus: 0.5)

/// Run a program to completion; (status, stdout, stderr).
@discardableResult
private func run(_ path: String, _ args: [String]) throws -> (Int32, String, String) {
    let out = try Command(path, args).run()
    return (out.status, out.stdoutText, out.stderrText)
}

/// A child started by HostOS's spawner, with an empty signal mask and default dispositions (the
/// test runner's threads block SIGTERM/SIGCHLD…; a child with that mask has `sleep` ignore
/// SIGTERM and sh's `wait` hang). -1: /dev/null.
private func start(_ argv: [String], stdin: Int32 = -1, stdout: Int32 = -1, stderr: Int32 = -1) throws -> ChildProcess {
    try Command(argv[0], Array(argv.dropFirst()), fds: [stdin, stdout, stderr]).spawn()
}

extension ChildProcess {
    /// Kill and reap (cleanup).
    fileprivate func reap() {
        signal(SIGKILL)
        _ = wait(timeout: 5)
    }
}

/// A close-on-exec pipe: (read end, write end).
private func makePipe() -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(pipe(&fds) == 0)
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}

private func readAll(_ fd: Int32) -> String {
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        data += buf[0..<n]
    }
    close(fd)
    return String(decoding: data, as: UTF8.self)
}

@Suite(.serialized) struct CgroupTests {
    // MARK: parsers

    @Test(arguments: [
        ("256m", Int64(268_435_456)), ("1g", 1_073_741_824), ("512k", 524_288), ("1024b", 1024), ("1000", 1000),
        ("64M", 67_108_864), ("1.5g", 1_610_612_736), ("256MiB", 268_435_456), ("256mb", 268_435_456),
        ("2 g", 2_147_483_648), ("0", 0), ("1t", 1 << 40),
    ])
    func parseMemory(_ text: String, _ bytes: Int64) throws {
        #expect(try ResourceLimits.parseMemory(text) == bytes)
    }

    @Test(arguments: ["", "abc", "-1m", "1x", "m", "1..5g", "1e3", "12mm", " 12m", "0x10", "1.g", "99999999999p"])
    func parseMemoryRejects(_ text: String) {
        #expect {
            _ = try ResourceLimits.parseMemory(text, flag: "--memory")
        } throws: { e in
            let m = "\(e)"
            return m.hasPrefix("invalid --memory \"\(text)\"") && !m.contains("\n")
        }
    }

    @Test(arguments: [("64", Int64?.some(64)), ("1", 1), ("0", nil), ("-1", nil), ("4194304", 4_194_304)])
    func parsePids(_ text: String, _ value: Int64?) throws {
        #expect(try ResourceLimits.parsePidsLimit(text) == value)
    }

    @Test(arguments: ["-2", "abc", "", "1.5", "64k"])
    func parsePidsRejects(_ text: String) {
        #expect { _ = try ResourceLimits.parsePidsLimit(text) } throws: { "\($0)".hasPrefix("invalid --pids-limit \"\(text)\"") }
    }

    @Test(arguments: [("0.5", 0.5), ("2", 2.0), ("1.25", 1.25), ("0.01", 0.01), (".5", 0.5)])
    func parseCPUs(_ text: String, _ value: Double) throws {
        #expect(try ResourceLimits.parseCPUs(text, cpuCount: 2) == value)
    }

    @Test(arguments: [("0", "greater than 0"), ("-1", "greater than 0"), ("3", "only 2 CPUs"), ("2.5", "only 2 CPUs"),
                      ("0.001", "from 0.01"), ("abc", "expected a number"), ("nan", "expected a number"),
                      ("inf", "expected a number"), ("", "expected a number")])
    func parseCPUsRejects(_ text: String, _ why: String) {
        #expect {
            _ = try ResourceLimits.parseCPUs(text, cpuCount: 2)
        } throws: { e in
            "\(e)".hasPrefix("invalid --cpus \"\(text)\"") && "\(e)".contains(why)
        }
    }

    @Test func parseFlagsTogether() throws {
        let l = try ResourceLimits.parse(memory: "256m", memorySwap: "1g", pidsLimit: "64", cpus: "0.5", cpuCount: 4)
        #expect(l == ResourceLimits(memory: 256 << 20, memorySwap: 1 << 30, pids: 64, cpus: 0.5))
        #expect(l.controllers == ["memory", "pids", "cpu"])
        #expect(l.cpuQuota == 50_000)
        #expect(!l.isEmpty)
        #expect(try ResourceLimits.parse(memory: "0", pidsLimit: "-1").isEmpty)
        #expect(try ResourceLimits.parse().isEmpty)
        #expect(try ResourceLimits.parse(memory: "64m", memorySwap: "-1").memorySwap == -1)
        #expect(try ResourceLimits.parse(memory: "64m", memorySwap: "0").memorySwap == nil)
        #expect(try ResourceLimits.parse(memory: "64m", memorySwap: "64m").memorySwap == 64 << 20)
        #expect(throws: CtrError.usage("invalid --memory \"1m\": the minimum memory limit is 6m")) {
            try ResourceLimits.parse(memory: "1m")
        }
        #expect(throws: CtrError.usage("invalid --memory-swap \"1g\": --memory-swap needs --memory as well")) {
            try ResourceLimits.parse(memorySwap: "1g")
        }
        #expect { try ResourceLimits.parse(memory: "256m", memorySwap: "128m") } throws: {
            "\($0)".hasPrefix("invalid --memory-swap \"128m\": it is memory plus swap, so it must be at least --memory (256m)")
        }
        #expect(ResourceLimits(cpus: 1.5).cpuQuota == 150_000)
        #expect(ResourceLimits(cpus: 0.3).cpuQuota == 30_000)
        #expect(ResourceLimits(cpus: 0.01).cpuQuota == 1_000)
        #expect(ResourceLimits(memorySwap: -1).controllers == ["memory"])
    }

    @Test func formatBytes() {
        #expect(ResourceLimits.formatBytes(256 << 20) == "256m")
        #expect(ResourceLimits.formatBytes(1 << 30) == "1g")
        #expect(ResourceLimits.formatBytes(1536 << 20) == "1536m")
        #expect(ResourceLimits.formatBytes(512 << 10) == "512k")
        #expect(ResourceLimits.formatBytes(1000) == "1000")
        #expect(ResourceLimits.formatBytes(-1) == "-1")
    }

    // MARK: detection on this host

    @Test func detectMatchesProcMounts() throws {
        let seen = ObservedMounts()
        let s = CgroupSupport.detect()
        let unified = seen.cgroup2.first(where: { $0 == "/sys/fs/cgroup" }) ?? seen.cgroup2.first(where: { $0 == "/sys/fs/cgroup/unified" }) ?? seen.cgroup2.first
        let expected: CgroupSupport.Mode = unified != nil ? (seen.anyV1 ? .hybrid : .unified) : (seen.anyV1 ? .legacy : .none)
        #expect(s.mode == expected)
        #expect(s.unifiedMount == unified)
        #expect(s.user == CgroupUser.current)
        for c in ["memory", "pids", "cpu"] { #expect(s.v1Mounts[c] == seen.v1[c], "v1 mount of \(c)") }
        let own = (readText("/proc/self/cgroup") ?? "").split(separator: "\n").first(where: { $0.hasPrefix("0::") }).map { String($0.dropFirst(3)) }
        if let unified {
            let controllers = words(readText(unified + "/cgroup.controllers"))
            #expect(s.unifiedControllers == controllers)
            #expect(s.ownCgroup == own)
            // a controller bound to a v1 hierarchy cannot be in cgroup2 as well
            for c in seen.v1.keys { #expect(!s.unifiedControllers.contains(c), "\(c) is v1-mounted") }
        }
        let first = try #require(s.summary.first)
        switch expected {
        case .hybrid:
            #expect(first.hasPrefix("cgroup: hybrid (v1 controllers: "))
            #expect(first.hasSuffix("cgroup2 at \(unified!) has: \(s.unifiedControllers.isEmpty ? "no controllers" : s.unifiedControllers.joined(separator: ", ")))"))
            for c in seen.v1.keys { #expect(first.contains(c)) }
        case .unified: #expect(first.hasPrefix("cgroup: v2 (cgroup2 at \(unified!)"))
        case .legacy: #expect(first.hasPrefix("cgroup: v1"))
        case .none: #expect(first == "cgroup: none (no cgroup filesystem mounted)")
        }
        #expect(s.summary.last?.hasPrefix("limits: ") == true)
        #expect(s.summary.allSatisfy { !$0.contains("\n") })
    }

    @Test(.enabled(if: isRoot)) func rootBackendsOnThisHost() throws {
        let seen = ObservedMounts()
        let s = CgroupSupport.detect()
        for c in ["memory", "pids", "cpu"] {
            if let m = seen.v1[c] {
                #expect(s.backend(for: c) == .v1(mount: m), "\(c)")
            } else if s.unifiedControllers.contains(c) {
                #expect(s.backend(for: c) == .v2(parent: s.unifiedMount! + "/ctr"), "\(c)")
            }
        }
        if ["memory", "pids", "cpu"].allSatisfy({ seen.v1[$0] != nil }) {
            #expect(s.summary.last == "limits: memory, pids, cpu available as root via cgroup v1")
            #expect(s.unavailableError(for: fullLimits) == nil)
        }
    }

    // MARK: as ctrtest (this machine's files, judged for ctrtest)

    @Test(.enabled(if: isRoot && ctrtest != nil)) func writabilityForCtrtestAgreesWithRunuser() throws {
        let probe = CgroupProbe.live(as: ctrtest!)
        let seen = ObservedMounts()
        var paths = ["/tmp", "/etc", "/proc/self/cgroup"] + seen.cgroup2 + seen.v1.values.sorted()
        paths += seen.cgroup2.map { $0 + "/cgroup.procs" }
        for p in paths {
            let (status, _, _) = try run("/usr/sbin/runuser", ["-u", "ctrtest", "--", "test", "-w", p])
            #expect(probe.isWritable(p) == (status == 0), "\(p)")
        }
    }

    @Test(.enabled(if: isRoot && ctrtest != nil)) func ctrtestGetsAClearError() throws {
        let user = ctrtest!
        let s = CgroupSupport.detect(probe: .live(as: user))
        #expect(s.user == user)
        let seen = ObservedMounts()
        // what ctrtest could use here, observed independently with runuser
        var usable = false
        if let u = s.unifiedMount, let own = s.ownCgroup {
            let dir = own == "/" ? u : u + own
            let (st, _, _) = try run("/usr/sbin/runuser", ["-u", "ctrtest", "--", "test", "-w", dir])
            usable = st == 0 && ["memory", "pids", "cpu"].allSatisfy(words(readText(dir + "/cgroup.controllers")).contains)
        }
        for m in seen.v1.values {
            let (st, _, _) = try run("/usr/sbin/runuser", ["-u", "ctrtest", "--", "test", "-w", m])
            if st == 0 { usable = true }
        }
        try #require(!usable, "this host delegates cgroups to ctrtest; the unavailable path cannot be tested here")
        let name = uniqueName("ctrtest")
        let err = try #require(throws: CtrError.self) {
            try CgroupHandle.create(name: name, limits: fullLimits, support: s)
        }
        let m = err.message
        #expect(err.code == .unsupported)
        #expect(!m.contains("\n"))
        #expect(m.hasPrefix("--memory 256m, --pids-limit 64 and --cpus 0.5 need a cgroup v2 subtree delegated to ctrtest with the memory, pids and cpu controllers; "), "\(m)")
        #expect(m.contains("run as root"))
        if s.mode == .hybrid {
            let has = s.unifiedControllers.isEmpty ? "no controllers" : "only " + s.unifiedControllers.joined(separator: ", ")
            #expect(m.contains("this host has cgroup v1 controllers (hybrid) and cgroup2 at \(s.unifiedMount!) offers \(has), and cgroup v1 is writable only by root"), "\(m)")
            #expect(m.contains("Delegate=yes"))
        }
        #expect(s.summary.last?.hasPrefix("limits: unavailable to ctrtest: no delegated cgroup v2 subtree with memory, pids, cpu (") == true, "\(s.summary)")
        // nothing was created
        for m in seen.v1.values { #expect(!exists(m + "/ctr/" + name)) }
        for u in seen.cgroup2 { #expect(!exists(u + "/ctr/ctr-" + name)) }
        // one limit only: the message names just that flag
        let one = try #require(throws: CtrError.self) {
            try CgroupHandle.create(name: name, limits: ResourceLimits(pids: 10), support: s)
        }
        #expect(one.message.hasPrefix("--pids-limit 10 needs a cgroup v2 subtree delegated to ctrtest with the pids controller; "))
    }

    // MARK: injected hosts

    @Test func delegatedUserOnPureV2() throws {
        let files = [
            "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
            userScopeDir + "/cgroup.controllers": "cpu memory pids\n",
            userScopeDir + "/cgroup.subtree_control": "\n",
            userScopeDir + "/cgroup.events": "populated 1\nfrozen 0\n",
            userScopeDir + "/cgroup.procs": "4242\n4243\n",
        ]
        let writable: Set = [userScopeDir, userScopeDir + "/cgroup.procs", userScopeDir + "/cgroup.subtree_control"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts, selfCgroup: "0::\(userScope)\n", user: alice,
                                                      files: files, writable: writable))
        #expect(s.mode == .unified)
        #expect(s.ownCgroup == userScope)
        #expect(s.v2Base == userScopeDir && s.v2Parent == userScopeDir && s.v2Writable)
        #expect(s.v2Available == ["cpu", "memory", "pids"] && s.v2Enabled.isEmpty)
        #expect(s.v2HasOwnProcesses)
        for c in ["memory", "pids", "cpu"] { #expect(s.backend(for: c) == .v2(parent: userScopeDir)) }
        #expect(s.unavailableError(for: fullLimits) == nil)
        #expect(s.summary == [
            "cgroup: v2 (cgroup2 at /sys/fs/cgroup has: cpuset, cpu, io, memory, hugetlb, pids, rdma, misc)",
            "cgroup v2: this process is in \(userScope); ctr cgroups go under \(userScopeDir) (offered: cpu, memory, pids; enabled: none); its processes move to \(userScopeDir)/init when controllers are enabled",
            "limits: memory, pids, cpu available to alice via cgroup v2 (\(userScopeDir))",
        ])
    }

    @Test func userAlreadyInCtrsInitLeafUsesTheParent() throws {
        let files = [
            "/sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
            userScopeDir + "/cgroup.controllers": "cpu memory pids\n",
            userScopeDir + "/cgroup.subtree_control": "cpu memory pids\n",
            userScopeDir + "/cgroup.events": "populated 1\n",
            userScopeDir + "/cgroup.procs": "",
        ]
        let writable: Set = [userScopeDir, userScopeDir + "/cgroup.procs", userScopeDir + "/cgroup.subtree_control",
                             userScopeDir + "/init", userScopeDir + "/init/cgroup.procs", userScopeDir + "/init/cgroup.subtree_control"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts, selfCgroup: "0::\(userScope)/init\n", user: alice,
                                                      files: files, writable: writable))
        #expect(s.ownCgroup == userScope + "/init")
        #expect(s.v2Base == userScopeDir)
        #expect(!s.v2HasOwnProcesses)
        #expect(s.v2Enabled == ["cpu", "memory", "pids"])
        #expect(s.backend(for: "memory") == .v2(parent: userScopeDir))
    }

    @Test func userWithoutMemoryDelegation() throws {
        let files = [
            "/sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n",
            userScopeDir + "/cgroup.controllers": "cpu pids\n",
            userScopeDir + "/cgroup.subtree_control": "",
        ]
        let writable: Set = [userScopeDir, userScopeDir + "/cgroup.procs", userScopeDir + "/cgroup.subtree_control"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts, selfCgroup: "0::\(userScope)\n", user: alice,
                                                      files: files, writable: writable))
        #expect(s.backend(for: "pids") == .v2(parent: userScopeDir))
        #expect(s.backend(for: "memory") == nil)
        let err = try #require(s.unavailableError(for: ResourceLimits(memory: 256 << 20, memorySwap: 1 << 30, pids: 64, cpus: 0.5)))
        #expect(err.message == "--memory 256m and --memory-swap 1g need a cgroup v2 subtree delegated to alice with the memory controller; the delegated cgroup \(userScopeDir) offers only cpu, pids; run as root, or delegate the controllers to alice (systemd: Delegate=memory pids cpu, e.g. for user@.service)")
        #expect(s.unavailableError(for: ResourceLimits(pids: 5, cpus: 1)) == nil)
        #expect(throws: err) { try CgroupHandle.create(name: "x", limits: ResourceLimits(memory: 256 << 20, memorySwap: 1 << 30), support: s) }
        #expect(s.summary.last == "limits: pids, cpu available to alice via cgroup v2 (\(userScopeDir)); unavailable to alice: no delegated cgroup v2 subtree with memory (the delegated cgroup \(userScopeDir) offers only cpu, pids)")
    }

    @Test func userInAnUndelegatedSessionScope() throws {
        let scope = "/user.slice/user-1000.slice/session-3.scope"
        let files = ["/sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
                     "/sys/fs/cgroup\(scope)/cgroup.controllers": "", "/sys/fs/cgroup\(scope)/cgroup.procs": "77\n"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts, selfCgroup: "0::\(scope)\n", user: alice,
                                                      files: files, writable: []))
        #expect(!s.v2Writable)
        let err = try #require(throws: CtrError.self) {
            try CgroupHandle.create(name: "web", limits: ResourceLimits(cpus: 0.5), support: s)
        }
        #expect(err.message == "--cpus 0.5 needs a cgroup v2 subtree delegated to alice with the cpu controller; this process's cgroup \(scope) is not delegated to alice (not writable); run as root, or start ctr in a delegated cgroup, e.g. systemd-run --user --scope -p Delegate=yes ctr run …")
        #expect(s.summary[1] == "cgroup v2: this process is in \(scope); /sys/fs/cgroup\(scope) is not writable by alice")
    }

    @Test func hybridAsUserMatchesTheBriefsWording() throws {
        let files = ["/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n", "/sys/fs/cgroup/unified/cgroup.subtree_control": ""]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: hybridMounts, selfCgroup: "1:memory:/x\n0::/\n",
                                                      user: CgroupUser(uid: 1001, gid: 1001, groups: [1001], name: "ctrtest"),
                                                      files: files, writable: []))
        #expect(s.mode == .hybrid)
        #expect(s.v1Mounts == ["cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                               "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"])
        let err = try #require(s.unavailableError(for: ResourceLimits(memory: 256 << 20)))
        #expect(err.message == "--memory 256m needs a cgroup v2 subtree delegated to ctrtest with the memory controller; this host has cgroup v1 controllers (hybrid) and cgroup2 at /sys/fs/cgroup/unified offers only hugetlb, and cgroup v1 is writable only by root; run as root, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate it (systemd Delegate=yes)")
        #expect(s.summary[0] == "cgroup: hybrid (v1 controllers: cpu, cpuacct, memory, pids; cgroup2 at /sys/fs/cgroup/unified has: hugetlb)")
        #expect(s.summary.last == "limits: unavailable to ctrtest: no delegated cgroup v2 subtree with memory, pids, cpu (this host has cgroup v1 controllers (hybrid) and cgroup2 at /sys/fs/cgroup/unified offers only hugetlb, and cgroup v1 is writable only by root)")
    }

    @Test func hybridAsRootUsesV1() throws {
        let files = ["/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n"]
        let writable: Set = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.subtree_control",
                             "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: hybridMounts, selfCgroup: "0::/\n", user: rootUser,
                                                      files: files, writable: writable))
        #expect(s.backend(for: "memory") == .v1(mount: "/sys/fs/cgroup/memory"))
        #expect(s.backend(for: "cpu") == .v1(mount: "/sys/fs/cgroup/cpu,cpuacct"))
        #expect(s.backend(for: "hugetlb") == .v2(parent: "/sys/fs/cgroup/unified/ctr"))
        #expect(s.summary.last == "limits: memory, pids, cpu available as root via cgroup v1")
    }

    @Test func rootOnPureV2AndReadOnlyMount() throws {
        let files = ["/sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n"]
        let writable: Set = ["/sys/fs/cgroup", "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/cgroup.subtree_control"]
        let s = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts, selfCgroup: "0::/system.slice/ssh.service\n", user: rootUser,
                                                      files: files, writable: writable))
        #expect(s.v2Base == "/sys/fs/cgroup" && s.v2Parent == "/sys/fs/cgroup/ctr")
        #expect(!s.v2HasOwnProcesses)  // the root cgroup (no cgroup.events)
        for c in ["memory", "pids", "cpu"] { #expect(s.backend(for: c) == .v2(parent: "/sys/fs/cgroup/ctr")) }
        #expect(s.summary.last == "limits: memory, pids, cpu available as root via cgroup v2 (/sys/fs/cgroup/ctr)")

        let ro = CgroupSupport.detect(probe: fakeProbe(mounts: v2Mounts.replacingOccurrences(of: " rw,", with: " ro,"),
                                                       selfCgroup: "0::/\n", user: rootUser, files: files, writable: writable))
        #expect(!ro.v2Writable)
        let err = try #require(ro.unavailableError(for: fullLimits))
        #expect(err.message == "--memory 256m, --pids-limit 64 and --cpus 0.5 need the memory, pids and cpu cgroup controllers; the cgroup2 hierarchy at /sys/fs/cgroup is not writable (read-only mount?); mount /sys/fs/cgroup read-write with the controller (in cgroup v2, or as a cgroup v1 hierarchy)")
    }

    @Test func legacyAndNone() throws {
        let legacy = CgroupSupport.detect(probe: fakeProbe(mounts: hybridMounts.replacingOccurrences(of: "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0", with: ""),
                                                           selfCgroup: "4:memory:/\n", user: alice, files: [:], writable: []))
        #expect(legacy.mode == .legacy)
        #expect(legacy.unavailableError(for: ResourceLimits(pids: 3))?.message == "--pids-limit 3 needs a cgroup v2 subtree delegated to alice with the pids controller; this host has only cgroup v1, which is writable only by root; run as root, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate it (systemd Delegate=yes)")
        // a v1 hierarchy delegated by hand (chown) is used for a user too
        let chowned = CgroupSupport.detect(probe: fakeProbe(mounts: hybridMounts, selfCgroup: "0::/\n", user: alice,
                                                            files: [:], writable: ["/sys/fs/cgroup/pids/ctr"]))
        #expect(chowned.backend(for: "pids") == .v1(mount: "/sys/fs/cgroup/pids"))

        let none = CgroupSupport.detect(probe: fakeProbe(mounts: "proc /proc proc rw 0 0\n", selfCgroup: "", user: rootUser, files: [:], writable: []))
        #expect(none.mode == .none)
        #expect(none.summary == ["cgroup: none (no cgroup filesystem mounted)",
                                 "limits: unavailable as root: no usable cgroup with memory, pids, cpu (this host has no cgroup filesystem mounted)"])
        #expect(none.unavailableError(for: ResourceLimits(memory: 64 << 20))?.message.hasPrefix("--memory 64m needs the memory cgroup controller; this host has no cgroup filesystem mounted; ") == true)
    }

    @Test func mountPointEscapes() {
        #expect(CgFS.unescapeMount("/a\\040b") == "/a b")
        #expect(CgFS.unescapeMount("/plain") == "/plain")
        #expect(CgFS.unescapeMount("/x\\134y") == "/x\\y")
        #expect(CgFS.unescapeMount("/end\\04") == "/end\\04")
    }

    @Test func emptyLimitsAndBadNames() throws {
        let h = try CgroupHandle.create(name: "anything", limits: ResourceLimits(),
                                        support: CgroupSupport.detect(probe: fakeProbe(mounts: "", selfCgroup: "", user: alice, files: [:], writable: [])))
        #expect(!h.isActive && h.paths.isEmpty)
        try h.add(pid: getpid())
        try h.remove()
        #expect(h.memoryLimit() == nil && h.pidsLimit() == nil && h.cpuLimit() == nil)
        for bad in ["", "../x", "a/b", ".hidden", "x y", String(repeating: "a", count: 129)] {
            #expect(throws: CtrError.self) { try CgroupHandle.create(name: bad, limits: ResourceLimits(pids: 3)) }
        }
    }

    // MARK: real cgroups (root)

    @Test(.enabled(if: isRoot)) func createAddCheckRemove() throws {
        let s = CgroupSupport.detect()
        try #require(s.unavailableError(for: fullLimits) == nil, "root cannot apply limits here: \(s.summary)")
        let name = uniqueName("full")
        let limits = ResourceLimits(memory: 64 << 20, pids: 16, cpus: 0.5)
        let h = try CgroupHandle.create(name: name, limits: limits, support: s)
        var handleRemoved = false
        defer { if !handleRemoved { try? h.remove() } }

        // the expected directories, from the backends
        var expected: [String: String] = [:]
        for c in ["memory", "pids", "cpu"] {
            switch try #require(s.backend(for: c)) {
            case .v1(let m): expected[c] = m + "/ctr/" + name
            case .v2(let p): expected[c] = p + "/ctr-" + name
            }
        }
        for (c, d) in expected {
            #expect(h.controllerDirs[c] == d)
            #expect(h.paths.contains(d))
            #expect(exists(d + "/cgroup.procs"), "\(d)")
        }
        if s.mode == .hybrid && s.v2Writable {
            #expect(h.v2Path == s.v2Parent! + "/ctr-" + name, "a tracking cgroup in the unified hierarchy")
        }
        #expect(h.memoryLimit() == 64 << 20)
        #expect(h.pidsLimit() == 16)
        #expect(h.cpuLimit() == 0.5)
        // the raw files
        let mem = expected["memory"]!, pids = expected["pids"]!, cpu = expected["cpu"]!
        if case .v1 = s.backend(for: "memory") {
            #expect(words(readText(mem + "/memory.limit_in_bytes")) == ["67108864"])
            if exists(mem + "/memory.memsw.limit_in_bytes") {
                #expect(words(readText(mem + "/memory.memsw.limit_in_bytes")) == ["134217728"], "Docker default: swap = memory")
                #expect(h.memorySwapLimit() == 128 << 20)
            }
        } else {
            #expect(words(readText(mem + "/memory.max")) == ["67108864"])
        }
        #expect(words(readText(pids + "/pids.max")) == ["16"])
        if case .v1 = s.backend(for: "cpu") {
            #expect(words(readText(cpu + "/cpu.cfs_period_us")) == ["100000"])
            #expect(words(readText(cpu + "/cpu.cfs_quota_us")) == ["50000"])
        } else {
            #expect(words(readText(cpu + "/cpu.max")) == ["50000", "100000"])
        }

        let sleeper = try start(["/bin/sleep", "30"])
        defer { sleeper.reap() }
        try h.add(pid: sleeper.pid)
        for d in h.paths {
            #expect(words(readText(d + "/cgroup.procs")).contains(String(sleeper.pid)), "\(d)")
        }
        #expect(h.processes() == [sleeper.pid])
        let procCgroup = readText("/proc/\(sleeper.pid)/cgroup") ?? ""
        #expect(procCgroup.contains(name))

        sleeper.signal(SIGTERM)
        let status = try #require(sleeper.wait(timeout: 10))
        #expect(status == .signaled(SIGTERM))
        try h.remove()
        handleRemoved = true
        for d in h.paths { #expect(!exists(d), "\(d) still exists") }
        try h.remove()  // idempotent
    }

    @Test(.enabled(if: isRoot)) func pidsLimitBites() throws {
        let s = CgroupSupport.detect()
        try #require(s.backend(for: "pids") != nil)
        let h = try CgroupHandle.create(name: uniqueName("pids"), limits: ResourceLimits(pids: 16), support: s)
        defer { try? h.remove() }
        let dir = try #require(h.controllerDirs["pids"])
        // The shell waits for a line on stdin (so it is in the cgroup before forking), then starts
        // 40 sleeps; it kills and reaps the ones it got when it exits (no orphans).
        let script = """
            read go
            pids=
            trap 'kill $pids 2>/dev/null; wait' EXIT
            i=0
            while [ $i -lt 40 ]; do sleep 30 & pids="$pids $!"; i=$((i+1)); done
            echo spawned $i
            """
        let (inR, inW) = makePipe(), (outR, outW) = makePipe(), (errR, errW) = makePipe()
        let sh = try start(["/bin/sh", "-c", script], stdin: inR, stdout: outW, stderr: errW)
        close(inR); close(outW); close(errW)
        defer { sh.reap() }
        try h.add(pid: sh.pid)
        _ = write(inW, "go\n", 3)
        close(inW)
        let o = readAll(outR), e = readAll(errR)
        let status = try #require(sh.wait(timeout: 10), "the shell did not finish")
        #expect(status != .exited(0), "forking 40 processes under pids.max 16 succeeded: \(o)")
        #expect(!o.contains("spawned 40"))
        #expect(e.lowercased().contains("fork"), "\(e)")
        #expect(words(readText(dir + "/pids.current")) == ["0"], "the shell reaped its children")
        // the kernel counted the refused forks
        let events = readText(dir + "/pids.events") ?? ""
        let maxLine = events.split(separator: "\n").first(where: { $0.hasPrefix("max ") })
        #expect(Int(maxLine?.split(separator: " ").last ?? "0") ?? 0 >= 1, "\(events)")
        try h.remove()
        #expect(!exists(dir))
    }

    @Test(.enabled(if: isRoot)) func removeKillsLeftovers() throws {
        let s = CgroupSupport.detect()
        try #require(s.backend(for: "pids") != nil)
        let h = try CgroupHandle.create(name: uniqueName("kill"), limits: ResourceLimits(pids: 8), support: s)
        let sleeper = try start(["/bin/sleep", "60"])
        defer { sleeper.reap() }
        try h.add(pid: sleeper.pid)
        try h.remove()
        let status = try #require(sleeper.wait(timeout: 10))
        #expect(status == .signaled(SIGKILL))
        for d in h.paths { #expect(!exists(d)) }
    }

    @Test(.enabled(if: isRoot)) func failedLimitRollsBack() throws {
        let s = CgroupSupport.detect()
        guard case .v1(let m)? = s.backend(for: "pids") else {
            try #require(s.backend(for: "pids") != nil)
            return try failedLimitRollsBackV2(s)
        }
        let name = uniqueName("bad")
        // -5 is not a valid pids.max: the kernel refuses, and nothing may be left behind
        #expect { try CgroupHandle.create(name: name, limits: ResourceLimits(pids: -5), support: s) } throws: {
            "\($0)".hasPrefix("cannot set --pids-limit -5 (-5 into \(m)/ctr/\(name)/pids.max): ")
        }
        #expect(!exists(m + "/ctr/" + name))
        if let u = s.v2Parent { #expect(!exists(u + "/ctr-" + name)) }
    }

    private func failedLimitRollsBackV2(_ s: CgroupSupport) throws {
        let name = uniqueName("bad")
        #expect(throws: CtrError.self) { try CgroupHandle.create(name: name, limits: ResourceLimits(pids: -5), support: s) }
        #expect(!exists(s.v2Parent! + "/ctr-" + name))
    }

    @Test(.enabled(if: isRoot)) func staleCgroupIsReusedBusyOneRefused() throws {
        let s = CgroupSupport.detect()
        guard case .v1(let m)? = s.backend(for: "pids") else { return }
        let name = uniqueName("stale")
        try CgFS.mkdirIfMissing(m + "/ctr")
        try CgFS.mkdirIfMissing(m + "/ctr/" + name)
        let h = try CgroupHandle.create(name: name, limits: ResourceLimits(pids: 7), support: s)
        #expect(h.pidsLimit() == 7)
        let sleeper = try start(["/bin/sleep", "30"])
        defer { sleeper.reap() }
        try h.add(pid: sleeper.pid)
        #expect { try CgroupHandle.create(name: name, limits: ResourceLimits(pids: 7), support: s) } throws: {
            "\($0)".contains("already exists and has processes")
        }
        try h.remove()
        #expect(!exists(m + "/ctr/" + name))
    }

    /// cgroup v2's "no internal processes" rule, for real: a cgroup with a process cannot enable a
    /// controller for its children until the process is moved into the init leaf.
    @Test(.enabled(if: isRoot)) func evacuationOnRealCgroup2() throws {
        let s = CgroupSupport.detect()
        let u = try #require(s.unifiedMount, "no cgroup2 here")
        let c = try #require(s.unifiedControllers.first, "cgroup2 here has no controller to enable")
        let rootHadIt = words(readText(u + "/cgroup.subtree_control")).contains(c)
        try CgroupHandle.enableControllers([c], in: u, evacuateTo: nil)  // the root cgroup is exempt
        defer { if !rootHadIt { _ = CgFS.write(u + "/cgroup.subtree_control", "-" + c) } }
        let x = u + "/" + uniqueName("evac")
        try CgFS.mkdirIfMissing(x)
        let sleeper = try start(["/bin/sleep", "30"])
        defer {
            sleeper.reap()
            _ = rmdir(x + "/init")
            _ = rmdir(x)
        }
        #expect(CgFS.write(x + "/cgroup.procs", String(sleeper.pid)) == 0)
        #expect { try CgroupHandle.enableControllers([c], in: x, evacuateTo: nil) } throws: {
            "\($0)" == "cannot enable the \(c) controller in \(x)/cgroup.subtree_control: Device or resource busy (the cgroup has processes of its own)"
        }
        try CgroupHandle.enableControllers([c], in: x, evacuateTo: "init")
        #expect(words(readText(x + "/cgroup.subtree_control")).contains(c))
        #expect(words(readText(x + "/cgroup.procs")).isEmpty)
        #expect(words(readText(x + "/init/cgroup.procs")) == [String(sleeper.pid)])
        // detection sees x as a delegated base whose processes already moved
        let probe = CgroupProbe.live()
        let fake = CgroupProbe(mounts: probe.mounts, selfCgroup: "0::\(x.dropFirst(u.count))/init\n", user: CgroupUser(uid: 1, gid: 1, groups: [1], name: "daemon"),
                               readFile: probe.readFile, isWritable: probe.isWritable, exists: probe.exists)
        let seen = CgroupSupport.detect(probe: fake)
        #expect(seen.v2Base == x && seen.v2Enabled.contains(c) && !seen.v2HasOwnProcesses)
        #expect(seen.backend(for: c) == .v2(parent: x))
    }
}
