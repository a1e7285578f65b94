import CSysShims
import Dockerfile
import Errors
import Foundation
import struct HostOS.IDRange
import enum HostOS.IDMapping
import Layers
import Sandbox

extension BuildRun {
    /// Container ids of a file in an unpacked layer (the store keeps them mapped to host ids).
    func containerIDs(_ st: stat) -> (Int64, Int64) {
        let m = b.store.ops.mapping
        return (Int64(m.containerUID(st.st_uid) ?? 0), Int64(m.containerGID(st.st_gid) ?? 0))
    }

    func copyStep(_ inst: Instruction, sources: [String], dest: String, heredocs: [Heredoc], isAdd: Bool, state: inout ImageState) throws {
        let name = isAdd ? "ADD" : "COPY"
        let env = environment(state)
        var chown: (Int64, Int64)?
        var chmod: UInt32?
        var checksum: Digest?
        var fromTree: LayeredTree?
        for f in inst.flags {
            switch f.name {
            case "from" where !isAdd:
                let ref = try expand(f.value ?? "", env.merging(globalArgs) { a, _ in a }, inst)
                fromTree = LayeredTree(layers: try fromLayers(ref, inst, what: "\(name) --from=\(ref)").dirs, opener: opener)
            case "chown":
                let spec = try expand(f.value ?? "", env, inst)
                do {
                    chown = try userIDs(spec, try layerTree(state))
                    // Docker: a numeric user with no group gets the same number as its group
                    if !spec.contains(":"), let n = Int64(spec) { chown = (n, n) }
                } catch {
                    throw fail(inst, "\(name) --chown=\(spec): \(error)", cause: error)
                }
            case "chmod":
                let v = try expand(f.value ?? "", env, inst)
                guard let m = UInt32(v, radix: 8), m <= 0o7777 else { throw fail(inst, "\(name) --chmod=\(v): expected an octal mode") }
                chmod = m
            case "link":
                continue  // every COPY layer here is independent of what is below it anyway
            case "checksum" where isAdd:
                let v = try expand(f.value ?? "", env, inst)
                guard let d = try? Digest(parsing: v) else { throw fail(inst, "ADD --checksum=\(v): expected sha256:HEX") }
                checksum = d
            default:
                throw fail(inst, "\(name) --\(f.name) is not supported")
            }
        }
        let source = fromTree ?? LayeredTree(plain: context)
        let fromContext = fromTree == nil
        let workdir = state.config.config?.workingDir ?? "/"
        var destPath = try expand(dest, env, inst)
        let namedDir = destPath.hasSuffix("/") || destPath == "." || destPath.hasSuffix("/.")
        if sources.count > 1 && !namedDir {
            throw fail(inst, "\(name) with more than one source: the destination must be a directory and end with a /")
        }
        if !destPath.hasPrefix("/") { destPath = workdir + "/" + destPath }
        destPath = IgnorePatterns.clean(destPath)
        // the destination inside the image, symlinks resolved inside it
        let image = try layerTree(state)
        let destRel = image.resolve(String(destPath.dropFirst()), followFinal: true) ?? String(destPath.dropFirst())
        // a directory that is there already takes the files in, with or without the slash (Docker)
        let destIsDir = namedDir || sources.count > 1 || (image.lookup(destRel)?.isDir ?? false)

        var entries: [FileEntry] = []
        var hashInput = ""
        let docs = Dictionary(heredocs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var extracted: [String] = []
        defer { for d in extracted { _ = try? b.store.ops.removeTree(d) } }
        var copiesDir = false
        for raw in sources {
            if let h = docs[raw] {
                let content = h.expand ? try expand(h.content, env, inst) : h.content
                let data = Data(content.utf8)
                let path = destIsDir || sources.count > 1 ? (destRel.isEmpty ? raw : destRel + "/" + raw) : destRel
                entries.append(FileEntry(path: path, kind: .bytes(data), mode: chmod ?? 0o644, uid: chown?.0 ?? 0, gid: chown?.1 ?? 0,
                                         mtime: epoch ?? Int64(Date().timeIntervalSince1970), size: UInt64(data.count)))
                hashInput += "heredoc \(path) \(Digest.sha256(data))\n"
                continue
            }
            let expanded = try expand(raw, env, inst)
            if isAdd && (expanded.hasPrefix("http://") || expanded.hasPrefix("https://")) {
                // a download: its content (checked against --checksum) is the source; 0600 as Docker
                let (data, name, modified) = try download(expanded, checksum: checksum, inst)
                let path = destIsDir ? (destRel.isEmpty ? name : destRel + "/" + name) : destRel
                // the server's Last-Modified, as BuildKit and buildah keep it
                let mtime = modified ?? Int64(Date().timeIntervalSince1970)
                entries.append(FileEntry(path: path, kind: .bytes(data), mode: chmod ?? 0o600, uid: chown?.0 ?? 0, gid: chown?.1 ?? 0,
                                         mtime: epoch.map { min($0, mtime) } ?? mtime, size: UInt64(data.count)))
                hashInput += "url \(path) \(Digest.sha256(data))\n"
                continue
            }
            if isAdd && expanded.hasPrefix("git@") { throw fail(inst, "ADD \(expanded): git sources are not supported") }
            let matches = try glob(source, expanded, fromContext: fromContext, inst: inst)
            if matches.isEmpty {
                throw fail(inst, "\(name) \(expanded): no such file or directory in \(fromContext ? "the build context" : "the source image")")
            }
            let many = matches.count > 1 || destIsDir
            for m in matches {
                guard let e = source.lookup(m) else { continue }
                if e.isDir { copiesDir = true }
                if isAdd && fromContext && e.isRegular, let archive = try localArchive(e.hostPath, m, inst) {
                    // a local tar (gzip, zstd, xz, bzip2 or none) is unpacked at the destination, owners kept
                    if archive != e.hostPath { extracted.append(archive) }
                    let dir = "\(tmpRoot)/add-\(UUID().uuidString.lowercased())"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    extracted.append(dir)
                    do { _ = try b.store.ops.apply(blob: archive, to: dir, tree: .plain) } catch {
                        throw fail(inst, "ADD \(m): cannot unpack it: \(error)", cause: error)
                    }
                    let tree = LayeredTree(plain: dir, opener: opener)
                    try walk(tree, "", into: destRel, fromContext: false, chown: chown, chmod: chmod, &entries)
                    hashInput += "archive \(m) \(try fileDigest(e.hostPath))\n"
                    continue
                }
                if e.isDir {
                    try walk(source, m, into: destRel, fromContext: fromContext, chown: chown, chmod: chmod, &entries)
                } else {
                    let base = (m as NSString).lastPathComponent
                    let target = many ? (destRel.isEmpty ? base : destRel + "/" + base) : destRel
                    entries.append(try entry(e, in: source, path: target, fromContext: fromContext, chown: chown, chmod: chmod))
                }
            }
        }
        entries = FileEntry.lastWriterWins(entries)
        for e in FileEntry.linkingHardLinks(entries) {
            switch e.kind {
            case .file(let p): hashInput += "f \(e.path) \(e.mode) \(e.uid):\(e.gid) \(try fileDigest(p))\n"
            case .bytes: break
            case .dir: hashInput += "d \(e.path) \(e.mode) \(e.uid):\(e.gid)\n"
            case .symlink(let t): hashInput += "l \(e.path) \(t) \(e.uid):\(e.gid)\n"
            case .hardlink(let t): hashInput += "h \(e.path) \(t)\n"
            }
        }
        // a source directory copied to a new destination makes that directory
        var ensure: [String] = []
        if destIsDir || copiesDir || entries.contains(where: { $0.path.hasPrefix(destRel + "/") }) { ensure.append("/" + destRel) }
        let key = sha([state.cacheKey, name, inst.original, destRel, hashInput, ensure.joined(separator: ","),
                       "\(chown.map { "\($0.0):\($0.1)" } ?? "")"].joined(separator: "\n"))
        let createdBy = "\(name) \(sources.joined(separator: " ")) \(dest)"
        if try useCache(key, &state, createdBy: createdBy) { return }
        ranSteps += 1
        try addFileLayer(&state, inst, entries: entries, ensureDirs: ensure, createdBy: createdBy, key: key,
                         dirOwner: chown)
    }

    /// What ADD unpacks of a local file: the file itself when it is a tar (plain, gzip, zstd),
    /// a decompressed copy of an xz or bzip2 tar (as Docker unpacks those too), or nil for any
    /// other file, which is copied as it is.
    func localArchive(_ path: String, _ name: String, _ inst: Instruction) throws -> String? {
        if (try? LayerOps.scan(blob: path)) != nil { return path }
        let out = "\(tmpRoot)/add-\(UUID().uuidString.lowercased()).tar"
        do {
            guard try LayerOps.decompressOther(path, to: out) else { return nil }
        } catch {
            // a file that does not decompress is copied as it is, as Docker does
            unlink(out)
            return nil
        }
        guard (try? LayerOps.scan(blob: out)) != nil else { unlink(out); return nil }
        return out
    }

    /// The ids a user spec (`name`, `uid`, `name:group`, …) stands for in the image `tree`,
    /// read from its /etc/passwd and /etc/group.
    func userIDs(_ spec: String, _ tree: LayeredTree) throws -> (Int64, Int64) {
        let u = try UserDB.resolve(spec, read: { tree.text($0) })
        return (Int64(u.uid), Int64(u.gid))
    }

    func fileDigest(_ path: String) throws -> String {
        let fd = openFile(path)
        guard fd >= 0 else { throw CtrError.build("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard let h = Digest.sha256(fd: fd) else { throw CtrError.build("cannot read \(path): \(String(cString: strerror(errno)))") }
        return h.digest.encoded
    }

    /// Paths (relative, cleaned) in the source that a COPY source names, globs expanded.
    func glob(_ tree: LayeredTree, _ pattern: String, fromContext: Bool, inst: Instruction) throws -> [String] {
        let cleaned = IgnorePatterns.clean("/" + pattern).dropFirst()
        let comps = cleaned.split(separator: "/").map(String.init)
        var current: [String] = [""]
        for (i, c) in comps.enumerated() {
            let isLast = i == comps.count - 1
            var next: [String] = []
            for base in current {
                if c.contains(where: { "*?[".contains($0) }) {
                    for n in tree.list(base) where Expander.globMatch(c, n, escape: "\\") {
                        next.append(base.isEmpty ? n : base + "/" + n)
                    }
                } else {
                    let p = base.isEmpty ? c : base + "/" + c
                    // follow symlinks inside the source root
                    if let r = tree.resolve(p, followFinal: true), tree.lookup(r) != nil { next.append(r) }
                }
            }
            current = next.filter { p in
                guard let e = tree.lookup(p) else { return false }
                return isLast || e.isDir
            }
        }
        if fromContext { current = current.filter { !ignore.isExcluded($0) } }
        return current.sorted()
    }

    func entry(_ e: LayeredTree.Entry, in tree: LayeredTree, path: String, fromContext: Bool, chown: (Int64, Int64)?, chmod: UInt32?) throws -> FileEntry {
        let ids = fromContext ? (Int64(0), Int64(0)) : containerIDs(e.st)
        let mtime = Int64(e.st.st_mtim.tv_sec)
        let clamped = epoch.map { min($0, mtime) } ?? mtime
        if e.isSymlink {
            let t = tree.readlink(e.hostPath) ?? ""
            return FileEntry(path: path, kind: .symlink(t), mode: 0o777, uid: chown?.0 ?? ids.0, gid: chown?.1 ?? ids.1, mtime: clamped, size: 0)
        }
        if e.isDir {
            return FileEntry(path: path, kind: .dir, mode: chmod ?? UInt32(e.st.st_mode & 0o7777), uid: chown?.0 ?? ids.0, gid: chown?.1 ?? ids.1, mtime: clamped, size: 0)
        }
        guard e.isRegular else { throw CtrError.build("\(path): only files, directories and symlinks can be copied") }
        return FileEntry(path: path, kind: .file(hostPath: e.hostPath), mode: chmod ?? UInt32(e.st.st_mode & 0o7777),
                         uid: chown?.0 ?? ids.0, gid: chown?.1 ?? ids.1, mtime: clamped, size: UInt64(e.st.st_size),
                         inode: e.st.st_nlink > 1 ? FileEntry.Inode(dev: UInt64(e.st.st_dev), ino: UInt64(e.st.st_ino)) : nil)
    }

    /// A directory's contents (not the directory itself), recursively, symlinks kept as links.
    /// From the context, what .dockerignore excludes is left out (this walk is what decides what
    /// the context holds, for COPY and RUN --mount alike); `excluded` hears of each path left out.
    func walk(_ tree: LayeredTree, _ rel: String, into dest: String, fromContext: Bool, chown: (Int64, Int64)?, chmod: UInt32?,
              _ out: inout [FileEntry], excluded: (String) -> Void = { _ in }) throws {
        for n in tree.list(rel) {
            let src = rel.isEmpty ? n : rel + "/" + n
            if fromContext && ignore.isExcluded(src) {
                excluded(src)
                if !ignore.hasExceptions || !ignore.mayContainIncluded(dir: src) { continue }
            }
            guard let e = tree.lookup(src) else { continue }
            let target = dest.isEmpty ? n : dest + "/" + n
            if e.isDir {
                if !(fromContext && ignore.isExcluded(src)) {
                    out.append(try entry(e, in: tree, path: target, fromContext: fromContext, chown: chown, chmod: chmod))
                }
                try walk(tree, src, into: target, fromContext: fromContext, chown: chown, chmod: chmod, &out, excluded: excluded)
            } else {
                if fromContext && ignore.isExcluded(src) { continue }
                out.append(try entry(e, in: tree, path: target, fromContext: fromContext, chown: chown, chmod: chmod))
            }
        }
    }

    /// Write entries (and the directories leading to them) as one layer, store and unpack it.
    func addFileLayer(_ state: inout ImageState, _ inst: Instruction, entries: [FileEntry], ensureDirs: [String],
                      createdBy: String, key: String? = nil, dirOwner: (Int64, Int64)? = nil) throws {
        let key = key ?? state.cacheKey
        let image = try layerTree(state)
        // parents: as they are in the image when they exist there (an overlay upper dir's
        // metadata wins over the lower's), else new 0755 root dirs
        var dirs: [String: FileEntry] = [:]
        func addParents(_ path: String, includingSelf: Bool) {
            var comps = path.split(separator: "/").map(String.init)
            if !includingSelf { comps.removeLast() }
            var cur = ""
            for c in comps {
                cur = cur.isEmpty ? c : cur + "/" + c
                if dirs[cur] != nil { continue }
                if let e = image.lookup(cur), e.isDir {
                    let ids = containerIDs(e.st)
                    dirs[cur] = FileEntry(path: cur, kind: .dir, mode: UInt32(e.st.st_mode & 0o7777), uid: ids.0, gid: ids.1,
                                          mtime: Int64(e.st.st_mtim.tv_sec), size: 0)
                } else {
                    dirs[cur] = FileEntry(path: cur, kind: .dir, mode: 0o755, uid: dirOwner?.0 ?? 0, gid: dirOwner?.1 ?? 0,
                                          mtime: epoch ?? Int64(Date().timeIntervalSince1970), size: 0)
                }
            }
        }
        // symlinks in the image on the way to a destination are followed (inside the root), as
        // Docker does: `WORKDIR /link/dir` or `COPY f /link/` must not replace the link
        func resolvedParent(_ path: String) -> String {
            guard let slash = path.lastIndex(of: "/") else { return path }
            let parent = String(path[..<slash]), base = String(path[path.index(after: slash)...])
            guard !parent.isEmpty, let r = image.resolve(parent), r != parent else { return path }
            return r.isEmpty ? base : r + "/" + base
        }
        var placed = entries
        for i in placed.indices { placed[i].path = resolvedParent(placed[i].path) }
        placed = FileEntry.lastWriterWins(placed)
        for d in ensureDirs where d != "/" {
            addParents(image.resolve(String(d.dropFirst())) ?? String(d.dropFirst()), includingSelf: true)
        }
        for e in placed { addParents(e.path, includingSelf: false) }
        var all = placed
        let explicit = Set(placed.map(\.path))
        all += dirs.values.filter { !explicit.contains($0.path) }
        all = FileEntry.linkingHardLinks(all)

        let tarPath = b.store.ingestPath()
        let blob = b.store.ingestPath()
        defer { unlink(tarPath); unlink(blob) }
        do {
            try LayerWriter.tar(all, to: tarPath, clampMtime: epoch, open: openFile)
        } catch let e as CtrError {
            throw fail(inst, e.message.hasPrefix("cannot read ") ? "\(inst.keyword): \(e.message)" : e.message)
        }
        let d = try LayerOps.compress(tarPath, to: blob, compression: .gzip)
        let layer = Descriptor(mediaType: .ociLayerGzip, digest: d.digest, size: d.size)
        try b.store.writing {
            if !b.store.hasBlob(d.digest) { try b.store.commit(file: blob, as: d.digest) }
            _ = try b.store.unpackedLayer(layer, diffID: d.diffID)
        }
        try append(layer, diffID: d.diffID, key: key, &state, createdBy: createdBy)
    }
}


extension BuildRun {
    /// ADD https://…: the body (bounded to 1 GiB in memory), the file name from the URL and
    /// the Last-Modified time when the server gives one.
    func download(_ url: String, checksum: Digest?, _ inst: Instruction) throws -> (Data, String, Int64?) {
        let resp: HTTPResponse
        do {
            let client = try HTTPClient()
            resp = try client.perform(HTTPRequest(url: url), tls: TLSSettings(), sink: BodySink(maxMemory: 1 << 30))
        } catch {
            throw fail(inst, "ADD \(url): \(error)", cause: error)
        }
        guard (200..<300).contains(resp.status) else { throw fail(inst, "ADD \(url): HTTP \(resp.status)") }
        if let checksum, Digest.sha256(resp.body) != checksum {
            throw fail(inst, "ADD \(url): checksum mismatch: got \(Digest.sha256(resp.body)), --checksum says \(checksum)")
        }
        var name = URL(string: url)?.lastPathComponent ?? ""
        if name.isEmpty || name == "/" { name = "index.html" }
        let http = DateFormatter()
        http.locale = Locale(identifier: "en_US_POSIX")
        http.timeZone = TimeZone(identifier: "GMT")
        http.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        let modified = resp.header("Last-Modified").flatMap { http.date(from: $0) }.map { Int64($0.timeIntervalSince1970) }
        return (resp.body, name, modified)
    }
}
