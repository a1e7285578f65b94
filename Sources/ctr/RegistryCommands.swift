import ArgumentParser
import CSysShims
import Errors
import Foundation
import HostOS
import Layers

/// Flags every registry command takes.
struct RegistryFlags: ParsableArguments {
    @Option(name: .customLong("tls-verify"), help: ArgumentHelp("Require HTTPS and verify certificates (default: true, except registries marked insecure in registries.conf and loopback ones).", valueName: "bool"))
    var tlsVerify: Bool?

    @Option(name: .customLong("cert-dir"), help: ArgumentHelp("Directory with *.crt (CAs) and *.cert/*.key (client) files, instead of certs.d.", valueName: "dir"))
    var certDir: String?

    @Option(name: .customLong("authfile"), help: ArgumentHelp("Auth file to read (and for login, write).", valueName: "path"))
    var authFile: String?

    @Option(name: .customLong("creds"), help: ArgumentHelp("Credentials to use instead of the auth files.", valueName: "user[:password]"))
    var creds: String?

    func options() throws -> RegistryOptions {
        var c: Credentials?
        if let creds {
            let parts = creds.split(separator: ":", maxSplits: 1).map(String.init)
            guard let u = parts.first, !u.isEmpty else { throw ValidationError("--creds needs user[:password]") }
            c = Credentials(username: u, password: parts.count > 1 ? parts[1] : "", identityToken: nil)
        }
        return RegistryOptions.cli(tlsVerify: tlsVerify, certDir: certDir, authFile: authFile, credentials: c)
    }
}

extension RegistryOptions {
    /// Options whose clients' notes ("waiting", "retrying") go to stderr.
    static func cli(tlsVerify: Bool? = nil, certDir: String? = nil, authFile: String? = nil, credentials: Credentials? = nil) -> RegistryOptions {
        var o = RegistryOptions(tlsVerify: tlsVerify, certDir: certDir, authFile: authFile, credentials: credentials)
        o.notice = { ProgressView.note($0) }
        return o
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Pull an image from a registry.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags

    @Option(help: ArgumentHelp("Platform to pick from an image index (os/arch[/variant]).", valueName: "platform"))
    var platform: String?

    @Flag(name: [.short, .long], help: "Print only the digest.")
    var quiet = false

    @Argument(help: "Image reference, e.g. debian:bookworm or 127.0.0.1:5000/team/app@sha256:…")
    var reference: String

    func run() throws {
        let store = try global.store()
        let ref = try Reference(parsingRegistryReference: reference)
        let plat = try platform.map { try Platform(parsing: $0) } ?? .current
        let access = try RegistryAccess(registry.options())
        // Ctrl-C stops the transfers, and the pull's own error path removes what it wrote
        csys_catch_stop_signals(1)
        let view = quiet ? nil : ProgressView(verb: "pull")
        defer { view?.finish() }
        let result = try ImagePull.run(ref, store: store, access: access, platform: plat, progress: view)
        view?.finish()
        if !quiet { RootlessNotes.reports(result.reports) }
        if quiet {
            Out.line(result.digest.string)
        } else {
            Out.progress("Digest: \(result.digest)")
            // as docker: up to date when the name already stood for this image
            Out.progress(result.upToDate ? "Status: Image is up to date for \(ref.familiar)" : "Status: Downloaded newer image for \(ref.familiar)")
            Out.line(ref.string)
        }
    }
}

struct Push: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Push an image to a registry.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags

    @Option(name: .customLong("digest-file"), help: ArgumentHelp("Write the manifest digest here.", valueName: "path"))
    var digestFile: String?

    @Option(name: .customLong("chunk-size"), help: ArgumentHelp("Upload blobs larger than this in PATCH chunks of this many bytes (default 256 MiB).", valueName: "bytes"))
    var chunkSize: Int64?

    @Flag(name: [.short, .long], help: "Print only the digest, no progress.")
    var quiet = false

    @Argument(help: "Image: a name or id in the store, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME], docker://REF.")
    var image: String

    @Argument(help: "Destination: a registry reference (default: the image name), or oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME] to write it there.")
    var destination: String?

    func run() throws {
        try Self.transfer(image, to: destination, store: try global.store(), registry: registry, digestFile: digestFile,
                          chunkSize: chunkSize, quiet: quiet)
    }

    /// push and copy: the image (any transport) to a registry, or to a layout or archive.
    static func transfer(_ image: String, to destination: String?, store: Store, registry: RegistryFlags, digestFile: String?,
                         chunkSize: Int64?, quiet: Bool) throws {
        let source = ImageLocation(image)
        let record: ImageRecord
        if case .docker = source {
            record = try Run.image(image, store: store, policy: "missing", platform: .current, registry: registry)
        } else {
            record = try store.locate(image)
        }
        // to a layout or archive: a copy, as skopeo copy makes it
        if let destination, case let dest = ImageLocation(destination), dest.isFile {
            try store.writing { try ImageTransport.write(record, from: store, to: dest) }
            if let digestFile {
                try Store.writeFile(path: digestFile, data: Data(record.descriptor.digest.string.utf8), sync: false)
            }
            Out.line(record.descriptor.digest.string)
            return
        }
        let destRef: Reference
        if let destination {
            destRef = try Reference(parsingRegistryReference: ImageLocation(destination).registryName ?? destination)
        } else if let n = try? Reference(parsing: source.registryName ?? "") {
            destRef = n
        } else {
            throw ValidationError("give a destination: ctr push IMAGE REGISTRY/REPO:TAG")
        }
        if let c = chunkSize, c <= 0 { throw ValidationError("--chunk-size must be positive") }
        let access = try RegistryAccess(registry.options())
        let view = quiet ? nil : ProgressView(verb: "push")
        defer { view?.finish() }
        let result = try ImagePush.run(record, to: destRef, store: store, access: access, progress: view, chunkSize: chunkSize)
        view?.finish()
        if let digestFile {
            try Store.writeFile(path: digestFile, data: Data(result.digest.string.utf8), sync: false)
        }
        if !quiet {
            let label = destRef.tag.map { "\($0): " } ?? (destRef.digest == nil ? "latest: " : "")
            Out.progress("\(label)digest: \(result.digest) size: \(result.size)")
        }
        Out.line(result.digest.string)
    }
}

struct Copy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy an image between transports, as skopeo copy: docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME], or the store.",
        discussion: "Blobs go through the store: what it has is not fetched again. ctr copy docker://example.com/app@sha256:… oci:./base:app pulls by digest into a layout.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags

    @Option(name: .customLong("digest-file"), help: ArgumentHelp("Write the manifest digest here.", valueName: "path"))
    var digestFile: String?

    @Flag(name: [.short, .long], help: "Print only the digest, no progress.")
    var quiet = false

    @Argument(help: "Source image.")
    var source: String

    @Argument(help: "Destination.")
    var destination: String

    func run() throws {
        try Push.transfer(source, to: destination, store: try global.store(), registry: registry, digestFile: digestFile,
                          chunkSize: nil, quiet: quiet)
    }
}

struct Login: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Log in to a registry and store the credentials in the auth file.")

    @OptionGroup var registry: RegistryFlags

    @Option(name: [.short, .long], help: "User name.")
    var username: String?

    @Option(name: [.short, .long], help: "Password (prefer --password-stdin).")
    var password: String?

    @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input.")
    var passwordStdin = false

    @Flag(name: .customLong("get-login"), help: "Print the user name stored for the registry.")
    var getLogin = false

    @Argument(help: "Registry (host[:port]); default docker.io.")
    var server: String = "docker.io"

    func run() throws {
        let opts = try registry.options()
        let host = RegistryLogin.host(server)
        if getLogin {
            guard let c = try RegistryLogin.stored(for: host, options: opts) else {
                throw CtrError.notFound("not logged into \(host)")
            }
            Out.line(c.username)
            return
        }
        // on a terminal, what is not given is asked for, as docker and podman do
        let terminal = isatty(0) != 0
        var user = username ?? ""
        if user.isEmpty {
            guard terminal, !passwordStdin else { throw ValidationError("give a user name with -u") }
            user = try Prompt.ask("Username: ", echo: true)
            if user.isEmpty { throw ValidationError("no user name given") }
        }
        var pw = password ?? ""
        if passwordStdin {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            pw = String(decoding: data, as: UTF8.self)
            while pw.hasSuffix("\n") || pw.hasSuffix("\r") { pw.removeLast() }
        } else if password == nil {
            guard terminal else { throw ValidationError("give the password with --password-stdin (or -p)") }
            pw = try Prompt.ask("Password: ", echo: false)
        }
        try RegistryLogin.login(Credentials(username: user, password: pw, identityToken: nil), to: host, options: opts)
        Out.line("Login Succeeded!")
    }
}

/// A line read from the terminal on stdin, after a prompt on stderr; without echo for secrets.
enum Prompt {
    static func ask(_ prompt: String, echo: Bool) throws -> String {
        // echo goes off before the prompt shows, so nothing typed after it is echoed
        var saved = termios()
        let quiet = !echo && tcgetattr(0, &saved) == 0
        if quiet {
            var t = saved
            t.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSANOW, &t)
        }
        Out.write(2, Data(prompt.utf8))
        defer {
            if quiet {
                tcsetattr(0, TCSANOW, &saved)
                Out.write(2, Data("\n".utf8))
            }
        }
        guard var line = readLine(strippingNewline: true) else { throw CtrError.usage("no answer on standard input") }
        if line.hasSuffix("\r") { line.removeLast() }
        return line
    }
}

struct Logout: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove stored credentials for a registry.")

    @Option(name: .customLong("authfile"), help: ArgumentHelp("Auth file to change.", valueName: "path"))
    var authFile: String?

    @Flag(name: [.short, .long], help: "Remove the credentials of every registry.")
    var all = false

    @Argument(help: "Registry (host[:port]); default docker.io.")
    var server: String = "docker.io"

    func run() throws {
        var envVars = ProcessInfo.processInfo.environment
        if let authFile { envVars["REGISTRY_AUTH_FILE"] = authFile }
        let env = AuthEnvironment(environment: envVars, home: envVars["HOME"] ?? NSHomeDirectory(), uid: getuid())
        let host = all ? nil : RegistryLogin.host(server)
        let (path, removed) = try RegistryLogin.logout(host, env: env)
        guard let host else {
            Out.line("Removed login credentials for all registries")
            return
        }
        guard removed else { throw CtrError.notFound("not logged into \(host) (in \(path))") }
        Out.line("Removed login credentials for \(host)")
    }
}
