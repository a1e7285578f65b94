import CSysShims
import Foundation

/// An error from the C shim or a system call: the stage that failed, errno, and a one-line
/// message that names the culprit.
public struct SysError: Error, CustomStringConvertible, Sendable {
    public let stage: String
    public let errno: Int32
    public let message: String

    public init(stage: String, errno: Int32 = 0, message: String) {
        self.stage = stage
        self.errno = errno
        self.message = message
    }

    /// From a `csys_error` filled by the shim.
    public init(_ e: csys_error, fallback: String = "failed") {
        var e = e
        let stage = withUnsafeBytes(of: &e.stage) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let message = withUnsafeBytes(of: &e.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        self.init(stage: stage.isEmpty ? "unknown" : stage, errno: e.err, message: message.isEmpty ? fallback : message)
    }

    /// From the current `errno` after a failed call.
    public static func errno(_ stage: String, _ what: String) -> SysError {
        let e = Glibc.errno
        return SysError(stage: stage, errno: e, message: "\(what): \(String(cString: strerror(e)))")
    }

    public var description: String { message }
}

/// Retry a call while it fails with EINTR; throw `SysError` on any other failure.
@discardableResult
public func valueOrErrno<T: BinaryInteger>(_ stage: String, _ what: @autoclosure () -> String, _ call: () -> T) throws(SysError) -> T {
    while true {
        let r = call()
        if r >= 0 { return r }
        if Glibc.errno == EINTR { continue }
        throw SysError.errno(stage, what())
    }
}
