import Errors
import Foundation
import HostOS
import Layers
import Testing
@testable import Sandbox

/// The run path's decisions, without a kernel: (RunSpec, image, host facts) → ContainerPlan.
@Suite struct PlannerTests {
    static let passwd = """
    root:x:0:0:root:/root:/bin/sh
    user:x:1000:1000:user:/home/user:/bin/sh
    big:x:70000:70000:big:/home/big:/bin/sh
    """
    static let group = "root:x:0:\nwheel:x:10:user\nuser:x:1000:\ntty:x:5:\n"

    static func image(_ cfg: ContainerConfig = ContainerConfig(), lowers: [String] = ["/store/layers/a"]) -> ImageFacts {
        var c = cfg
        if c.cmd == nil && c.entrypoint == nil { c.cmd = ["sh"] }
        var f = ImageFacts(config: c, lowers: lowers, read: { path in
            path == "/etc/passwd" ? PlannerTests.passwd : path == "/etc/group" ? PlannerTests.group : nil
        })
        f.imageID = "sha256:config"
        f.manifestDigest = "sha256:manifest"
        f.platform = .current
        return f
    }

    static let rootless = IDMapping.mapped(uid: [IDRange(containerID: 0, hostID: 1001, count: 1), IDRange(containerID: 1, hostID: 200000, count: 65536)],
                                           gid: [IDRange(containerID: 0, hostID: 1001, count: 1), IDRange(containerID: 1, hostID: 200000, count: 65536)])
    static let noFuse = FuseOverlay(mode: .off, program: nil, missing: "not installed")
    static let noNetwork = [NetworkAvailability(name: "pasta", available: false, detail: "cannot open /dev/net/tun", reason: .tunPermission),
                            NetworkAvailability(name: "slirp4netns", available: false, detail: "cannot open /dev/net/tun", reason: .tunPermission)]
    static let slirp = [NetworkAvailability(name: "pasta", available: false, detail: "not installed", reason: .notInstalled),
                        NetworkAvailability(name: "slirp4netns", available: true, detail: "/usr/bin/slirp4netns")]

    static func facts(_ mapping: IDMapping, network: [NetworkAvailability] = slirp) -> HostFacts {
        var f = HostFacts(mapping: mapping, fuse: noFuse)
        f.network = network
        f.hostname = "buildhost"
        f.hostsFile = "127.0.0.1\tlocalhost\n10.0.0.1\tbuildhost\n"
        f.resolvConf = "nameserver 10.0.0.53\n"
        return f
    }

    static func spec(_ edit: (inout RunSpec) -> Void = { _ in }) -> RunSpec {
        var s = RunSpec(source: .image("busybox:local"))
        s.network = .mode(.none)
        edit(&s)
        return s
    }

    func plan(_ s: RunSpec, _ f: HostFacts, image: ImageFacts = PlannerTests.image()) throws -> ContainerPlan {
        try Planner.plan(s, image: image, facts: f, id: "0123456789abcdef0123", stateDir: "/store/containers/x", storeRoot: "/store")
    }

    // MARK: ids

    struct IDCase: Sendable, CustomTestStringConvertible {
        var name: String
        var mapping: IDMapping
        var user: String?
        var userns: UsernsRequest = .default
        var rootRange: HostFacts.RootRange?
        // expected
        var useUserns: Bool
        var uid: UInt32, gid: UInt32
        var groups: [UInt32]
        var setgroups: Bool
        var mknod: Bool
        var idmapped: Bool
        var devptsGid5: Bool
        var notice: String?
        var testDescription: String { name }
    }

    static let idCases: [IDCase] = [
        IDCase(name: "rootless, subordinate ids, image user", mapping: rootless, user: "user", useUserns: true, uid: 1000, gid: 1000,
               groups: [1000, 10], setgroups: true, mknod: false, idmapped: false, devptsGid5: true),
        IDCase(name: "rootless, root", mapping: rootless, user: nil, useUserns: true, uid: 0, gid: 0, groups: [0], setgroups: true,
               mknod: false, idmapped: false, devptsGid5: true),
        IDCase(name: "single id: root only, setgroups denied, said once", mapping: .single(uid: 1002, gid: 1002), user: nil,
               useUserns: true, uid: 0, gid: 0, groups: [], setgroups: false, mknod: false, idmapped: false, devptsGid5: false,
               notice: "no subordinate ids for this user"),
        IDCase(name: "root: no user namespace, mknod", mapping: .root, user: "1000:5", useUserns: false, uid: 1000, gid: 5,
               groups: [5], setgroups: true, mknod: true, idmapped: false, devptsGid5: true),
        IDCase(name: "root, --userns auto: root's range, idmapped layers", mapping: .root, user: "user", userns: .auto,
               rootRange: .init(uid: IDRange(containerID: 0, hostID: 1_000_000, count: 65536), gid: IDRange(containerID: 0, hostID: 1_000_000, count: 65536)),
               useUserns: true, uid: 1000, gid: 1000, groups: [1000, 10], setgroups: true, mknod: false, idmapped: true, devptsGid5: true),
    ]

    @Test(arguments: idCases)
    func ids(_ c: IDCase) throws {
        var f = Self.facts(c.mapping)
        f.rootRange = c.rootRange
        let p = try plan(Self.spec { $0.user = c.user; $0.userns = c.userns }, f)
        #expect(p.useUserns == c.useUserns)
        #expect(p.user.uid == c.uid && p.user.gid == c.gid)
        #expect(p.groups == c.groups)
        #expect(p.setgroups == c.setgroups)
        #expect(p.mknod == c.mknod)
        #expect(p.restrictDevices == !c.useUserns)
        #expect(p.idmappedLowers == c.idmapped)
        #expect(p.devptsGid5 == c.devptsGid5)
        #expect(p.record.rootless == c.useUserns)
        if let n = c.notice { #expect(p.notices.contains { $0.contains(n) }, "\(p.notices)") } else { #expect(p.notices.isEmpty, "\(p.notices)") }
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        var name: String
        var mapping: IDMapping
        var edit: @Sendable (inout RunSpec) -> Void
        var facts: @Sendable (inout HostFacts) -> Void = { _ in }
        var image: ImageFacts = PlannerTests.image()
        var says: String
        var testDescription: String { name }
    }

    static let refusals: [Refusal] = [
        Refusal(name: "a user beyond the subordinate range", mapping: rootless, edit: { $0.user = "big" }, says: "is not mapped in this user namespace (the subordinate id range is too small)"),
        Refusal(name: "a user without subordinate ids", mapping: .single(uid: 1002, gid: 1002), edit: { $0.user = "1000" }, says: "(no subordinate ids)"),
        Refusal(name: "an unknown user name", mapping: rootless, edit: { $0.user = "nobody-here" }, says: "unable to find user nobody-here"),
        Refusal(name: "--userns auto without root's range", mapping: .root, edit: { $0.userns = .auto }, says: "root has no subordinate id range"),
        Refusal(name: "no command", mapping: rootless, edit: { _ in }, image: PlannerTests.image(ContainerConfig(), lowers: []).withoutCommand, says: "no command"),
        Refusal(name: "a name in use", mapping: rootless, edit: { $0.name = "web" }, facts: { $0.containerNames = ["web"] }, says: "\"web\" is already in use"),
        Refusal(name: "-p without a private network", mapping: rootless, edit: { $0.network = .default; $0.ports = [try! PortMapping(parsing: "8080:80")] },
                facts: { $0.network = PlannerTests.noNetwork }, says: "-p needs pasta or slirp4netns, and neither can run here"),
        Refusal(name: "-p with --network host", mapping: rootless, edit: { $0.network = .mode(.host); $0.ports = [try! PortMapping(parsing: "8080:80")] },
                says: "with --network host there is nothing to forward"),
        Refusal(name: "--network private where there is none", mapping: rootless, edit: { $0.network = .privateNetwork(asked: "private") },
                facts: { $0.network = PlannerTests.noNetwork }, says: "--network private: no network"),
        Refusal(name: "--network pasta where it cannot run", mapping: rootless, edit: { $0.network = .mode(.pasta) },
                facts: { $0.network = PlannerTests.noNetwork }, says: "--network pasta: cannot open /dev/net/tun"),
        Refusal(name: "an env file that cannot be read", mapping: rootless, edit: { $0.envFiles = ["/nonexistent/vars"] }, says: "--env-file /nonexistent/vars: cannot read it"),
    ]

    @Test(arguments: refusals)
    func refused(_ r: Refusal) {
        var f = Self.facts(r.mapping)
        r.facts(&f)
        var s = Self.spec()
        r.edit(&s)
        #expect(throws: (any Error).self) { try plan(s, f, image: r.image) }
        do { _ = try plan(s, f, image: r.image) } catch { #expect("\(error)".contains(r.says), "\(error)") }
    }

    // MARK: the process

    struct ArgvCase: Sendable, CustomTestStringConvertible {
        var entrypoint: [String]?
        var cmd: [String]?
        var flag: String?
        var args: [String]
        var want: [String]
        var testDescription: String { "\(entrypoint ?? []) \(cmd ?? []) --entrypoint \(flag ?? "-") \(args) → \(want)" }
    }

    @Test(arguments: [
        ArgvCase(entrypoint: nil, cmd: ["sh"], flag: nil, args: [], want: ["sh"]),
        ArgvCase(entrypoint: nil, cmd: ["sh"], flag: nil, args: ["echo", "hi"], want: ["echo", "hi"]),
        ArgvCase(entrypoint: ["cat"], cmd: ["/etc/motd"], flag: nil, args: [], want: ["cat", "/etc/motd"]),
        ArgvCase(entrypoint: ["cat"], cmd: ["/etc/motd"], flag: nil, args: ["/etc/passwd"], want: ["cat", "/etc/passwd"]),
        ArgvCase(entrypoint: ["cat"], cmd: ["/etc/motd"], flag: "ls", args: [], want: ["ls"]),
        ArgvCase(entrypoint: ["cat"], cmd: ["/etc/motd"], flag: "", args: ["id"], want: ["id"]),
    ])
    func argv(_ c: ArgvCase) {
        #expect(Planner.argv(imageEntrypoint: c.entrypoint, imageCmd: c.cmd, entrypoint: c.flag, args: c.args) == c.want)
    }

    @Test func environmentOrderAndSources() throws {
        var cfg = ContainerConfig()
        cfg.env = ["PATH=/opt/bin:/bin", "A=image", "B=image"]
        cfg.cmd = ["sh"]
        cfg.workingDir = "/srv"
        var f = Self.facts(Self.rootless)
        f.environment = ["FROMHOST": "yes"]
        f.envFiles = ["vars": ["B=file", "C=file"]]
        let s = Self.spec {
            $0.envFiles = ["vars"]
            $0.env = [.set("C=flag"), .inherit("FROMHOST"), .inherit("NOT_SET"), .set("A=flag")]
            $0.tty = true
            $0.user = "user"
        }
        let p = try plan(s, f, image: Self.image(cfg))
        // each name where it first came, the last value winning; HOME of the user and TERM for -t after
        #expect(p.env == ["PATH=/opt/bin:/bin", "A=flag", "B=file", "HOSTNAME=0123456789ab", "C=flag", "FROMHOST=yes",
                          "HOME=/home/user", "TERM=xterm"])
        #expect(p.recordedEnv == Array(p.env.dropLast(2)), "exec starts with the container's env, not this terminal's")
        #expect(p.pathEnv == "/opt/bin:/bin")
        #expect(p.cwd == "/srv")
        #expect(try plan(Self.spec { $0.workdir = "/tmp" }, f, image: Self.image(cfg)).cwd == "/tmp")
        #expect(try plan(Self.spec(), f).cwd == "/")
    }

    // MARK: network and /etc files

    @Test func networkChoices() throws {
        let f = Self.facts(Self.rootless)
        // no flag: slirp4netns where usable
        let d = try plan(Self.spec { $0.network = .default }, f)
        #expect(d.network == .slirp4netns && d.notices.isEmpty && d.ownSysfs)
        // none usable: no network, said once
        let n = try plan(Self.spec { $0.network = .default }, Self.facts(Self.rootless, network: Self.noNetwork))
        #expect(n.network == .none)
        #expect(n.notices == ["no network: pasta and slirp4netns need /dev/net/tun, which this user cannot open; use --network host for the host's network"])
        // host: the host's name and /etc/hosts, plus --add-host
        let h = try plan(Self.spec { $0.network = .mode(.host); $0.extraHosts = [HostEntry(name: "db", address: "10.0.0.5")] }, f)
        #expect(h.network == .host && h.hostname == "buildhost" && !h.ownSysfs)
        #expect(h.hostsFile == "127.0.0.1\tlocalhost\n10.0.0.1\tbuildhost\n10.0.0.5\tdb\n")
        #expect(h.resolvConf.contains("nameserver 10.0.0.53"))
        // a private one: its own name and hosts file
        let p = try plan(Self.spec { $0.hostname = "box"; $0.extraHosts = [HostEntry(name: "db", address: "10.0.0.5")] }, f)
        #expect(p.hostname == "box" && p.hostsFile.contains("10.0.0.5\tdb") && p.hostsFile.contains("\tbox"))
        #expect(p.record.network == "none")
    }

    // MARK: mounts and the root

    @Test func mountsInOrder() throws {
        let s = Self.spec {
            $0.mounts = [.bind(source: "/home/me/src", target: "/src", readOnly: true),
                         .volume(name: "cache", target: "/cache", readOnly: false),
                         .tmpfs(target: "/scratch", options: "size=1m"),
                         .layers(lowers: ["/l/a"], target: "/from", scratch: nil),
                         .layers(lowers: ["/l/a", "/l/b"], target: "/from2", scratch: nil),
                         .layers(lowers: ["/l/a"], target: "/rw", scratch: "/tmp/s")]
        }
        let rootless = try plan(s, Self.facts(Self.rootless))
        #expect(rootless.mounts == [
            PlannedMount(kind: .bind(source: "/home/me/src", isFile: nil, makeSource: true), target: "/src", readOnly: true),
            PlannedMount(kind: .bind(source: "/store/volumes/cache/_data", isFile: false, makeSource: true), target: "/cache", readOnly: false),
            PlannedMount(kind: .tmpfs(options: "size=1m"), target: "/scratch", readOnly: false),
            PlannedMount(kind: .bind(source: "/l/a", isFile: false, makeSource: false), target: "/from", readOnly: true),
            PlannedMount(kind: .overlay(data: "lowerdir=/l/a:/l/b,userxattr", scratch: nil), target: "/from2", readOnly: true),
            PlannedMount(kind: .overlay(data: "lowerdir=/l/a,upperdir=/tmp/s/upper,workdir=/tmp/s/work,userxattr", scratch: "/tmp/s"), target: "/rw", readOnly: false),
        ])
        // as root (no user namespace) overlay takes no userxattr
        let root = try plan(s, Self.facts(.root))
        #expect(root.mounts[4].kind == .overlay(data: "lowerdir=/l/a:/l/b", scratch: nil))
    }

    @Test func rootFromImageOrBuildStep() throws {
        let f = Self.facts(Self.rootless)
        let img = try plan(Self.spec { $0.readOnly = true }, f)
        #expect(img.lowers == ["/store/layers/a"] && img.upper == nil && !img.emptyLower && img.readOnly)
        #expect(img.record.manifest == "sha256:manifest" && img.record.imageID == "sha256:config" && img.record.image == "busybox:local")
        let empty = try plan(Self.spec(), f, image: Self.image(lowers: []))
        #expect(empty.emptyLower && empty.lowers == ["/store/containers/x/empty"])
        var cfg = ContainerConfig()
        cfg.user = "user"
        let br = BuildRoot(lowers: ["/l/2", "/l/1"], upper: "/tmp/step/upper", work: "/tmp/step/work", config: cfg)
        var s = RunSpec(source: .buildRoot(br))
        s.command = ["sh", "-c", "true"]
        s.network = .mode(.host)
        let step = try plan(s, f, image: ImageFacts(config: cfg, lowers: br.lowers, read: { $0 == "/etc/passwd" ? PlannerTests.passwd : nil }))
        #expect(step.lowers == ["/l/2", "/l/1"] && step.upper == "/tmp/step/upper" && step.work == "/tmp/step/work")
        #expect(step.user.uid == 1000 && step.record.image == "ctr-build" && step.record.manifest.isEmpty)
    }

    @Test func platformMismatchIsSaid() throws {
        var img = Self.image()
        img.platform = Platform(os: "linux", architecture: Platform.current.architecture == "arm64" ? "amd64" : "arm64")
        let p = try plan(Self.spec(), Self.facts(Self.rootless), image: img)
        #expect(p.notices.contains { $0.hasPrefix("the image's platform") }, "\(p.notices)")
    }

    @Test func confinement() throws {
        let s = Self.spec {
            $0.security.capAdd = ["NET_ADMIN"]
            $0.security.capDrop = ["CHOWN"]
            $0.security.noNewPrivileges = false
            $0.security.seccomp = .unconfined
            $0.rlimits = [RLimit(resource: 7, soft: 1024, hard: 2048)]
            $0.limits = ResourceLimits(memory: 1 << 28)
        }
        let p = try plan(s, Self.facts(Self.rootless))
        #expect(p.capabilities.contains("CAP_NET_ADMIN") && !p.capabilities.contains("CAP_CHOWN"))
        #expect(!p.noNewPrivileges && p.seccomp == .unconfined)
        #expect(p.rlimits == [RLimit(resource: 7, soft: 1024, hard: 2048)] && p.limits.memory == 1 << 28)
        #expect(p.maskedPaths.contains("/proc/kcore") && p.readonlyPaths.contains("/proc/sys"))
    }

    /// The chroot level: chrooted into the step's tree, as root of the CI container with no
    /// user namespace, and without CAP_SYS_CHROOT (which would let it out of the chroot); the
    /// container level runs in `/` and keeps the set it was given.
    @Test(arguments: [IsolationLevel.chroot, .container])
    func treeLevels(_ level: IsolationLevel) throws {
        let s = Self.spec {
            $0.source = .tree(dir: "/store/build-tmp/t/tree-0", config: ContainerConfig())
            $0.isolation = IsolationDecision(level: level)
        }
        let p = try plan(s, Self.facts(.root))
        #expect(p.chrootDir == "/store/build-tmp/t/tree-0")
        #expect(p.capabilities.contains("CAP_SYS_CHROOT") == (level == .container))
        #expect(p.capabilities.contains("CAP_CHOWN") && p.capabilities.contains("CAP_SETUID"))
        #expect(throws: CtrError.self) { try plan(Self.spec { $0.isolation = IsolationDecision(level: level) }, Self.facts(.root)) }
    }
}

extension ImageFacts {
    /// The same image with no entrypoint and no cmd.
    var withoutCommand: ImageFacts {
        var f = self
        f.config.cmd = nil
        f.config.entrypoint = nil
        return f
    }
}

/// `ctr run`'s flags checked for syntax, before anything is pulled or made.
@Suite struct RunFlagsTests {
    struct Bad: Sendable, CustomTestStringConvertible {
        var edit: @Sendable (inout RunFlags) -> Void
        var says: String
        var testDescription: String { says }
    }

    @Test(arguments: [
        Bad(edit: { $0.userns = "bogus" }, says: "--userns bogus: expected host or auto"),
        Bad(edit: { $0.securityOpts = ["no-new-privileges=maybe"] }, says: "--security-opt no-new-privileges=maybe"),
        Bad(edit: { $0.securityOpts = ["apparmor-ish"] }, says: "unknown option"),
        Bad(edit: { $0.name = "a b" }, says: "--name \"a b\""),
        Bad(edit: { $0.env = ["=x"] }, says: "-e \"=x\": a variable needs a name"),
        Bad(edit: { $0.workdir = "rel" }, says: "-w rel: the working directory must be an absolute path"),
        Bad(edit: { $0.volumes = ["/a:relative"] }, says: "-v /a:relative: the target must be an absolute path"),
        Bad(edit: { $0.volumes = ["/a:/b:bogus"] }, says: "-v /a:/b:bogus: unknown option bogus"),
        Bad(edit: { $0.volumes = ["a/../../b:/x"] }, says: "neither an absolute path nor a volume name"),
        Bad(edit: { $0.tmpfs = ["rel"] }, says: "--tmpfs rel"),
        Bad(edit: { $0.ulimits = ["nofile"] }, says: "--ulimit nofile: expected NAME=SOFT[:HARD]"),
        Bad(edit: { $0.ulimits = ["nofile=2048:1024"] }, says: "the soft limit is above the hard one"),
        Bad(edit: { $0.capAdd = ["NOT_A_CAP"] }, says: "NOT_A_CAP"),
        Bad(edit: { $0.network = "container:x" }, says: "--network container:x"),
        Bad(edit: { $0.addHosts = ["nocolon"] }, says: "--add-host nocolon"),
        Bad(edit: { $0.memory = "lots" }, says: "--memory"),
    ])
    func refused(_ b: Bad) {
        var f = RunFlags(image: "busybox")
        b.edit(&f)
        do {
            _ = try f.spec(cwd: "/work")
            Issue.record("accepted: \(b.says)")
        } catch {
            #expect("\(error)".contains(b.says), "\(error)")
        }
    }

    @Test func typedValues() throws {
        var f = RunFlags(image: "busybox")
        f.command = ["--", "echo", "hi"]
        f.volumes = ["./src:/src:ro", "data:/data", "/abs/x/../y:/y"]
        f.tmpfs = ["/t"]
        f.env = ["A=1", "B"]
        f.network = "private"
        f.ulimits = ["nofile=1024:2048", "core=unlimited"]
        f.securityOpts = ["seccomp=unconfined", "no-new-privileges=false", "label=disable"]
        f.userns = "auto:size=65536"
        f.addHosts = ["db:10.0.0.5"]
        let s = try f.spec(cwd: "/work")
        #expect(s.command == ["echo", "hi"])
        #expect(s.mounts == [.bind(source: "/work/src", target: "/src", readOnly: true), .volume(name: "data", target: "/data", readOnly: false),
                             .bind(source: "/abs/y", target: "/y", readOnly: false), .tmpfs(target: "/t", options: "mode=1777")])
        #expect(s.env == [.set("A=1"), .inherit("B")])
        #expect(s.network == .privateNetwork(asked: "private"))
        #expect(s.rlimits == [RLimit(resource: 7, soft: 1024, hard: 2048), RLimit(resource: 4, soft: .max, hard: .max)])
        #expect(s.security.seccomp == .unconfined && !s.security.noNewPrivileges)
        #expect(s.userns == .auto)
        #expect(s.extraHosts == [HostEntry(name: "db", address: "10.0.0.5")])
    }
}
