// Seccomp: the profile model, podman's default profile, compiling with libseccomp and what
// the compiled filter does to real syscalls in a forked child (csys_seccomp_probe).
//
// Probes compare against a baseline run of the same calls without a filter, so a test tells
// "the filter refused" (EPERM/ENOSYS/EINVAL that the baseline does not give) from "the kernel
// refused" (the baseline's own result). The probed calls are harmless (see csys_seccomp.h).
import CSysShims
import Errors
import Foundation
import Testing
@testable import Sandbox

private let EPERM_: Int32 = 1
private let ENOSYS_: Int32 = 38
private let EINVAL_: Int32 = 22

/// podman's default capability set.
private let podmanCaps: Set<String> = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
]

/// Runs `names` in a forked child with `bpf` installed (none: baseline); name -> errno.
private func probe(_ bpf: [UInt8]?, _ names: [String]) throws -> [String: Int32] {
    var out = [Int32](repeating: Int32.min, count: names.count)
    let cNames = names.map { strdup($0)! }
    defer { cNames.forEach { free($0) } }
    var ptrs: [UnsafePointer<CChar>?] = cNames.map { UnsafePointer($0) }
    let rc = ptrs.withUnsafeMutableBufferPointer { p -> Int32 in
        guard let bpf else { return csys_seccomp_probe(nil, 0, p.baseAddress, Int32(names.count), &out) }
        return bpf.withUnsafeBufferPointer {
            csys_seccomp_probe($0.baseAddress, $0.count, p.baseAddress, Int32(names.count), &out)
        }
    }
    try #require(rc == 0, "csys_seccomp_probe failed: errno \(errno)")
    return Dictionary(uniqueKeysWithValues: zip(names, out))
}

private func tempFile(_ name: String, _ text: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctr-seccomp-\(getpid())-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

private let isRoot = geteuid() == 0

@Suite struct SeccompTests {
    // MARK: podman's default profile as data

    @Test func defaultProfileIsPodmans() throws {
        let p = SeccompProfile.podmanDefault
        #expect(p.defaultAction == .errno)
        #expect(p.defaultErrnoRet == 38)
        #expect(p.encodedDefaultAction == 0x0005_0026)
        #expect(p.syscallNames.count == 444)
        #expect(SeccompProfile.podmanAllowed.count == 374)
        #expect(Set(SeccompProfile.podmanAllowed).count == SeccompProfile.podmanAllowed.count)
        #expect(SeccompProfile.podmanDenied.count == 31)
        // podman allows these unconditionally and leaves them to the kernel's capability checks
        // (so nested containers work); Docker's profile gates them on CAP_SYS_ADMIN.
        for n in ["mount", "umount2", "unshare", "setns", "keyctl", "reboot", "pivot_root", "ptrace", "clone", "clone3"] {
            #expect(SeccompProfile.podmanAllowed.contains(n), "\(n)")
        }
        for n in ["kexec_load", "swapon", "swapoff", "userfaultfd", "vmsplice", "syscall"] {
            #expect(SeccompProfile.podmanDenied.contains(n), "\(n)")
        }
        // Not mentioned at all: the default ENOSYS.
        for n in ["add_key", "request_key", "io_uring_setup", "io_uring_enter", "kexec_reboot"] {
            #expect(!p.syscallNames.contains(n), "\(n)")
        }
        #expect(p.archMap?.first == .init(architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]))
    }

    @Test func defaultProfileRoundTripsThroughJSON() throws {
        let json = try JSONEncoder().encode(SeccompProfile.podmanDefault)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"SCMP_ACT_ERRNO\""))
        #expect(text.contains("\"SCMP_CMP_NE\""))
        let back = try SeccompProfile.decode(json)
        #expect(back == SeccompProfile.podmanDefault)
        let path = try tempFile("default.json", text)
        #expect(try SeccompProfile.load(path: path) == SeccompProfile.podmanDefault)
    }

    @Test func encodingsMatchLibseccomp() {
        #expect(SeccompAction.allow.encoded(ret: nil) == 0x7fff_0000)
        #expect(SeccompAction.errno.encoded(ret: 1) == 0x0005_0001)
        #expect(SeccompAction.errno.encoded(ret: nil) == 0x0005_0001)
        #expect(SeccompAction.errno.encoded(ret: 0x1_0026) == 0x0005_0026)
        #expect(SeccompAction.kill.encoded(ret: nil) == 0)
        #expect(SeccompAction.killThread.encoded(ret: nil) == 0)
        #expect(SeccompAction.killProcess.encoded(ret: nil) == 0x8000_0000)
        #expect(SeccompAction.trap.encoded(ret: nil) == 0x0003_0000)
        #expect(SeccompAction.log.encoded(ret: nil) == 0x7ffc_0000)
        #expect(SeccompAction.trace.encoded(ret: 7) == 0x7ff0_0007)
        let ops: [SeccompOperator: Int32] = [.notEqual: 1, .lessThan: 2, .lessOrEqual: 3, .equalTo: 4,
                                             .greaterOrEqual: 5, .greaterThan: 6, .maskedEqual: 7]
        for (op, v) in ops { #expect(op.cValue == v, "\(op)") }
    }

    // MARK: which entries apply

    @Test func entriesAreFilteredByCapabilityArchAndKernel() throws {
        let amd64 = SeccompHost(archNames: SeccompHost.archNames(machine: "x86_64"), kernel: KernelVersion("6.18.0-1-amd64")!)
        let arm64 = SeccompHost(archNames: SeccompHost.archNames(machine: "aarch64"), kernel: KernelVersion("6.1")!)
        let p = SeccompProfile.podmanDefault
        func actions(_ name: String, _ caps: Set<String>, _ host: SeccompHost) -> [UInt32] {
            p.rules(capabilities: caps, host: host).filter { $0.name == name }.map(\.action)
        }
        let allow: UInt32 = 0x7fff_0000, eperm: UInt32 = 0x0005_0001
        #expect(actions("sethostname", podmanCaps, amd64) == [eperm])
        #expect(actions("sethostname", podmanCaps.union(["CAP_SYS_ADMIN"]), amd64) == [allow])
        #expect(actions("sethostname", podmanCaps.union(["sys_admin"]), amd64) == [allow]) // normalized
        #expect(actions("clock_settime", podmanCaps, amd64) == [eperm])
        #expect(actions("clock_settime", ["CAP_SYS_TIME"], amd64) == [allow])
        #expect(actions("chroot", podmanCaps, amd64) == [allow])
        #expect(actions("chroot", [], amd64) == [eperm])
        // bpf: CAP_SYS_ADMIN or CAP_BPF; denied with neither.
        #expect(actions("bpf", [], amd64) == [eperm])
        #expect(actions("bpf", ["CAP_BPF"], amd64) == [allow])
        #expect(actions("bpf", ["CAP_SYS_ADMIN"], amd64) == [allow])
        // Architecture-specific entries.
        #expect(actions("arch_prctl", [], amd64) == [allow])
        #expect(actions("modify_ldt", [], amd64) == [allow])
        #expect(actions("cacheflush", [], amd64).isEmpty)
        #expect(actions("arch_prctl", [], arm64).isEmpty)
        #expect(actions("cacheflush", [], arm64) == [allow])
        // The old single "name" field and minKernel, in a custom profile.
        let custom = try SeccompProfile.decode(Data("""
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"name": "getcwd", "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.1"}},
              {"name": "uname", "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "4.8"}},
              {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "6.18"}},
              {"names": ["gettid"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["amd64"]}}
            ]}
            """.utf8))
        #expect(custom.rules(capabilities: [], host: amd64).map(\.name) == ["uname"])
        #expect(custom.rules(capabilities: [], host: arm64).map(\.name) == ["uname", "getpid", "gettid"])
    }

    // MARK: the compiled default profile against real syscalls

    static let probed = [
        "getpid", "getcwd", "uname", "unshare", "setns", "mount", "umount2", "keyctl", "add_key", "reboot",
        "kexec_load", "swapon", "swapoff", "clock_settime", "settimeofday", "personality", "personality_noaslr",
        "ptrace", "sethostname", "setdomainname", "chroot", "acct", "bpf", "userfaultfd", "io_uring_setup",
        "clone3", "open_by_handle_at", "kcmp", "socket_inet", "socket_vsock", "socket_alg",
        "socket_netlink_route", "socket_netlink_audit",
    ]

    @Test func defaultProfileWithPodmanCapabilities() throws {
        let bpf = try SeccompProfile.podmanDefault.compile(capabilities: podmanCaps)
        #expect(!bpf.isEmpty && bpf.count % 8 == 0)
        let base = try probe(nil, Self.probed)
        let got = try probe(bpf, Self.probed)

        // Allowed by the filter: the same result as without it (the kernel decides).
        for n in ["getpid", "getcwd", "uname", "unshare", "setns", "mount", "umount2", "keyctl", "reboot",
                  "personality", "ptrace", "chroot", "clone3", "socket_inet", "socket_netlink_route"] {
            #expect(got[n] == base[n], "\(n): filtered \(got[n]!) vs baseline \(base[n]!)")
        }
        #expect(got["getpid"] == 0)
        #expect(got["personality"] == 0)

        // Explicitly denied, or denied without the capability: EPERM.
        for n in ["kexec_load", "swapon", "swapoff", "clock_settime", "settimeofday", "sethostname",
                  "setdomainname", "acct", "bpf", "userfaultfd", "open_by_handle_at", "kcmp",
                  "socket_vsock", "socket_alg"] {
            #expect(got[n] == EPERM_, "\(n): \(got[n]!)")
        }
        if isRoot {
            // As root the kernel itself says EINVAL/ENOENT: the EPERM above is the filter's.
            for n in ["clock_settime", "sethostname", "setdomainname", "swapon", "kcmp", "bpf", "userfaultfd"] {
                #expect(base[n] != EPERM_, "\(n): baseline \(base[n]!)")
            }
        }

        // Not in the profile at all: ENOSYS, so that callers fall back.
        for n in ["add_key", "io_uring_setup", "personality_noaslr"] {
            #expect(got[n] == ENOSYS_, "\(n): \(got[n]!)")
            #expect(base[n] != ENOSYS_, "\(n): baseline \(base[n]!)")
        }

        // Netlink audit sockets need CAP_AUDIT_WRITE: EINVAL from the filter.
        #expect(got["socket_netlink_audit"] == EINVAL_)
        #expect(base["socket_netlink_audit"] != EINVAL_)
    }

    @Test func addedCapabilitiesOpenTheirSyscalls() throws {
        let base = try probe(nil, Self.probed)
        let admin = try probe(try SeccompProfile.podmanDefault.compile(capabilities: podmanCaps.union(["CAP_SYS_ADMIN"])),
                              Self.probed)
        // CAP_SYS_ADMIN: unshare(CLONE_NEWUTS) succeeds (as root), sethostname & co reach the kernel.
        if isRoot { #expect(admin["unshare"] == 0) }
        for n in ["unshare", "sethostname", "setdomainname", "bpf", "setns", "mount"] {
            #expect(admin[n] == base[n], "\(n): filtered \(admin[n]!) vs baseline \(base[n]!)")
        }
        #expect(admin["sethostname"] != EPERM_ || !isRoot)
        // ... but not what other capabilities gate, and never the denied list.
        for n in ["clock_settime", "kcmp", "kexec_load", "swapon", "socket_vsock"] {
            #expect(admin[n] == EPERM_, "\(n): \(admin[n]!)")
        }

        let more = try probe(try SeccompProfile.podmanDefault.compile(
            capabilities: podmanCaps.union(["CAP_SYS_TIME", "CAP_SYS_PTRACE", "CAP_AUDIT_WRITE", "CAP_SYS_PACCT"])),
            Self.probed)
        for n in ["clock_settime", "settimeofday", "kcmp", "socket_netlink_audit", "acct"] {
            #expect(more[n] == base[n], "\(n): filtered \(more[n]!) vs baseline \(base[n]!)")
        }
        #expect(more["sethostname"] == EPERM_)
        #expect(more["kexec_load"] == EPERM_)
        #expect(more["add_key"] == ENOSYS_)
    }

    // MARK: custom profiles

    @Test func customProfileDeniesOnlyGetcwd() throws {
        for entry in [#"{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}"#,
                      #"{"name": "getcwd", "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": null}"#] {
            let path = try tempFile("getcwd.json", """
                {
                  "defaultAction": "SCMP_ACT_ALLOW",
                  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                  "syscalls": [
                    {"names": ["no_such_syscall_at_all"], "action": "SCMP_ACT_ERRNO"},
                    \(entry)
                  ]
                }
                """)
            let profile = try SeccompProfile.load(path: path)
            #expect(profile.syscalls.last?.names == ["getcwd"])
            let got = try probe(try profile.compile(capabilities: []), ["getpid", "getcwd", "uname", "unshare", "add_key"])
            let base = try probe(nil, ["getpid", "getcwd", "uname", "unshare", "add_key"])
            #expect(got["getcwd"] == EPERM_)
            #expect(base["getcwd"] == 0)
            for n in ["getpid", "uname", "unshare", "add_key"] {
                #expect(got[n] == base[n], "\(n): filtered \(got[n]!) vs baseline \(base[n]!)")
            }
        }
    }

    @Test func argumentComparisonsAndKillActions() throws {
        // Two comparisons on the same argument: either matches (split into two rules, as runc).
        let sockets = try SeccompProfile.decode(Data("""
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 38, "op": "SCMP_CMP_EQ"}]},
              {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
               "args": [{"index": 0, "value": 262144, "valueTwo": 262144, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}
            """.utf8))
        let got = try probe(try sockets.compile(capabilities: []),
                            ["socket_vsock", "socket_alg", "socket_inet", "personality", "personality_noaslr"])
        #expect(got["socket_vsock"] == 13)
        #expect(got["socket_alg"] == 13)
        #expect(got["socket_inet"] == 0)
        #expect(got["personality_noaslr"] == 95) // 0x0040000 & 0x40000 == 0x40000
        #expect(got["personality"] == 95) // 0xffffffff & 0x40000 == 0x40000

        // KILL_PROCESS: the child dies of SIGSYS at getcwd; later calls are never reached.
        let kill = try SeccompProfile.decode(Data("""
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}]}
            """.utf8))
        let killed = try probe(try kill.compile(capabilities: []), ["getpid", "getcwd", "uname"])
        #expect(killed["getpid"] == 0)
        #expect(killed["getcwd"] == -SIGSYS)
        #expect(killed["uname"] == -SIGSYS)

        // A strict allowlist (default ERRNO(EACCES)): only what the probe child itself needs.
        let strict = SeccompProfile(defaultAction: .errno, defaultErrnoRet: 13, syscalls: [
            .init(names: ["getpid", "exit_group", "exit", "prctl", "seccomp"], action: .allow),
        ])
        let s = try probe(try strict.compile(capabilities: []), ["getpid", "getcwd", "uname"])
        #expect(s == ["getpid": 0, "getcwd": 13, "uname": 13])
    }

    // MARK: errors

    @Test(arguments: [
        ("unknown-action.json",
         #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["getcwd", "uname"], "action": "SCMP_ACT_BOGUS"}]}"#,
         ["syscalls[1]", "getcwd", "unknown action", "SCMP_ACT_BOGUS"]),
        ("unknown-op.json",
         #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
         ["syscalls[0]", "socket", "args[0]", "unknown op", "SCMP_CMP_ALMOST"]),
        ("invalid.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [ {"names": ["read"] "action": 1} ]}"#,
         ["invalid JSON", "at line 1, column 70"]),
        ("invalid-multiline.json", "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [,]\n}", ["invalid JSON", "line 3"]),
        ("empty.json", "", ["invalid JSON", "empty"]),
        ("default-action.json", #"{"defaultAction": "SCMP_ACT_MAYBE"}"#, ["defaultAction", "SCMP_ACT_MAYBE"]),
        ("no-default.json", #"{"syscalls": []}"#, ["defaultAction is missing"]),
        ("both-names.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
         ["syscalls[0]", "\"name\" and \"names\""]),
        ("no-names.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
         ["syscalls[0]", "no syscall names"]),
        ("bad-index.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
         ["syscalls[0]", "read", "index 6"]),
        ("bad-arch.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#,
         ["SCMP_ARCH_Z80"]),
        ("bad-kernel.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "new"}}]}"#,
         ["syscalls[0]", "minKernel", "new"]),
        ("wrong-type.json", #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": "EPERM"}]}"#,
         ["syscalls[0].errnoRet"]),
    ])
    func badProfilesGiveOneLineErrors(file: String, json: String, mentions: [String]) throws {
        let path = try tempFile(file, json)
        let error = try #require(throws: CtrError.self) { try SeccompProfile.load(path: path) }
        #expect(error.message.hasPrefix("seccomp profile \(path): "), "\(error.message)")
        for m in mentions { #expect(error.message.contains(m), "\(error.message) should mention \(m)") }
        #expect(!error.message.contains("\n"))
        #expect(error.code == .invalidInput)
    }

    @Test func missingFile() throws {
        let error = try #require(throws: CtrError.self) { try SeccompProfile.load(path: "/nonexistent/ctr/profile.json") }
        #expect(error.message == "seccomp profile /nonexistent/ctr/profile.json: cannot open: No such file or directory")
    }

    @Test func installRejectsMalformedPrograms() {
        // Only lengths that fail before prctl: nothing is installed on the test process.
        let bytes = [UInt8](repeating: 0, count: 12)
        errno = 0
        #expect(bytes.withUnsafeBufferPointer { csys_seccomp_install($0.baseAddress, 12) } == -1)
        #expect(errno == EINVAL)
        errno = 0
        #expect(csys_seccomp_install(nil, 8) == -1)
        #expect(errno == EINVAL)
        var names: [UnsafePointer<CChar>?] = [UnsafePointer(strdup("no_such_probe"))]
        defer { free(UnsafeMutablePointer(mutating: names[0])) }
        var out: Int32 = 0
        #expect(csys_seccomp_probe(nil, 0, &names, 1, &out) == -1)
        #expect(errno == EINVAL)
    }
}
