import CSysShims
import Errors
import Foundation

extension CtrError {
    /// From a `csys_error` filled by the shim: code `.system` with its stage and errno, or
    /// `.container(126 or 127)` when it says the container's command could not be executed
    /// (not executable, or not found), as docker reports them.
    public init(_ e: csys_error, fallback: String = "failed") {
        var e = e
        let stage = withUnsafeBytes(of: &e.stage) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let message = withUnsafeBytes(of: &e.message) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let code: Code = e.kind == Int32(CSYS_ERR_EXEC) ? .container(status: e.err == EACCES ? 126 : 127)
            : e.kind == Int32(CSYS_ERR_REFUSED) ? .unsupported : .system
        self.init(code, message.isEmpty ? fallback : message, stage: stage.isEmpty ? "unknown" : stage, errno: e.err)
    }

    /// From the current `errno` after a failed call.
    public static func errno(_ stage: String, _ what: String) -> CtrError {
        let e = Glibc.errno
        return .system(stage, errno: e, "\(what): \(String(cString: strerror(e)))")
    }
}

/// Retry a call while it fails with EINTR; throw a `.system` error on any other failure.
@discardableResult
public func valueOrErrno<T: BinaryInteger>(_ stage: String, _ what: @autoclosure () -> String, _ call: () -> T) throws(CtrError) -> T {
    while true {
        let r = call()
        if r >= 0 { return r }
        if Glibc.errno == EINTR { continue }
        throw CtrError.errno(stage, what())
    }
}
