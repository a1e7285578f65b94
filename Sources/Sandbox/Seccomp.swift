import CSysShims
import Errors
import Foundation
import HostOS

// Seccomp for containers: the Docker/podman/OCI-style JSON profile, podman's default profile
// as data, and compiling a profile (for a capability set, this architecture and this kernel)
// into a BPF program with libseccomp. The program is installed in the child with
// `csys_seccomp_install` after no_new_privs is set.

extension CtrError {
    /// A profile that cannot be read, parsed or compiled (`.invalidInput`). The message is one
    /// line and names the file and the offending entry.
    static func seccomp(_ message: String) -> CtrError {
        .invalid(message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " "))
    }
}

/// What happens to a matching syscall (`SCMP_ACT_*`).
public enum SeccompAction: String, Codable, Sendable, CaseIterable {
    case allow = "SCMP_ACT_ALLOW"
    case errno = "SCMP_ACT_ERRNO"
    case kill = "SCMP_ACT_KILL"
    case killThread = "SCMP_ACT_KILL_THREAD"
    case killProcess = "SCMP_ACT_KILL_PROCESS"
    case trap = "SCMP_ACT_TRAP"
    case log = "SCMP_ACT_LOG"
    case trace = "SCMP_ACT_TRACE"

    /// libseccomp's encoding (`SCMP_ACT_*` macros). `ret` is the errno for ERRNO and the
    /// message for TRACE (EPERM when absent, as runc does).
    public func encoded(ret: UInt32?) -> UInt32 {
        let r = (ret ?? UInt32(EPERM)) & 0xffff
        switch self {
        case .allow: return 0x7fff_0000
        case .errno: return 0x0005_0000 | r
        case .kill, .killThread: return 0x0000_0000
        case .killProcess: return 0x8000_0000
        case .trap: return 0x0003_0000
        case .log: return 0x7ffc_0000
        case .trace: return 0x7ff0_0000 | r
        }
    }
}

/// An argument comparison (`SCMP_CMP_*`).
public enum SeccompOperator: String, Codable, Sendable, CaseIterable {
    case notEqual = "SCMP_CMP_NE"
    case lessThan = "SCMP_CMP_LT"
    case lessOrEqual = "SCMP_CMP_LE"
    case equalTo = "SCMP_CMP_EQ"
    case greaterOrEqual = "SCMP_CMP_GE"
    case greaterThan = "SCMP_CMP_GT"
    case maskedEqual = "SCMP_CMP_MASKED_EQ"

    /// libseccomp's `enum scmp_compare` value.
    public var cValue: Int32 {
        switch self {
        case .notEqual: return 1
        case .lessThan: return 2
        case .lessOrEqual: return 3
        case .equalTo: return 4
        case .greaterOrEqual: return 5
        case .greaterThan: return 6
        case .maskedEqual: return 7
        }
    }
}

/// A Docker/podman/OCI-style seccomp profile (`--security-opt seccomp=PROFILE.json`).
public struct SeccompProfile: Codable, Sendable, Equatable {
    public var defaultAction: SeccompAction
    /// The errno of a default ERRNO action (EPERM when absent).
    public var defaultErrnoRet: UInt32?
    /// Accepted and validated; the filter always covers the native architecture (and on
    /// x86_64 also x86 and x32), as podman's default arch map does.
    public var architectures: [String]?
    public var archMap: [ArchMap]?
    public var syscalls: [Syscall]

    public struct ArchMap: Codable, Sendable, Equatable {
        public var architecture: String
        public var subArchitectures: [String]?
        public init(architecture: String, subArchitectures: [String]? = nil) {
            self.architecture = architecture
            self.subArchitectures = subArchitectures
        }
    }

    /// Conditions on an entry: every listed capability present (includes) or any present
    /// (excludes); the architecture listed; the kernel at least `minKernel` ("5.8").
    public struct Filter: Codable, Sendable, Equatable {
        public var caps: [String]?
        public var arches: [String]?
        public var minKernel: String?
        public init(caps: [String]? = nil, arches: [String]? = nil, minKernel: String? = nil) {
            self.caps = caps
            self.arches = arches
            self.minKernel = minKernel
        }
    }

    public struct Arg: Codable, Sendable, Equatable {
        public var index: UInt32
        /// For SCMP_CMP_MASKED_EQ: the mask.
        public var value: UInt64
        /// For SCMP_CMP_MASKED_EQ: the value `arg & mask` must equal.
        public var valueTwo: UInt64
        public var op: SeccompOperator
        public init(index: UInt32, value: UInt64, valueTwo: UInt64 = 0, op: SeccompOperator) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }
    }

    public struct Syscall: Codable, Sendable, Equatable {
        public var names: [String]
        public var action: SeccompAction
        public var errnoRet: UInt32?
        public var args: [Arg]
        public var includes: Filter
        public var excludes: Filter
        public var comment: String?

        public init(names: [String], action: SeccompAction, errnoRet: UInt32? = nil, args: [Arg] = [],
                    includes: Filter = Filter(), excludes: Filter = Filter(), comment: String? = nil) {
            self.names = names
            self.action = action
            self.errnoRet = errnoRet
            self.args = args
            self.includes = includes
            self.excludes = excludes
            self.comment = comment
        }

        enum CodingKeys: String, CodingKey {
            case names, action, errnoRet, args, includes, excludes, comment
        }
        enum DecodeKeys: String, CodingKey {
            case name, names, action, errnoRet, args, includes, excludes, comment
        }
        struct RawArg: Decodable {
            var index: UInt32
            var value: UInt64?
            var valueTwo: UInt64?
            var op: String
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: DecodeKeys.self)
            let position = decoder.codingPath.last?.intValue.map { "syscalls[\($0)]" } ?? "syscall entry"
            let name = try c.decodeIfPresent(String.self, forKey: .name)
            let names = try c.decodeIfPresent([String].self, forKey: .names)
            if let name, let names, !names.isEmpty {
                throw CtrError.seccomp("\(position) (\(name)): both \"name\" and \"names\" are given; use one")
            }
            let all = names ?? name.map { [$0] } ?? []
            let entry = all.isEmpty ? position : "\(position) (\(SeccompProfile.shortList(all)))"
            guard !all.isEmpty, all.allSatisfy({ !$0.isEmpty }) else {
                throw CtrError.seccomp("\(entry): no syscall names")
            }
            let actionName = try c.decode(String.self, forKey: .action)
            guard let action = SeccompAction(rawValue: actionName) else {
                throw CtrError.seccomp("\(entry): unknown action \"\(actionName)\" (expected one of \(SeccompProfile.actionList))")
            }
            let raw = try c.decodeIfPresent([RawArg].self, forKey: .args) ?? []
            var args: [Arg] = []
            for (i, a) in raw.enumerated() {
                guard let op = SeccompOperator(rawValue: a.op) else {
                    throw CtrError.seccomp("\(entry): args[\(i)]: unknown op \"\(a.op)\" (expected one of \(SeccompOperator.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                guard a.index <= 5 else {
                    throw CtrError.seccomp("\(entry): args[\(i)]: index \(a.index) is out of range (0-5)")
                }
                args.append(Arg(index: a.index, value: a.value ?? 0, valueTwo: a.valueTwo ?? 0, op: op))
            }
            let includes = try c.decodeIfPresent(Filter.self, forKey: .includes) ?? Filter()
            let excludes = try c.decodeIfPresent(Filter.self, forKey: .excludes) ?? Filter()
            for (label, f) in [("includes", includes), ("excludes", excludes)] {
                if let k = f.minKernel, KernelVersion(k) == nil {
                    throw CtrError.seccomp("\(entry): \(label).minKernel \"\(k)\" is not a kernel version like \"5.8\"")
                }
            }
            self.init(names: all, action: action, errnoRet: try c.decodeIfPresent(UInt32.self, forKey: .errnoRet),
                      args: args, includes: includes, excludes: excludes,
                      comment: try c.decodeIfPresent(String.self, forKey: .comment))
        }
    }

    public init(defaultAction: SeccompAction, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
                archMap: [ArchMap]? = nil, syscalls: [Syscall]) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.archMap = archMap
        self.syscalls = syscalls
    }

    enum CodingKeys: String, CodingKey {
        case defaultAction, defaultErrnoRet, architectures, archMap, syscalls
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let actionName = try c.decodeIfPresent(String.self, forKey: .defaultAction) else {
            throw CtrError.seccomp("defaultAction is missing")
        }
        guard let action = SeccompAction(rawValue: actionName) else {
            throw CtrError.seccomp("defaultAction: unknown action \"\(actionName)\" (expected one of \(SeccompProfile.actionList))")
        }
        let architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        let archMap = try c.decodeIfPresent([ArchMap].self, forKey: .archMap)
        if let architectures, let archMap, !architectures.isEmpty, !archMap.isEmpty {
            throw CtrError.seccomp("both \"architectures\" and \"archMap\" are given; use one")
        }
        let arches = (architectures ?? []) + (archMap ?? []).flatMap { [$0.architecture] + ($0.subArchitectures ?? []) }
        for a in arches where !SeccompProfile.knownArchitectures.contains(a) {
            throw CtrError.seccomp("unknown architecture \"\(a)\" (expected SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)")
        }
        self.init(defaultAction: action, defaultErrnoRet: try c.decodeIfPresent(UInt32.self, forKey: .defaultErrnoRet),
                  architectures: architectures, archMap: archMap,
                  syscalls: try c.decodeIfPresent([Syscall].self, forKey: .syscalls) ?? [])
    }

    static let actionList = SeccompAction.allCases.map(\.rawValue).joined(separator: ", ")

    static let knownArchitectures: Set<String> = [
        "SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    ]

    static func shortList(_ names: [String]) -> String {
        names.count <= 3 ? names.joined(separator: ", ") : names.prefix(3).joined(separator: ", ") + ", ..."
    }
}

// MARK: - Loading

extension SeccompProfile {
    /// Reads a JSON profile. Errors are one line: "seccomp profile PATH: what is wrong".
    public static func load(path: String) throws -> SeccompProfile {
        let data: Data
        do {
            data = try readFile(path)
        } catch let e as CtrError {
            throw CtrError.seccomp("seccomp profile \(path): \(e.message)")
        }
        do {
            return try decode(data)
        } catch let e as CtrError {
            throw CtrError.seccomp("seccomp profile \(path): \(e.message)")
        }
    }

    /// Parses a JSON profile; errors are one line and name the offending entry.
    public static func decode(_ data: Data) throws -> SeccompProfile {
        do {
            return try JSONDecoder().decode(SeccompProfile.self, from: data)
        } catch let e as CtrError {
            throw e
        } catch let e as DecodingError {
            if case .dataCorrupted(let ctx) = e, ctx.codingPath.isEmpty, let syntax = syntaxError(data) {
                throw CtrError.seccomp("invalid JSON: \(syntax)")
            }
            throw CtrError.seccomp(describe(e))
        } catch {
            throw CtrError.seccomp("invalid profile: \(error)")
        }
    }

    private static func readFile(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CtrError.seccomp("cannot open: \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            return try handle.readToEnd() ?? Data()
        } catch {
            throw CtrError.seccomp("cannot read: \(error.localizedDescription)")
        }
    }

    /// Where the JSON text is malformed ("Invalid value at line 1, column 9"),
    /// or nil if it parses (JSONDecoder says only "not valid JSON").
    private static func syntaxError(_ data: Data) -> String? {
        if data.isEmpty { return "the file is empty" }
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return nil
        } catch {
            let text = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
            guard let r = text.range(of: "character "),
                  let offset = Int(text[r.upperBound...].prefix(while: \.isNumber)) else { return text }
            let head = data.prefix(offset)
            let line = head.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            let column = offset - (head.lastIndex(of: UInt8(ascii: "\n")).map { $0 - data.startIndex + 1 } ?? 0) + 1
            let what = text.range(of: " around character").map { String(text[..<$0.lowerBound]) } ?? text
            return "\(what) at line \(line), column \(column)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s.isEmpty ? "top level" : s
    }

    private static func describe(_ e: DecodingError) -> String {
        switch e {
        case .dataCorrupted(let ctx):
            if ctx.codingPath.isEmpty {
                let detail = ctx.underlyingError.map { underlying -> String in
                    let ns = underlying as NSError
                    return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(underlying)"
                } ?? ctx.debugDescription
                return "invalid JSON: \(detail)"
            }
            return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        case .keyNotFound(let key, let ctx):
            return "\(path(ctx.codingPath + [key])): missing"
        case .typeMismatch(let type, let ctx):
            return "\(path(ctx.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let ctx):
            return "\(path(ctx.codingPath)): expected \(typeName(type)), found null"
        @unknown default:
            return "invalid profile: \(e)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is UInt32.Type, is UInt64.Type, is Int.Type: return "a non-negative integer"
        case is [String].Type: return "a list of strings"
        default:
            let n = "\(type)"
            return n.hasPrefix("Array") ? "a list" : (n.hasPrefix("Dictionary") ? "an object" : "a \(n)")
        }
    }
}

// MARK: - Compiling

/// A kernel version "major.minor[.patch]".
struct KernelVersion: Comparable, Sendable {
    var parts: [Int]
    init?(_ s: String) {
        // "6.18.0-1-amd64" -> [6, 18, 0]
        var parts: [Int] = []
        for piece in s.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false) {
            let digits = piece.prefix(while: \.isNumber)
            guard let n = Int(digits) else { break }
            parts.append(n)
            if digits.count != piece.count { break }
        }
        guard parts.count >= 2 || (parts.count == 1 && !s.contains(".")) else { return nil }
        self.parts = parts
    }
    static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        for i in 0..<max(a.parts.count, b.parts.count) {
            let x = i < a.parts.count ? a.parts[i] : 0
            let y = i < b.parts.count ? b.parts[i] : 0
            if x != y { return x < y }
        }
        return false
    }
    static func == (a: KernelVersion, b: KernelVersion) -> Bool { !(a < b) && !(b < a) }
}

/// Where a profile is compiled for: architecture names (as profiles spell them) and kernel.
struct SeccompHost: Sendable {
    /// e.g. ["amd64", "x86_64", "SCMP_ARCH_X86_64"]
    var archNames: Set<String>
    var kernel: KernelVersion

    static let current: SeccompHost = {
        var u = utsname()
        _ = uname(&u)
        let machine = withUnsafeBytes(of: &u.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let release = withUnsafeBytes(of: &u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return SeccompHost(archNames: archNames(machine: machine), kernel: KernelVersion(release) ?? KernelVersion("0.0")!)
    }()

    static func archNames(machine: String) -> Set<String> {
        switch machine {
        case "x86_64": return ["amd64", "x86_64", "SCMP_ARCH_X86_64"]
        case "aarch64", "arm64": return ["arm64", "aarch64", "SCMP_ARCH_AARCH64"]
        case "i386", "i486", "i586", "i686": return ["x86", "386", "i386", "SCMP_ARCH_X86"]
        case "ppc64le": return ["ppc64le", "SCMP_ARCH_PPC64LE"]
        case "s390x": return ["s390x", "SCMP_ARCH_S390X"]
        case "riscv64": return ["riscv64", "SCMP_ARCH_RISCV64"]
        default:
            if machine.hasPrefix("arm") { return ["arm", machine, "SCMP_ARCH_ARM"] }
            return [machine]
        }
    }
}

/// One rule as handed to libseccomp.
struct SeccompRule: Sendable, Equatable {
    var name: String
    var action: UInt32
    var args: [SeccompProfile.Arg]
}

extension SeccompProfile {
    /// Compiles the profile into a BPF program (an array of `struct sock_filter`) for a
    /// process with these effective capabilities ("CAP_SYS_ADMIN", ...), on this
    /// architecture and kernel. Install it in the child with `csys_seccomp_install` after
    /// setting no_new_privs.
    public func compile(capabilities: Set<String>) throws -> [UInt8] {
        try compile(capabilities: capabilities, host: .current)
    }

    /// The encoded default action.
    var encodedDefaultAction: UInt32 { defaultAction.encoded(ret: defaultErrnoRet) }

    /// The entries that apply, in order, flattened to one rule per syscall name, as podman
    /// (containers/common setupSeccomp) and runc do it.
    func rules(capabilities: Set<String>, host: SeccompHost) -> [SeccompRule] {
        let caps = Set(capabilities.map(SeccompProfile.normalizeCap))
        var out: [SeccompRule] = []
        for entry in syscalls {
            let ex = entry.excludes, inc = entry.includes
            if let a = ex.arches, !a.isEmpty, a.contains(where: host.archNames.contains) { continue }
            if let c = ex.caps, c.contains(where: { caps.contains(SeccompProfile.normalizeCap($0)) }) { continue }
            if let k = ex.minKernel.flatMap(KernelVersion.init), host.kernel >= k { continue }
            if let a = inc.arches, !a.isEmpty, !a.contains(where: host.archNames.contains) { continue }
            if let c = inc.caps, !c.allSatisfy({ caps.contains(SeccompProfile.normalizeCap($0)) }) { continue }
            if let k = inc.minKernel.flatMap(KernelVersion.init), host.kernel < k { continue }

            let action = entry.action.encoded(ret: entry.errnoRet)
            // libseccomp takes one comparison per argument in a rule; several on the same
            // argument become separate rules (either one matching), as runc does.
            let indexes = entry.args.map(\.index)
            let argSets: [[Arg]] = Set(indexes).count == indexes.count ? [entry.args] : entry.args.map { [$0] }
            for name in entry.names {
                for args in argSets { out.append(SeccompRule(name: name, action: action, args: args)) }
            }
        }
        return out
    }

    func compile(capabilities: Set<String>, host: SeccompHost) throws -> [UInt8] {
        let rules = rules(capabilities: capabilities, host: host)
        let cNames = rules.map { strdup($0.name)! }
        defer { cNames.forEach { free($0) } }
        let cArgs: [UnsafeMutablePointer<csys_seccomp_arg>?] = rules.map { r in
            guard !r.args.isEmpty else { return nil }
            let p = UnsafeMutablePointer<csys_seccomp_arg>.allocate(capacity: r.args.count)
            for (i, a) in r.args.enumerated() {
                p[i] = csys_seccomp_arg(index: a.index, op: a.op.cValue, value: a.value, value_two: a.valueTwo)
            }
            return p
        }
        defer { cArgs.forEach { $0?.deallocate() } }
        var cRules: [csys_seccomp_rule] = []
        cRules.reserveCapacity(rules.count)
        for i in rules.indices {
            cRules.append(csys_seccomp_rule(name: UnsafePointer(cNames[i]), action: rules[i].action,
                                            args: UnsafePointer(cArgs[i]), nargs: Int32(rules[i].args.count)))
        }
        var err = csys_error()
        var bpf: UnsafeMutablePointer<UInt8>? = nil
        var len = 0
        let rc = cRules.withUnsafeBufferPointer {
            csys_seccomp_compile(encodedDefaultAction, $0.baseAddress, Int32($0.count), &bpf, &len, &err)
        }
        guard rc == 0, let bpf else {
            throw CtrError.seccomp("compiling the seccomp profile: \(CtrError(err, fallback: "libseccomp failed").message)")
        }
        defer { csys_free(bpf) }
        return Array(UnsafeBufferPointer(start: bpf, count: len))
    }

    /// "sys_admin", "SYS_ADMIN", "CAP_SYS_ADMIN" -> "CAP_SYS_ADMIN"
    static func normalizeCap(_ c: String) -> String {
        let u = c.uppercased()
        return u.hasPrefix("CAP_") ? u : "CAP_" + u
    }

    /// Every distinct syscall name the profile mentions.
    public var syscallNames: Set<String> { Set(syscalls.flatMap(\.names)) }
}

// MARK: - podman's default profile

extension SeccompProfile {
    /// The default profile of podman (containers/common `pkg/seccomp`, now in
    /// container-libs `common/pkg/seccomp`: `DefaultProfile()` and the `seccomp.json`
    /// generated from it), written out as data. Unlisted syscalls fail with ENOSYS (38), so
    /// that callers fall back to older calls; the explicit denials fail with EPERM.
    public static let podmanDefault: SeccompProfile = {
        typealias S = Syscall
        let eperm: UInt32 = 1, einval: UInt32 = 22, enosys: UInt32 = 38
        let afNetlink: UInt64 = 16, afAlg: UInt64 = 38, afVsock: UInt64 = 40, netlinkAudit: UInt64 = 9

        /// Allowed with `cap`, EPERM without it.
        func gated(_ names: [String], _ cap: String) -> [S] {
            [S(names: names, action: .allow, includes: Filter(caps: [cap])),
             S(names: names, action: .errno, errnoRet: eperm, excludes: Filter(caps: [cap]))]
        }
        func personality(_ v: UInt64) -> S {
            S(names: ["personality"], action: .allow, args: [Arg(index: 0, value: v, op: .equalTo)])
        }

        var calls: [S] = [
            S(names: podmanDenied, action: .errno, errnoRet: eperm),
            S(names: podmanAllowed, action: .allow),
            personality(0x0), // PER_LINUX
            personality(0x0008), // PER_LINUX32
            personality(0x20000), // UNAME26
            personality(0x20008), // UNAME26 | PER_LINUX32
            personality(0xffff_ffff), // query
            S(names: ["sync_file_range2", "swapcontext"], action: .allow, includes: Filter(arches: ["ppc64le"])),
            S(names: ["arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"],
              action: .allow, includes: Filter(arches: ["arm", "arm64"])),
            S(names: ["arch_prctl"], action: .allow, includes: Filter(arches: ["amd64", "x32"])),
            S(names: ["modify_ldt"], action: .allow, includes: Filter(arches: ["amd64", "x32", "x86"])),
            S(names: ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"], action: .allow,
              includes: Filter(arches: ["s390", "s390x"])),
            S(names: ["riscv_flush_icache", "riscv_hwprobe"], action: .allow, includes: Filter(arches: ["riscv64"])),
        ]
        calls += gated(["open_by_handle_at"], "CAP_DAC_READ_SEARCH")
        calls += [
            S(names: ["bpf", "lookup_dcookie", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
                      "sethostname", "setns"],
              action: .allow, includes: Filter(caps: ["CAP_SYS_ADMIN"])),
            S(names: ["lookup_dcookie", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns"],
              action: .errno, errnoRet: eperm, excludes: Filter(caps: ["CAP_SYS_ADMIN"])),
        ]
        calls += gated(["chroot"], "CAP_SYS_CHROOT")
        calls += gated(["delete_module", "finit_module", "init_module", "query_module"], "CAP_SYS_MODULE")
        calls += gated(["acct"], "CAP_SYS_PACCT")
        calls += gated(["kcmp", "process_madvise"], "CAP_SYS_PTRACE")
        calls += gated(["ioperm", "iopl"], "CAP_SYS_RAWIO")
        calls += gated(["clock_settime", "clock_settime64", "settimeofday", "stime"], "CAP_SYS_TIME")
        calls += gated(["vhangup"], "CAP_SYS_TTY_CONFIG")
        calls += [
            // socket: no AF_VSOCK, no AF_ALG; netlink audit only with CAP_AUDIT_WRITE.
            S(names: ["socket"], action: .errno, errnoRet: eperm, args: [Arg(index: 0, value: afVsock, op: .equalTo)]),
            S(names: ["socket"], action: .errno, errnoRet: eperm, args: [Arg(index: 0, value: afAlg, op: .equalTo)]),
            S(names: ["socket"], action: .errno, errnoRet: einval,
              args: [Arg(index: 0, value: afNetlink, op: .equalTo), Arg(index: 2, value: netlinkAudit, op: .equalTo)],
              excludes: Filter(caps: ["CAP_AUDIT_WRITE"])),
            S(names: ["socket"], action: .allow,
              args: [Arg(index: 0, value: afNetlink, op: .equalTo), Arg(index: 2, value: netlinkAudit, op: .notEqual)],
              excludes: Filter(caps: ["CAP_AUDIT_WRITE"])),
            S(names: ["socket"], action: .allow, args: [Arg(index: 0, value: afNetlink, op: .notEqual)],
              excludes: Filter(caps: ["CAP_AUDIT_WRITE"])),
            S(names: ["socket"], action: .allow, args: [Arg(index: 0, value: afVsock, op: .notEqual)],
              includes: Filter(caps: ["CAP_AUDIT_WRITE"])),
            // bpf and perf_event_open: with CAP_SYS_ADMIN (above) or their own capability.
            S(names: ["bpf"], action: .errno, errnoRet: eperm, excludes: Filter(caps: ["CAP_SYS_ADMIN", "CAP_BPF"])),
            S(names: ["bpf"], action: .allow, includes: Filter(caps: ["CAP_BPF"])),
            S(names: ["perf_event_open"], action: .errno, errnoRet: eperm,
              excludes: Filter(caps: ["CAP_SYS_ADMIN", "CAP_PERFMON"])),
            S(names: ["perf_event_open"], action: .allow, includes: Filter(caps: ["CAP_PERFMON"])),
        ]
        return SeccompProfile(
            defaultAction: .errno, defaultErrnoRet: enosys,
            archMap: [
                ArchMap(architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
                ArchMap(architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"]),
                ArchMap(architecture: "SCMP_ARCH_MIPS64", subArchitectures: ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
                ArchMap(architecture: "SCMP_ARCH_MIPS64N32", subArchitectures: ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]),
                ArchMap(architecture: "SCMP_ARCH_MIPSEL64", subArchitectures: ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]),
                ArchMap(architecture: "SCMP_ARCH_MIPSEL64N32", subArchitectures: ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]),
                ArchMap(architecture: "SCMP_ARCH_S390X", subArchitectures: ["SCMP_ARCH_S390"]),
            ],
            syscalls: calls)
    }()

    /// Denied with EPERM whatever the capabilities.
    static let podmanDenied: [String] = [
        "bdflush", "cachestat", "io_pgetevents", "io_pgetevents_time64", "kexec_file_load", "kexec_load",
        "map_shadow_stack", "migrate_pages", "move_pages", "nfsservctl", "nice", "oldfstat", "oldlstat",
        "oldolduname", "oldstat", "olduname", "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
        "sgetmask", "ssetmask", "swapoff", "swapon", "syscall", "sysfs", "uselib", "userfaultfd", "ustat",
        "vm86", "vm86old", "vmsplice",
    ]

    /// Allowed whatever the capabilities (the kernel still checks them).
    static let podmanAllowed: [String] = [
        "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
        "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
        "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
        "clock_nanosleep_time64", "clone", "clone3", "close", "close_range", "connect", "copy_file_range",
        "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
        "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
        "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
        "fallocate", "fanotify_init", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
        "flock", "fork", "fremovexattr", "fsconfig", "fsetxattr", "fsmount", "fsopen", "fspick", "fstat",
        "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
        "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
        "get_mempolicy", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
        "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
        "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
        "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
        "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid",
        "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
        "io_cancel", "io_destroy", "io_getevents", "io_setup", "io_submit", "ioctl", "ioprio_get",
        "ioprio_set", "ipc", "keyctl", "kill", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
        "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
        "mbind", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
        "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mount", "mount_setattr", "move_mount",
        "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
        "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
        "newfstatat", "open", "open_tree", "openat", "openat2", "pause", "pidfd_getfd", "pidfd_open",
        "pidfd_send_signal", "pipe", "pipe2", "pivot_root", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
        "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6", "pselect6_time64",
        "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
        "readv", "reboot", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
        "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir",
        "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
        "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
        "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
        "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
        "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
        "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_mempolicy", "set_robust_list",
        "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
        "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setns", "setpgid", "setpriority",
        "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
        "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat",
        "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signal", "signalfd", "signalfd4",
        "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
        "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
        "syslog", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
        "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
        "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill",
        "truncate", "truncate64", "ugetrlimit", "umask", "umount", "umount2", "uname", "unlink",
        "unlinkat", "unshare", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "wait4",
        "waitid", "waitpid", "write", "writev",
    ]
}
