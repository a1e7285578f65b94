import Errors
import Foundation
import enum Layers.TreeKind

/// The user a container's process runs as, resolved the way Docker does it from the image's
/// /etc/passwd and /etc/group.
public struct ResolvedUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    public var home: String
}

public enum UserDB {
    struct PasswdEntry { var name: String; var uid: UInt32; var gid: UInt32; var home: String }
    struct GroupEntry { var name: String; var gid: UInt32; var members: [String] }

    static func parsePasswd(_ text: String) -> [PasswdEntry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 7, let uid = UInt32(f[2]), let gid = UInt32(f[3]) else { return nil }
            return PasswdEntry(name: String(f[0]), uid: uid, gid: gid, home: String(f[5]))
        }
    }

    static func parseGroup(_ text: String) -> [GroupEntry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count >= 4, let gid = UInt32(f[2]) else { return nil }
            return GroupEntry(name: String(f[0]), gid: gid, members: f[3].split(separator: ",").map(String.init))
        }
    }

    /// `spec` is "user", "uid", "user:group", "uid:gid" (or empty: root). `read` returns a
    /// file of the image ("/etc/passwd"), nil when it has none.
    public static func resolve(_ spec: String, read: (String) -> String?) throws -> ResolvedUser {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userPart = parts.first ?? ""
        let groupPart = parts.count > 1 ? parts[1] : nil
        let passwd = read("/etc/passwd").map(parsePasswd) ?? []
        let groups = read("/etc/group").map(parseGroup) ?? []
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var home = "/"
        var name: String?
        if userPart.isEmpty {
            if let e = passwd.first(where: { $0.uid == 0 }) { name = e.name; home = e.home }
        } else if let n = UInt32(userPart) {
            uid = n
            if let e = passwd.first(where: { $0.uid == n }) { gid = e.gid; home = e.home; name = e.name }
        } else {
            guard let e = passwd.first(where: { $0.name == userPart }) else {
                throw CtrError.notFound("unable to find user \(userPart): no matching entries in passwd file")
            }
            uid = e.uid; gid = e.gid; home = e.home; name = e.name
        }
        var supplementary: [UInt32] = []
        if let g = groupPart, !g.isEmpty {
            if let n = UInt32(g) {
                gid = n
            } else {
                guard let e = groups.first(where: { $0.name == g }) else {
                    throw CtrError.notFound("unable to find group \(g): no matching entries in group file")
                }
                gid = e.gid
            }
        } else if let name {
            // Docker adds the groups that list the user as a member
            supplementary = groups.filter { $0.members.contains(name) && $0.gid != gid }.map(\.gid)
        }
        return ResolvedUser(uid: uid, gid: gid, groups: [gid] + supplementary.filter { $0 != gid }, home: home)
    }

    /// Read a file of an image from its unpacked layers (topmost first): the first layer that
    /// has it wins; a whiteout hides it.
    public static func readFromLayers(_ layers: [String], _ path: String) -> String? {
        for dir in layers {
            let p = dir + path
            var st = stat()
            guard lstat(p, &st) == 0 else { continue }
            if TreeKind.isWhiteout(st, path: p) { return nil }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                // resolve a symlink within the image, one level (rare for these files)
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: p) else { return nil }
                let abs = target.hasPrefix("/") ? target : (path as NSString).deletingLastPathComponent + "/" + target
                return readFromLayers(layers, abs)
            }
            return try? String(contentsOfFile: p, encoding: .utf8)
        }
        return nil
    }
}
