// ctr's one error type. Every library throws it; the CLI turns its code into an exit status in
// one place (Sources/ctr/ExitMapping.swift). The contract:
// - `description` is the one line the user sees ("Error: " in front): it names the culprit.
//   Where a file and line are known (a Dockerfile, registries.conf), it starts "FILE:LINE: ".
// - `code` is what a caller acts on; nothing branches on message text or stage strings.
// - `stage` and `errno` say which system call or step of the C shim failed (crun's
//   {stage, errno, message}); HostOS makes them from a `csys_error`.
// - `cause` is the error this one wraps (its text is already part of the message).

/// An error of ctr: a code to act on, a one-line message, and where it came from.
public struct CtrError: Error, CustomStringConvertible, Sendable {
    /// What a caller (and the exit status) acts on.
    public enum Code: Sendable, Hashable {
        /// A flag, argument or setting ctr cannot use.
        case usage
        /// What was named is not there: an image, a container, a file, a program.
        case notFound
        /// The state forbids it: a name in use, an image a container holds, a container that
        /// is not running.
        case conflict
        /// Bad input: an image, archive, layer, Dockerfile, config file or profile.
        case invalidInput
        /// A registry refused: its HTTP status and its error code ("MANIFEST_UNKNOWN") when given.
        case registry(status: Int?, code: String?)
        /// Credentials are missing or refused, or where they are kept cannot be used.
        case authentication
        /// The network: a name that does not resolve, a refused connection, TLS, a stall, a cut.
        case transport(Transport)
        /// A system call or the C shim failed (`stage`, `errno`).
        case system
        /// This host, kernel or user cannot do it.
        case unsupported
        /// The container's command: it ended with this status, or could not be executed
        /// (126: not executable, 127: not found).
        case container(status: Int32)
        /// Stopped by a signal (Ctrl-C, SIGTERM, SIGHUP).
        case interrupted(signal: Int32)
        /// Something ctr itself got wrong.
        case `internal`
    }

    /// A failure below HTTP: the exchange did not complete.
    public struct Transport: Sendable, Hashable {
        public enum Kind: Sendable, Hashable { case resolve, connect, certificate, tls, timeout, cut, tooLarge, write, other }
        public var kind: Kind
        /// Body bytes that arrived before it failed.
        public var received: UInt64
        /// Given up because nothing moved for as long as the exchange may wait.
        public var stalled: Bool
        /// When body bytes last moved (monotonic seconds), if any did.
        public var lastData: Double?

        public init(_ kind: Kind, received: UInt64 = 0, stalled: Bool = false, lastData: Double? = nil) {
            self.kind = kind
            self.received = received
            self.stalled = stalled
            self.lastData = lastData
        }

        /// Worth another attempt: the exchange timed out or was cut.
        public var transient: Bool { kind == .timeout || kind == .cut }
    }

    public var code: Code
    /// One line that names the culprit (without `file:line`).
    public var message: String
    /// The step that failed ("mount", "exec", "write", …), for system errors.
    public var stage: String?
    public var errno: Int32?
    /// The file the input came from (a Dockerfile, registries.conf), and the 1-based line.
    public var file: String?
    public var line: Int?
    /// Where in a document the bad value is (a JSON key path such as "layers[2].digest"; "" for
    /// the top level).
    public var keyPath: String?
    /// What was wrong, without the culprit's name ("bad hex", "not found on PATH (…)"), for a
    /// caller that names the culprit its own way.
    public var reason: String?
    /// The error this one wraps.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, stage: String? = nil, errno: Int32? = nil, file: String? = nil,
                line: Int? = nil, keyPath: String? = nil, reason: String? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.stage = stage
        self.errno = errno
        self.file = file
        self.line = line
        self.keyPath = keyPath
        self.reason = reason
        self.cause = cause
    }

    public var description: String {
        guard let file else { return message }
        return line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)"
    }

    /// The chain of causes, this error first.
    public var chain: [any Error] {
        var out: [any Error] = [self]
        var next = cause
        while let e = next {
            out.append(e)
            next = (e as? CtrError)?.cause
        }
        return out
    }
}

extension CtrError: Equatable {
    /// Equal when they say the same (the cause is not compared).
    public static func == (a: CtrError, b: CtrError) -> Bool {
        a.code == b.code && a.message == b.message && a.stage == b.stage && a.errno == b.errno && a.file == b.file
            && a.line == b.line && a.keyPath == b.keyPath && a.reason == b.reason
    }
}

// MARK: constructors for the common cases

extension CtrError {
    public static func usage(_ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.usage, message, cause: cause)
    }

    public static func notFound(_ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.notFound, message, cause: cause)
    }

    public static func conflict(_ message: String) -> CtrError {
        CtrError(.conflict, message)
    }

    public static func invalid(_ message: String, reason: String? = nil, cause: (any Error)? = nil) -> CtrError {
        CtrError(.invalidInput, message, reason: reason, cause: cause)
    }

    public static func unsupported(_ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.unsupported, message, cause: cause)
    }

    public static func authentication(_ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.authentication, message, cause: cause)
    }

    public static func `internal`(_ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.internal, message, cause: cause)
    }

    /// A system call or step of the C shim: `stage` names it, `errno` says why (0: none).
    public static func system(_ stage: String, errno: Int32 = 0, _ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.system, message, stage: stage, errno: errno, cause: cause)
    }

    /// Bad input at `file:line` (a Dockerfile, a TOML file); `line` nil when it is the whole file.
    public static func at(file: String, line: Int? = nil, _ message: String, cause: (any Error)? = nil) -> CtrError {
        CtrError(.invalidInput, message, file: file, line: line, cause: cause)
    }

    /// A transport failure: `detail` is libcurl's (or our) one line.
    public static func transport(_ kind: Transport.Kind, _ detail: String, received: UInt64 = 0) -> CtrError {
        CtrError(.transport(Transport(kind, received: received)), detail)
    }

    /// `message` (which says what `cause` says), wrapping `cause`; its code is `cause`'s unless
    /// `code` is given.
    public static func wrapping(_ cause: any Error, _ message: String, code: Code? = nil) -> CtrError {
        CtrError(code ?? .of(cause), message, cause: cause)
    }

    /// The same error with `context: ` in front of its message, wrapping the original.
    public func prefixed(_ context: String) -> CtrError {
        var e = self
        e.message = "\(context): \(description)"
        e.file = nil
        e.line = nil
        e.cause = self
        return e
    }

    /// The transport failure's details, when it is one.
    public var transport: Transport? {
        if case .transport(let t) = code { return t }
        return nil
    }
}

extension CtrError.Code {
    /// The code of any error: a `CtrError`'s own, `.internal` for one that is not ours.
    public static func of(_ error: any Error) -> CtrError.Code {
        (error as? CtrError)?.code ?? .internal
    }
}
