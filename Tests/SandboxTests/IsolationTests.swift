import Foundation
import Testing
@testable import Sandbox

/// The isolation ladder as a table: the facts of the environments users build in (as probed in
/// them: see csys_probe.c) → the level ctr picks, what the step lacks, or the one-line refusal.
@Suite struct IsolationTests {
    typealias NS = SandboxFacts.Namespaces

    static func ns(_ edit: (inout NS) -> Void = { _ in }) -> NS {
        var n = NS()
        n.tried = true
        n.mknod = EPERM  // a user namespace never may
        edit(&n)
        return n
    }

    static func facts(uid: UInt32, caps: UInt64, nested: NS, direct: NS = NS(), chroot: Int32? = nil, seccomp: Bool = false,
                      maxUserns: Int = 60000, container: Bool = false) -> SandboxFacts {
        var f = SandboxFacts()
        f.uid = uid
        f.capabilities = caps
        f.nested = nested
        f.direct = direct
        f.chroot = uid == 0 ? chroot : -1
        f.seccompFiltered = seccomp
        f.maxUserNamespaces = maxUserns
        f.insideContainer = container
        return f
    }

    static let allCaps: UInt64 = 0x1ff_ffff_ffff
    static let podmanCaps: UInt64 = 0x8004_05fb  // no CAP_SYS_ADMIN, CAP_SYS_CHROOT kept
    static let dockerCaps: UInt64 = 0xa80_425fb  // podman's plus MKNOD (27) and AUDIT_WRITE
    /// A CI container's namespaces: a masked /proc and /sys, sethostname refused by seccomp.
    static let ciNested = ns { $0.procfs = EPERM; $0.sysfs = EPERM; $0.hostname = EPERM }
    static let refusedUserns = ns { $0.userns = EPERM; $0.idmap = -1; $0.capsInUserns = -1; $0.mountns = -1; $0.tmpfs = -1; $0.overlay = -1 }
    static let directRefused: NS = { var n = NS(); n.tried = true; n.userns = nil; n.mountns = EPERM; n.tmpfs = -1; n.overlay = -1; return n }()

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var facts: SandboxFacts
        var purpose: IsolationDecision.Purpose = .build
        var request: IsolationRequest = .auto
        var level: IsolationLevel?
        var says: String = ""
        var check: @Sendable (IsolationDecision) -> Bool = { _ in true }
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "a host, as a user", facts: facts(uid: 1000, caps: 0, nested: ns()), level: .userns,
             check: { !$0.bindProc && !$0.keepHostname && $0.networkNamespace && !$0.identityUserns && $0.lacks.isEmpty }),
        Case(name: "a host, as root", facts: facts(uid: 0, caps: allCaps, nested: ns(), direct: ns { $0.mknod = nil }), level: .userns,
             check: { $0.direct && $0.mknod && !$0.identityUserns }),
        Case(name: "root in a default podman or docker-with-podman-profile container", facts: facts(uid: 0, caps: podmanCaps, nested: ciNested, direct: directRefused, seccomp: true, container: true),
             level: .nested, check: { $0.identityUserns && !$0.direct && $0.bindProc && $0.bindSys && $0.keepHostname
                 && $0.lacks == ["a fresh /proc, a fresh /sys and a hostname of its own (Operation not permitted)"] }),
        Case(name: "--user 1000 in a default podman container", facts: facts(uid: 1000, caps: 0, nested: ciNested, seccomp: true, container: true),
             level: .nested, check: { !$0.identityUserns && $0.bindProc }),
        Case(name: "what nested lacks, grouped by why", facts: facts(uid: 1000, caps: 0, nested: ns { $0.procfs = EPERM; $0.hostname = EACCES; $0.netns = EPERM }),
             level: .nested, check: { $0.lacks == ["a fresh /proc and a network namespace (Operation not permitted)", "a hostname of its own (Permission denied)"] && !$0.networkNamespace }),
        Case(name: "inside ctr's own ctr run", facts: facts(uid: 0, caps: podmanCaps, nested: ciNested, direct: directRefused, seccomp: true, container: true),
             level: .nested),
        Case(name: "root in Docker's default profile: chroot", facts: facts(uid: 0, caps: dockerCaps, nested: refusedUserns, direct: directRefused, chroot: nil, seccomp: true, container: true),
             level: .chroot, check: { $0.mknod && !$0.networkNamespace && $0.refused.first?.contains("seccomp filter refuses new namespaces") == true }),
        Case(name: "root without MKNOD in Docker's profile: chroot, /dev of plain files", facts: facts(uid: 0, caps: podmanCaps, nested: refusedUserns, direct: directRefused, chroot: nil, seccomp: true),
             level: .chroot, check: { !$0.mknod && $0.lacks.contains { $0.hasPrefix("device nodes") } }),
        Case(name: "a user in Docker's profile: nothing, said with the ways out", facts: facts(uid: 1000, caps: 0, nested: refusedUserns, seccomp: true, container: true),
             says: "RUN cannot be sandboxed here: userns, nested: a seccomp filter refuses new namespaces (Operation not permitted), as Docker's and Kubernetes' default profiles do without CAP_SYS_ADMIN; chroot: ctr is not root here (uid 1000). Run the job as root"),
        Case(name: "user namespaces disabled by sysctl", facts: facts(uid: 1000, caps: 0, nested: refusedUserns, maxUserns: 0),
             says: "user namespaces are disabled (user.max_user_namespaces is 0)"),
        Case(name: "Ubuntu 24.04's AppArmor: a user namespace without capabilities", facts: facts(uid: 1000, caps: 0, nested: ns { $0.capsInUserns = EPERM; $0.mountns = EPERM }),
             says: "a new user namespace has no capabilities"),
        Case(name: "run in Docker's profile: no chroot for run", facts: facts(uid: 0, caps: dockerCaps, nested: refusedUserns, direct: directRefused, chroot: nil, seccomp: true),
             purpose: .run, says: "a container cannot be made here: userns, nested: a seccomp filter refuses"),
        Case(name: "asked for chroot on a host", facts: facts(uid: 0, caps: allCaps, nested: ns(), direct: ns { $0.mknod = nil }, chroot: nil),
             request: .level(.chroot), level: .chroot),
        Case(name: "asked for userns in a CI container", facts: facts(uid: 0, caps: podmanCaps, nested: ciNested, direct: directRefused),
             request: .level(.userns), says: "--isolation userns: not possible here"),
        Case(name: "asked for nested on a host: fine", facts: facts(uid: 1000, caps: 0, nested: ns()), request: .level(.nested), level: .userns),
        Case(name: "asked for container outside one", facts: facts(uid: 0, caps: allCaps, nested: ns(), direct: ns { $0.mknod = nil }),
             request: .level(.container), says: "--isolation container: ctr is not inside a container"),
        Case(name: "asked for container inside one", facts: facts(uid: 0, caps: dockerCaps, nested: refusedUserns, direct: directRefused, chroot: nil, container: true),
             request: .level(.container), level: .container),
        Case(name: "asked for container as a user", facts: facts(uid: 1000, caps: 0, nested: refusedUserns, seccomp: true, container: true),
             request: .level(.container), says: "--isolation container: needs root in the container (ctr runs as uid 1000)"),
        Case(name: "asked for chroot as a user", facts: facts(uid: 1000, caps: 0, nested: ns()), request: .level(.chroot), says: "--isolation chroot: needs root"),
    ]

    @Test(arguments: cases)
    func ladder(_ c: Case) {
        do {
            let d = try IsolationDecision.decide(c.facts, request: c.request, purpose: c.purpose)
            #expect(c.level != nil, "expected a refusal (\(c.says)), got \(d.level)")
            #expect(d.level == c.level, "\(d)")
            #expect(c.check(d), "\(d)")
        } catch {
            #expect(c.level == nil, "expected \(c.level.map { "\($0)" } ?? "-"), got: \(error)")
            #expect("\(error)".contains(c.says), "\(error)")
            #expect(!"\(error)".contains("\n"), "one line")
        }
    }

    @Test func parsesTheFlag() throws {
        #expect(try IsolationRequest(parsing: "auto") == .auto)
        #expect(try IsolationRequest(parsing: "chroot") == .level(.chroot))
        #expect(throws: (any Error).self) { try IsolationRequest(parsing: "vm") }
    }
}
