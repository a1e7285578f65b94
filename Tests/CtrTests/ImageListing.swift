import CSysShims
import Foundation
import Testing

/// What an image is, file by file, to compare two builds of one Dockerfile: for each layer,
/// what it does to the layers below it (set an entry — type, mode, owner, content, link
/// target, xattrs — or delete a path: a whiteout, an opaque directory), leaving out what does
/// nothing (an entry equal to the one below, as overlayfs's copy-up of a file opened for
/// writing and left alone; an opaque marker on a new directory). Two ways of making a layer
/// (an overlay upper dir, a tree's difference) give the same effects; mtimes are not compared.
struct ImageListing: Equatable, CustomStringConvertible {
    /// The image config's `config` section and its history (created_by, empty or not).
    var config: String
    var history: [String]
    /// Per layer, its effects, sorted.
    var layers: [[String]]
    /// Per layer, how many entries its tar holds (not compared: a layer may hold entries that
    /// do nothing; a check that none holds far more than another build's).
    var entryCounts: [Int] = []

    static func == (a: ImageListing, b: ImageListing) -> Bool {
        a.config == b.config && a.history == b.history && a.layers == b.layers
    }

    var description: String {
        (["config \(config)", "history \(history)"] + layers.enumerated().flatMap { i, l in l.map { "L\(i) \($0)" } }).joined(separator: "\n")
    }

    /// The lines that differ, for a failure message.
    func difference(from other: ImageListing) -> String {
        let a = description.split(separator: "\n").map(String.init), b = other.description.split(separator: "\n").map(String.init)
        let sa = Set(a), sb = Set(b)
        let only = a.filter { !sb.contains($0) }.prefix(40).map { "- \($0)" } + b.filter { !sa.contains($0) }.prefix(40).map { "+ \($0)" }
        return only.joined(separator: "\n")
    }

    enum Failure: Error { case bad(String) }

    /// Read an OCI archive (`ctr build -o type=oci-archive`); `scratch` is a directory to
    /// unpack it in.
    init(ociArchive: String, scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let x = try Workspace.exec("/bin/tar", ["-xf", ociArchive, "-C", scratch])
        guard x.status == 0 else { throw Failure.bad("tar -xf \(ociArchive): \(x)") }
        func json(_ path: String) throws -> [String: Any] {
            guard let d = FileManager.default.contents(atPath: path),
                  let o = try JSONSerialization.jsonObject(with: d) as? [String: Any] else { throw Failure.bad("not JSON: \(path)") }
            return o
        }
        func blob(_ digest: Any?) throws -> String {
            guard let d = digest as? String, d.hasPrefix("sha256:") else { throw Failure.bad("no digest") }
            return "\(scratch)/blobs/sha256/\(d.dropFirst(7))"
        }
        let index = try json("\(scratch)/index.json")
        guard let m0 = (index["manifests"] as? [[String: Any]])?.first else { throw Failure.bad("no manifest in \(ociArchive)") }
        let manifest = try json(try blob(m0["digest"]))
        let cfg = try json(try blob((manifest["config"] as? [String: Any])?["digest"]))
        let c = cfg["config"] ?? [:]
        config = String(decoding: try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys]), as: UTF8.self)
        history = ((cfg["history"] as? [[String: Any]]) ?? []).map { h in
            ((h["created_by"] as? String) ?? "") + ((h["empty_layer"] as? Bool) == true ? " (empty)" : "")
        }
        var state: [String: String] = [:]
        var out: [[String]] = []
        for l in (manifest["layers"] as? [[String: Any]]) ?? [] {
            let path = try blob(l["digest"])
            let tar = path + ".tar"
            let z = try Workspace.exec("/bin/sh", ["-c", "gzip -dc < '\(path)' > '\(tar)'"])
            guard z.status == 0 else { throw Failure.bad("gzip -dc \(path): \(z)") }
            let entries = try Self.readTar(tar)
            unlink(tar)
            entryCounts.append(entries.count)
            out.append(Self.effects(of: entries, on: &state))
        }
        layers = out
    }

    struct Entry {
        var path: String
        var meta: String
    }

    /// What a layer's entries do to `state` (path → metadata), which they update.
    static func effects(of entries: [Entry], on state: inout [String: String]) -> [String] {
        let below = state
        var ops: [String] = []
        func remove(under p: String, andItself: Bool) -> Bool {
            var any = false
            if andItself, state.removeValue(forKey: p) != nil { any = true }
            for k in state.keys where k.hasPrefix(p + "/") && below[k] != nil { state[k] = nil; any = true }
            return any
        }
        for e in entries {
            let (dir, base) = e.path.lastIndex(of: "/").map { (String(e.path[..<$0]), String(e.path[e.path.index(after: $0)...])) } ?? ("", e.path)
            if base == ".wh..wh..opq" {
                if remove(under: dir, andItself: false) { ops.append("opaque \(dir)") }
            } else if base.hasPrefix(".wh.") {
                let victim = (dir.isEmpty ? "" : dir + "/") + base.dropFirst(4)
                if remove(under: victim, andItself: true) { ops.append("delete \(victim)") }
            } else if state[e.path] != e.meta {
                if !e.meta.hasPrefix("dir ") { _ = remove(under: e.path, andItself: false) }
                state[e.path] = e.meta
                ops.append("set \(e.path) \(e.meta)")
            }
        }
        return ops.sorted()
    }

    /// The entries of an uncompressed tar (ustar, pax and GNU long names), with each regular
    /// file's content as a sha256.
    static func readTar(_ file: String) throws -> [Entry] {
        let data = try Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped)
        var entries: [Entry] = []
        try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            let b = buf.bindMemory(to: UInt8.self)
            func str(_ off: Int, _ len: Int) -> String {
                var end = off
                while end < off + len && b[end] != 0 { end += 1 }
                return String(decoding: b[off..<end], as: UTF8.self)
            }
            func num(_ off: Int, _ len: Int) -> Int {
                if b[off] & 0x80 != 0 { // base-256
                    var v = 0
                    for i in off + 1..<off + len { v = v << 8 | Int(b[i]) }
                    return v
                }
                return Int(str(off, len).trimmingCharacters(in: .whitespaces), radix: 8) ?? 0
            }
            var off = 0
            var pax: [String: String] = [:]
            var longName: String?, longLink: String?
            while off + 512 <= b.count {
                if b[off..<off + 512].allSatisfy({ $0 == 0 }) { break }
                let type = b[off + 156]
                var size = num(off + 124, 12)
                if let s = pax["size"], let n = Int(s) { size = n }
                let dataOff = off + 512
                guard dataOff + size <= b.count else { throw Failure.bad("\(file): cut short") }
                let body = UnsafeRawBufferPointer(rebasing: buf[dataOff..<dataOff + size])
                defer { off = dataOff + (size + 511) / 512 * 512 }
                switch type {
                case UInt8(ascii: "x"):
                    var rest = Substring(String(decoding: body, as: UTF8.self))
                    while let sp = rest.firstIndex(of: " "), let n = Int(rest[..<sp]), n > 0 {
                        let rec = rest.utf8.prefix(n)
                        let text = String(decoding: rec.dropFirst(rest.utf8.distance(from: rest.startIndex, to: sp) + 1), as: UTF8.self)
                        if let eq = text.firstIndex(of: "=") {
                            pax[String(text[..<eq])] = String(text[text.index(after: eq)...].dropLast())
                        }
                        rest = Substring(String(decoding: rest.utf8.dropFirst(n), as: UTF8.self))
                    }
                    continue
                case UInt8(ascii: "g"):
                    continue
                case UInt8(ascii: "L"):
                    longName = String(decoding: body, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: "\0"))
                    continue
                case UInt8(ascii: "K"):
                    longLink = String(decoding: body, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: "\0"))
                    continue
                default:
                    break
                }
                var name = str(off, 100)
                let prefix = str(off + 345, 155)
                if str(off + 257, 5) == "ustar" && !prefix.isEmpty { name = prefix + "/" + name }
                name = pax["path"] ?? longName ?? name
                let link = pax["linkpath"] ?? longLink ?? str(off + 157, 100)
                let uid = pax["uid"] ?? String(num(off + 108, 8)), gid = pax["gid"] ?? String(num(off + 116, 8))
                let mode = String(num(off + 100, 8) & 0o7777, radix: 8)
                let xattrs = pax.filter { $0.key.hasPrefix("SCHILY.xattr.") }.map { "\($0.key.dropFirst(13))=\($0.value)" }.sorted()
                while name.hasPrefix("./") { name.removeFirst(2) }
                while name.hasSuffix("/") { name.removeLast() }
                var meta: String
                switch type {
                case UInt8(ascii: "5"): meta = "dir"
                case UInt8(ascii: "2"): meta = "symlink -> \(link)"
                case UInt8(ascii: "1"): meta = "hardlink -> \(link.hasPrefix("./") ? String(link.dropFirst(2)) : link)"
                case UInt8(ascii: "3"), UInt8(ascii: "4"): meta = "dev \(type == UInt8(ascii: "3") ? "c" : "b") \(num(off + 329, 8)):\(num(off + 337, 8))"
                case UInt8(ascii: "6"): meta = "fifo"
                default:
                    let h = csys_sha256_new()
                    if let base = body.baseAddress, size > 0 { csys_sha256_update(h, base, size) }
                    var d = [UInt8](repeating: 0, count: 32)
                    csys_sha256_final(h, &d)
                    csys_sha256_free(h)
                    meta = "file \(d.prefix(8).map { String(format: "%02x", $0) }.joined()) size \(size)"
                }
                meta += " \(mode) \(uid):\(gid)" + (xattrs.isEmpty ? "" : " xattrs \(xattrs)")
                if name != "" && name != "." { entries.append(Entry(path: name, meta: meta)) }
                pax = [:]
                longName = nil
                longLink = nil
            }
        }
        return entries
    }
}
