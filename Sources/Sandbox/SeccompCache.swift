import CSysShims
import Foundation
import Layers

/// Compiled seccomp programs, kept under the store (`cache/seccomp/`): the key names the
/// profile (built-in version or the profile file's digest), the capability set it was
/// compiled for, libseccomp's version and the architecture. A missing or unreadable entry is
/// compiled again; writes are atomic, so concurrent runs at worst compile twice.
struct SeccompCache {
    let dir: String

    init(root: String) { dir = "\(root)/cache/seccomp" }

    func program(key: String, capabilities: Set<String>, compile: () throws -> [UInt8]) throws -> [UInt8] {
        #if arch(x86_64)
        let arch = "x86_64"
        #elseif arch(arm64)
        let arch = "aarch64"
        #else
        let arch = "other"
        #endif
        let ident = "\(key)|\(capabilities.sorted().joined(separator: ","))|\(Self.libraryIdentity())|\(arch)"
        let path = "\(dir)/\(Digest.sha256(Data(ident.utf8)).encoded).bpf"
        // a BPF program is a whole number of 8-byte instructions
        if let data = FileManager.default.contents(atPath: path), !data.isEmpty, data.count % 8 == 0 {
            return [UInt8](data)
        }
        let bpf = try compile()
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? Store.atomicWrite(path: path, data: Data(bpf))
        return bpf
    }

    /// libseccomp's file (the versioned name and its size and mtime), found without loading
    /// it: a cached program must come from the same compiler. Loads it only as a last resort.
    static func libraryIdentity() -> String {
        for dir in ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
                    "/usr/lib64", "/lib64", "/usr/lib", "/lib"] {
            let link = "\(dir)/libseccomp.so.2"
            guard let real = realpath(link, nil) else { continue }
            defer { free(real) }
            var st = stat()
            if stat(real, &st) == 0 {
                return "\(String(cString: real)):\(st.st_size):\(st.st_mtim.tv_sec)"
            }
        }
        return String(cString: csys_seccomp_library_version())
    }
}
