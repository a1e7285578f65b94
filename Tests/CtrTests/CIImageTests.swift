import Foundation
import Testing

/// The shipped binary in a plain CI image: one `ctr` mounted into a Debian container (podman,
/// from the debootstrap fixture) that has none of the libraries ctr used to load from the
/// system, nor the ones it links in now. Images, builds and archives work there; registry
/// commands, which need libcurl, say so in one line.
///
/// ctr runs as root in the container and nothing here starts a container of ctr's own (RUN,
/// `ctr run`): podman's default confinement refuses the namespaces that takes, which is
/// another matter than libraries.
@Suite(.serialized) struct CIImageTests {
    /// Removed from the image (by file, so nothing of them is left to load): what ctr loaded
    /// from the system before (ISA-L, libarchive, zstd, libseccomp, OpenSSL), what it links in
    /// now (zlib, xz, bzip2), and libcurl, which a minimal image does not have anyway.
    static let removed = ["libisal.so", "libarchive.so", "libzstd.so", "libseccomp.so", "libcrypto.so", "libssl.so",
                          "libz.so", "liblzma.so", "libbz2.so", "libcurl.so"]
    static let podman = "/usr/bin/podman"
    /// As the podman of Debian 12 needs it to run containers as root on this kind of host.
    static let runArgs = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

    /// The fixture imported into podman once, under a tag that changes with the fixture.
    static func debianImage() throws -> String? {
        var st = stat()
        guard stat(TestEnv.debianTar, &st) == 0 else { return nil }
        let image = "localhost/ctr-tests-debian:\(st.st_size)-\(st.st_mtim.tv_sec)"
        if try Workspace.exec(podman, ["image", "exists", image]).status == 0 { return image }
        let r = try Workspace.exec(podman, ["import", "-q", TestEnv.debianTar, image])
        return r.status == 0 ? image : nil
    }

    /// The shared libraries the binary names (DT_NEEDED), or nil where readelf is missing.
    static func needed(_ binary: String) throws -> [String]? {
        guard TestEnv.have("readelf") else { return nil }
        let r = try Workspace.exec("/usr/bin/readelf", ["-d", binary])
        guard r.status == 0 else { return nil }
        return r.stdout.split(separator: "\n").compactMap { line in
            guard line.contains("(NEEDED)"), let a = line.firstIndex(of: "["), let b = line.lastIndex(of: "]") else { return nil }
            return String(line[line.index(after: a)..<b])
        }
    }

    /// A build for development (`swift build`) links the Swift runtime and loads every library
    /// on first use: only the binary scripts/build.sh makes is meant for a CI image.
    static func shipped() throws -> Bool {
        guard let libs = try needed(TestEnv.binary) else { return false }
        return !libs.contains { $0.hasPrefix("libswift") || $0.hasPrefix("libFoundation") }
    }

    @Test func theShippedBinaryInAPlainDebianImage() throws {
        guard TestEnv.amRoot else { print("skip: podman runs the Debian container as root"); return }
        guard TestEnv.have("podman") else { print("skip: podman is not installed (\(TestEnv.setupHint))"); return }
        guard TestEnv.haveDebian, TestEnv.haveBusybox else { print("skip: no Debian or busybox fixture (\(TestEnv.setupHint))"); return }
        guard try Self.shipped() else { print("skip: \(TestEnv.binary) is not the shipped binary (scripts/build.sh) or readelf is missing"); return }
        guard let image = try Self.debianImage() else { print("skip: podman cannot import \(TestEnv.debianTar)"); return }
        // One container runs every step (podman exec needs an events backend that is not
        // reliable with several podmans at once); each step's output and status land in /out.
        let w = try Workspace(.root)
        let out = "\(w.dir)/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let pattern = Self.removed.map { "-name '\($0)*'" }.joined(separator: " -o ")
        let script = """
            step() { n=$1; shift; "$@" > /out/$n.out 2> /out/$n.err; echo $? > /out/$n.rc; }
            # the image without the libraries, and what ctr needs of it
            step strip sh -ec "find / -xdev \\( \(pattern) \\) \\( -type f -o -type l \\) -delete; ldconfig
                ! ldconfig -p | grep -E '\(Self.removed.map { $0.replacingOccurrences(of: ".", with: "\\.") }.joined(separator: "|"))'
                ldd /usr/local/bin/ctr"
            step import ctr import -q --tag bb:1 /fx/busybox.tar
            step importgz sh -c 'gzip -c /fx/busybox.tar > /tmp/bb.tar.gz && ctr import -q /tmp/bb.tar.gz gz:1'
            step layers ctr inspect --format '{{json .RootFS.Layers}}' bb:1 gz:1
            mkdir -p /ctx/pkg/in && echo copied > /ctx/f && echo packed > /ctx/pkg/in/p.txt
            tar -C /ctx/pkg -czf /ctx/p.tar.gz in
            printf 'FROM bb:1\\nCOPY f /f\\nADD p.tar.gz /x/\\nENV A=1\\n' > /ctx/Dockerfile
            step build ctr build -q -t built:1 /ctx
            step save sh -c 'ctr save -o /tmp/oci.tar built:1 && ctr save --format docker-archive -o /tmp/docker.tar built:1'
            step load sh -c 'ctr --root /tmp/other load -i /tmp/oci.tar && ctr --root /tmp/third load -i /tmp/docker.tar'
            step unpack sh -c 'ctr --root /tmp/other unpack built:1 /tmp/u && cat /tmp/u/rootfs/f /tmp/u/rootfs/x/in/p.txt && /tmp/u/rootfs/bin/busybox true'
            step pull ctr pull 127.0.0.1:5000/team/app:1
            step push ctr push built:1 127.0.0.1:5000/team/app:1
            printf 'FROM 127.0.0.1:5000/team/base:1\\nCOPY f /f\\n' > /ctx/Dockerfile
            step remote ctr build -q -t remote:1 /ctx
            """
        let run = try Workspace.exec(Self.podman, ["run", "--rm"] + Self.runArgs + [
            "-v", "\(TestEnv.binary):/usr/local/bin/ctr:ro", "-v", "\(TestEnv.busyboxTar):/fx/busybox.tar:ro", "-v", "\(out):/out",
            image, "/bin/sh", "-c", script])
        func step(_ n: String) -> RunResult {
            func text(_ ext: String) -> String { (try? String(contentsOfFile: "\(out)/\(n).\(ext)", encoding: .utf8)) ?? "" }
            return RunResult(status: Int32(text("rc").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1, stdout: text("out"), stderr: text("err"))
        }
        guard FileManager.default.fileExists(atPath: "\(out)/strip.rc") else {
            print("skip: podman cannot run a container here: \(run)"); return
        }
        expectOK(run, "podman run")

        let strip = step("strip")
        expectOK(strip, "removing the libraries")
        #expect(!strip.stdout.contains("not found"), "\(strip)")
        let needed = strip.lines.compactMap { $0.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) }.filter { $0.hasPrefix("lib") }
        #expect(Set(needed).isSubset(of: ["libc.so.6", "libm.so.6", "libgcc_s.so.1"]), "\(strip)")

        // import (a plain tar, and a .tar.gz: gzip through zlib, there is no ISA-L)
        expectOK(step("import"), "import")
        expectOK(step("importgz"), "import .tar.gz")
        let layers = step("layers")
        expectOK(layers)
        #expect(layers.lines.count == 2 && layers.lines[0] == layers.lines[1], "\(layers)")
        // build: COPY and ADD of a .tar.gz (no RUN, see above)
        expectOK(step("build"), "build")
        // save (OCI and docker archives), load into other stores, unpack
        expectOK(step("save"), "save")
        expectOK(step("load"), "load")
        let files = step("unpack")
        expectOK(files, "unpack")
        #expect(files.lines == ["copied", "packed"], "\(files)")

        // registry commands need libcurl: one line that names the package
        expectOneLineError(step("pull"), mentions: "libcurl4")
        expectOneLineError(step("push"), mentions: "libcurl4")
        let remote = step("remote")
        expectOneLineError(remote, mentions: "libcurl4")
        #expect(remote.stderr.contains("Dockerfile:1"), "\(remote)")
    }

    /// The libraries linked in stay private to ctr: none of their symbols is exported, so
    /// libcurl's libssl (loaded with the system's libcrypto) binds to that libcrypto, never to
    /// the one inside ctr, and neither copy interposes the other. (An HTTPS push and pull with
    /// both loaded: RegistryTests.tlsLoginAndAuthFiles.)
    @Test func theLinkedLibrariesAreNotExported() throws {
        guard try Self.shipped() else { print("skip: \(TestEnv.binary) is not the shipped binary (scripts/build.sh) or readelf is missing"); return }
        guard TestEnv.have("nm") else { print("skip: nm (binutils) is missing"); return }
        let r = try Workspace.exec("/usr/bin/nm", ["-D", "--defined-only", TestEnv.binary])
        expectOK(r)
        let prefixes = ["SHA", "EVP_", "OPENSSL_", "CRYPTO_", "ERR_", "BIO_", "archive_", "__archive", "ZSTD_", "inflate", "deflate",
                        "crc32", "adler32", "lzma_", "BZ2_", "seccomp_", "isal_", "curl_"]
        let exported = r.lines.compactMap { $0.split(separator: " ").last.map(String.init) }
            .filter { sym in prefixes.contains { sym.hasPrefix($0) } }
        #expect(exported.isEmpty, "exported: \(exported.prefix(20))")
        #expect(Set(try Self.needed(TestEnv.binary) ?? []).isSubset(of: ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"]))
    }
}
