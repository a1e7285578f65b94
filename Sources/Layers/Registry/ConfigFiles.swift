import Foundation

// Small file helpers shared by the readers of registry configuration (registries.conf,
// auth files, certs.d): path joining, existence as containers/image checks it, and one-line
// reasons for file errors.

func joinPath(_ dir: String, _ name: String) -> String {
    if dir.isEmpty { return name }
    return dir.hasSuffix("/") ? dir + name : dir + "/" + name
}

/// lstat succeeds (a dangling symlink counts), as containers/image `fileutils.Exists`.
func pathExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func isNoSuchFile(_ error: any Error) -> Bool {
    let ns = error as NSError
    if ns.domain == NSCocoaErrorDomain && ns.code == CocoaError.fileReadNoSuchFile.rawValue { return true }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError,
       underlying.domain == NSPOSIXErrorDomain && underlying.code == Int(ENOENT) { return true }
    return ns.domain == NSPOSIXErrorDomain && ns.code == Int(ENOENT)
}

/// A one-line reason for a file error ("no such file or directory", "permission denied").
func describeIOError(_ error: any Error) -> String {
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if ns.domain == NSCocoaErrorDomain {
        switch ns.code {
        case CocoaError.fileReadNoSuchFile.rawValue, CocoaError.fileNoSuchFile.rawValue: return "no such file or directory"
        case CocoaError.fileReadNoPermission.rawValue, CocoaError.fileWriteNoPermission.rawValue: return "permission denied"
        default: break
        }
    }
    return ns.localizedDescription.replacingOccurrences(of: "\n", with: " ")
}
