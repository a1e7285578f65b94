import Errors
import enum Dockerfile.OptionList
import Foundation
import Layers

/// Everything `ctr build` was asked for: the build itself, where its context and Dockerfile
/// come from, and what happens with the image afterwards. `Builder.run` carries it out.
public struct BuildRequest: Sendable {
    public var source: BuildSource
    /// The build; `context` and `file` are set from `source` when it runs.
    public var options: BuildOptions
    /// Base images from archives: FROM NAME takes that archive's (first) image, no pull.
    public var imageArchives: [BaseImageArchive] = []
    /// The -t names as typed (`build`, not `docker.io/library/build:latest`): what a layout
    /// output names its refs by.
    public var tagSpellings: [String] = []
    /// Base images already in the store, by the name FROM uses (archives loaded beforehand).
    public var baseImages: [String: ImageRecord] = [:]
    /// Secrets for RUN --mount=type=secret: files, or variables of `environment`.
    public var secrets: [BuildSecret] = []
    /// Cached steps are taken from these images first (a name that cannot be pulled is a warning).
    public var cacheFrom: [String] = []
    /// The steps' layers are pushed here as a cache image after the build.
    public var cacheTo: Reference?
    public var digestFile: String?
    public var iidFile: String?
    public var outputs: [BuildOutput] = []
    /// Push the image to every -t name.
    public var push = false
    /// Where env secrets are read.
    public var environment: [String: String] = ProcessInfo.processInfo.environment

    /// The files and directories the build writes after it ends (outputs, id files), which
    /// the container isolation level must not clear.
    var writesTo: [String] {
        var paths = [digestFile, iidFile].compactMap { $0 }
        for out in outputs {
            switch out {
            case .archive(_, let dest), .rootfs(let dest), .local(let dest), .tar(let dest): paths.append(dest)
            }
        }
        return paths.filter { $0 != "-" }
    }

    public init(source: BuildSource) {
        self.source = source
        options = BuildOptions(context: source.contextDirectory ?? "-")
    }
}

/// Where the context and the Dockerfile come from; standard input is one or the other, as
/// `docker build` takes it.
public enum BuildSource: Sendable, Equatable {
    /// A context directory, and its Dockerfile.
    case directory(String, dockerfile: DockerfileSource)
    /// The context on standard input: a tar (plain, gzip or zstd), or a lone Dockerfile with an
    /// empty context; `dockerfile` (-f PATH) names another Dockerfile.
    case stdin(dockerfile: String?)

    /// From the context argument and -f, where "-" is standard input.
    public init(context: String, file: String?) throws(CtrError) {
        switch (context, file) {
        case ("-", "-"): throw CtrError.usage("stdin can be the Dockerfile (-f -) or the context (-), not both")
        case ("-", let f): self = .stdin(dockerfile: f)
        case (let dir, nil): self = .directory(dir, dockerfile: .inContext)
        case (let dir, "-"): self = .directory(dir, dockerfile: .stdin)
        case (let dir, let f?): self = .directory(dir, dockerfile: .path(f))
        }
    }

    var contextDirectory: String? {
        if case .directory(let d, _) = self { return d }
        return nil
    }
}

public enum DockerfileSource: Sendable, Equatable {
    /// CONTEXT/Dockerfile, else CONTEXT/Containerfile
    case inContext
    case path(String)
    /// Read from standard input (-f -)
    case stdin
}

/// Where `ctr build -o` writes the image besides the store.
public enum BuildOutput: Sendable, Equatable {
    /// oci-archive, docker-archive or oci-dir, of the image under its -t names
    case archive(ArchiveFormat, dest: String)
    /// DEST/rootfs and DEST/metadata.json, as `ctr unpack`
    case rootfs(dest: String)
    /// The image's files in DEST (BuildKit's local)
    case local(dest: String)
    /// A tar of the image's files (BuildKit's tar)
    case tar(dest: String)

    /// `type=TYPE,dest=PATH`; a bare PATH is a local output, as in `docker build -o DIR`.
    public init(parsing spec: String) throws(CtrError) {
        let fields = spec.contains("=") ? OptionList.parse(spec) : ["type": "local", "dest": spec]
        guard let type = fields["type"], let dest = fields["dest"] else {
            throw CtrError.usage("--output \(spec): expected type=TYPE,dest=PATH")
        }
        switch type {
        case "rootfs": self = .rootfs(dest: dest)
        case "local": self = .local(dest: dest)
        case "tar": self = .tar(dest: dest)
        // BuildKit's names: oci (an oci-archive; tar=false a layout directory) and docker
        case "oci": self = .archive(fields["tar"] == "false" ? .ociDir : .ociArchive, dest: dest)
        case "docker": self = .archive(.dockerArchive, dest: dest)
        default:
            guard let format = ArchiveFormat(rawValue: type) else {
                throw CtrError.usage("--output \(spec): type \(type) is not supported (local, tar, oci, docker, oci-archive, docker-archive, oci-dir, rootfs)")
            }
            self = .archive(format, dest: dest)
        }
    }
}

/// `--image-archive NAME=PATH`: FROM NAME takes the image of this OCI archive, OCI layout
/// dir or docker-archive.
public struct BaseImageArchive: Sendable, Equatable {
    public var name: String
    public var path: String

    public init(parsing spec: String) throws(CtrError) {
        let kv = spec.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2, !kv[0].isEmpty else { throw CtrError.usage("--image-archive \(spec): expected NAME=PATH") }
        name = kv[0]
        path = kv[1]
    }

    var spec: String { "\(name)=\(path)" }

    /// Where the image is: `oci:`, `oci-archive:` or `docker-archive:` as written; else a
    /// layout directory or archive (detected), `PATH:REF` picking one image of several
    /// (a PATH that exists as written is the whole path).
    public var location: ImageLocation {
        let loc = ImageLocation(path)
        if loc.isFile { return loc }
        var p = path, ref: String?
        if access(path, F_OK) != 0, let c = path.lastIndex(of: ":"), c != path.startIndex,
           access(String(path[..<c]), F_OK) == 0 {
            p = String(path[..<c])
            ref = String(path[path.index(after: c)...])
            if ref == "" { ref = nil }
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue { return .oci(path: p, ref: ref) }
        return .archive(path: p, ref: ref)
    }
    /// How errors name it (default: the flag).
    public var label: String?
    var display: String { label ?? "--image-archive \(spec)" }
}

/// `--secret id=ID,src=PATH` (or `source=`) or `id=ID,env=VAR` (VAR defaults to ID).
public struct BuildSecret: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case file(String)
        case env(String)
    }

    public var id: String
    public var source: Source
    /// As given, for errors.
    public var spec: String

    public init(parsing spec: String) throws(CtrError) {
        let f = OptionList.parse(spec)
        guard let id = f["id"], !id.isEmpty else { throw CtrError.usage("--secret \(spec): expected id=ID,src=PATH or id=ID,env=VAR") }
        self.id = id
        self.spec = spec
        if let src = f["src"] ?? f["source"] {
            source = .file(src)
        } else {
            source = .env(f["env"] ?? id)
        }
    }
}

/// --build-arg and --build-arg-file.
public enum BuildArgs {
    /// `NAME=VALUE`, or `NAME` alone to take the value from `environment` (unset: left out).
    public static func add(_ arg: String, to args: inout [String: String], flag: String,
                           environment: [String: String]) throws(CtrError) {
        let kv = arg.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard !kv[0].isEmpty else { throw CtrError.usage("\(flag) \(arg): expected NAME=VALUE") }
        if kv.count == 2 { args[kv[0]] = kv[1] } else if let v = environment[kv[0]] { args[kv[0]] = v }
    }

    /// The args of the files (in turn, a line each; blank lines and # comments skipped), then
    /// of the flags: a later one wins.
    public static func collect(files: [String], args: [String],
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> [String: String] {
        var out: [String: String] = [:]
        for f in files {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { throw CtrError.notFound("--build-arg-file \(f): cannot read it") }
            for line in text.split(separator: "\n") {
                let l = line.trimmingCharacters(in: .whitespaces)
                if l.isEmpty || l.hasPrefix("#") { continue }
                try add(l, to: &out, flag: "--build-arg-file \(f)", environment: environment)
            }
        }
        for a in args { try add(a, to: &out, flag: "--build-arg", environment: environment) }
        return out
    }
}

extension BuildCacheImage {
    /// The repository a `--cache-from`/`--cache-to` value names: REGISTRY/REPO[:TAG], or
    /// BuildKit's type=registry,ref=REGISTRY/REPO[:TAG].
    public static func reference(_ spec: String) -> String {
        guard spec.contains("=") else { return spec }
        return OptionList.parse(spec)["ref"] ?? spec
    }
}

/// What follows a build, in the order `Builder.run` does it.
public enum BuildAction: Sendable, Equatable {
    /// The steps' layers as a cache image, pushed to this repository.
    case exportCache(to: Reference)
    /// A file holding the manifest digest (--digest-file) or the image id (--iidfile).
    case writeFile(path: String, contents: String)
    /// An archive of the image under these names (the image id when it has no -t name).
    case save(names: [String], format: ArchiveFormat, to: String)
    case rootfs(to: String)
    case files(to: String)
    case tar(to: String)
    case push(to: Reference)
}

extension BuildRequest {
    /// The actions after a build that made `imageID` (manifest `manifest`).
    public func actions(imageID: Digest, manifest: Digest) -> [BuildAction] {
        var out: [BuildAction] = []
        if let cacheTo { out.append(.exportCache(to: cacheTo)) }
        if let digestFile { out.append(.writeFile(path: digestFile, contents: manifest.string)) }
        if let iidFile { out.append(.writeFile(path: iidFile, contents: imageID.string)) }
        // an archive under the -t names (an image saved by id is nameless)
        let names = options.tags.isEmpty ? [imageID.encoded]
            : tagSpellings.count == options.tags.count ? tagSpellings : options.tags.map(\.string)
        for o in outputs {
            switch o {
            case .archive(let format, let dest): out.append(.save(names: names, format: format, to: dest))
            case .rootfs(let dest): out.append(.rootfs(to: dest))
            case .local(let dest): out.append(.files(to: dest))
            case .tar(let dest): out.append(.tar(to: dest))
            }
        }
        if push { out += options.tags.map { .push(to: $0) } }
        return out
    }
}

extension BuildOutput {
    var dest: String {
        switch self {
        case .archive(_, let d), .rootfs(let d), .local(let d), .tar(let d): return d
        }
    }

    func with(dest d: String) -> BuildOutput {
        switch self {
        case .archive(let f, _): return .archive(f, dest: d)
        case .rootfs: return .rootfs(dest: d)
        case .local: return .local(dest: d)
        case .tar: return .tar(dest: d)
        }
    }
}

extension BuildRequest {
    /// The request of each target of a several-target build (`options.targets`): a name or
    /// output with `{target}` is made for every target; the others are paired with the targets
    /// in order, so there must be one per target (or none). One target: the request itself.
    /// The tags are the `-t` spellings (`tagSpellings`), parsed once expanded.
    public func perTarget() throws(CtrError) -> [BuildRequest] {
        let targets = options.targets
        guard targets.count > 1 else { return [self] }
        let placeholder = "{target}"
        func assign<T>(_ items: [T], _ flag: String, text: (T) -> String, expand: (T, String) -> T) throws(CtrError) -> [[T]] {
            let templated = items.filter { text($0).contains(placeholder) }
            let plain = items.filter { !text($0).contains(placeholder) }
            if !plain.isEmpty && plain.count != targets.count {
                throw CtrError.usage("\(flag): \(plain.count) given for \(targets.count) targets (--target \(targets.joined(separator: ", "))): give one per target, in order, or use {target} in it")
            }
            return targets.enumerated().map { i, t in
                templated.map { expand($0, t) } + (plain.isEmpty ? [] : [plain[i]])
            }
        }
        let spellings = tagSpellings.isEmpty ? options.tags.map(\.string) : tagSpellings
        let tagSets = try assign(spellings, "-t", text: { $0 }, expand: { $0.replacingOccurrences(of: placeholder, with: $1) })
        let outSets = try assign(outputs, "-o", text: { $0.dest }, expand: { $0.with(dest: $0.dest.replacingOccurrences(of: placeholder, with: $1)) })
        func file(_ path: String?, _ flag: String, _ t: String) throws(CtrError) -> String? {
            guard let path else { return nil }
            guard path.contains(placeholder) else {
                throw CtrError.usage("\(flag) \(path): several targets need {target} in it")
            }
            return path.replacingOccurrences(of: placeholder, with: t)
        }
        var out: [BuildRequest] = []
        for (i, t) in targets.enumerated() {
            var r = self
            r.options.targets = []
            r.options.target = t
            r.tagSpellings = tagSets[i]
            var refs: [Reference] = []
            for s in tagSets[i] {
                do { refs.append(try Reference(parsing: s)) } catch { throw CtrError.usage("-t \(s): \(error.message)") }
            }
            r.options.tags = refs
            r.outputs = outSets[i]
            r.digestFile = try file(digestFile, "--digest-file", t)
            r.iidFile = try file(iidFile, "--iidfile", t)
            out.append(r)
        }
        return out
    }
}
