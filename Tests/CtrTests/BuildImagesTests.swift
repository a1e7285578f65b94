import Foundation
import HostOS
import Testing

/// `ctr build-images` (issue 16), offline and rootless: a Debian base with python3, pip and
/// venv from the local mirror ($CTR_FIXTURES/pyapt, served on 127.0.0.1), a sample project
/// with two console scripts, a C extension (gcc and python3-dev only in the builder), one
/// extra per script and one for the base (wheels from --find-links, --no-index), bindep.txt
/// with a runtime package (Debian's `hello`). Each script image runs its script; the images
/// have no compiler and no wheel; a rebuild with nothing changed runs no step.
@Suite(.serialized) struct BuildImagesTests {
    static let pyapt = "\(TestEnv.fixtures)/pyapt"
    static let pythonTar = "\(TestEnv.fixtures)/python-bookworm.tar"

    static let files: [String: String] = [
        "pyproject.toml": """
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "MyProj"
            version = "1.0"

            [project.scripts]
            myproj-api = "myproj.cli:api"
            myproj-worker = "myproj.cli:worker"

            [project.optional-dependencies]
            myproj-api = ["extra-api"]
            myproj_worker = ["extra-worker"]
            myproj_base = ["extra-base"]

            [tool.setuptools]
            packages = ["myproj"]

            """,
        "setup.py": """
            from setuptools import setup, Extension
            setup(ext_modules=[Extension("myproj._speed", ["myproj/_speed.c"])])

            """,
        "myproj/__init__.py": "",
        "myproj/cli.py": """
            import importlib.util
            from myproj import _speed

            def have(m):
                return "yes" if importlib.util.find_spec(m) else "no"

            def api():
                print("api", _speed.add(2, 3), "extra_api", have("extra_api"), "extra_worker", have("extra_worker"), "extra_base", have("extra_base"))

            def worker():
                print("worker", _speed.add(20, 3), "extra_api", have("extra_api"), "extra_worker", have("extra_worker"), "extra_base", have("extra_base"))

            """,
        "myproj/_speed.c": """
            #define PY_SSIZE_T_CLEAN
            #include <Python.h>
            static PyObject *add(PyObject *self, PyObject *args) {
                long a, b;
                if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
                return PyLong_FromLong(a + b);
            }
            static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "add"}, {NULL, NULL, 0, NULL}};
            static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};
            PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&mod); }

            """,
        "bindep.txt": """
            # compile packages: the builder only
            gcc [compile]
            python3-dev [compile platform:dpkg]
            libc6-dev [compile platform:dpkg]
            musl-dev [compile platform:apk]
            # the images
            hello [platform:dpkg]
            # not for images
            mysql-client [test]

            """,
    ]

    /// The project, its wheelhouse, and a repository of pyapt plus `hello`.
    func project(_ w: Workspace) throws {
        let p = "\(w.dir)/myproj"
        for (rel, text) in Self.files {
            let path = "\(p)/\(rel)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }
        for d in ["\(p)/wheels", "\(w.dir)/repo"] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            chmod(d, 0o777)
        }
        _ = try Workspace.exec("/bin/chmod", ["-R", "a+rX", p])
        expectOK(try w.bash("""
            set -e
            python3 - \(p)/wheels <<'EOF'
            import base64, hashlib, sys, zipfile
            for name in ["extra_api", "extra_worker", "extra_base"]:
                files = {f"{name}.py": f"NAME = {name!r}\\n",
                         f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n",
                         f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
                record = []
                with zipfile.ZipFile(f"{sys.argv[1]}/{name}-1.0-py3-none-any.whl", "w") as z:
                    for path, text in files.items():
                        z.writestr(path, text)
                        h = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
                        record.append(f"{path},sha256={h},{len(text)}")
                    record.append(f"{name}-1.0.dist-info/RECORD,,")
                    z.writestr(f"{name}-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
            EOF
            for d in \(Self.pyapt)/*.deb \(TestEnv.fixtures)/apt/hello.deb; do ln -sf "$d" \(w.dir)/repo/; done
            { cat \(Self.pyapt)/Packages; echo; awk '/^Package: hello$/,/^$/' \(TestEnv.fixtures)/apt/Packages; } > \(w.dir)/repo/Packages
            """), "the project, its wheels and the repository")
    }

    @Test func rootlessPythonProject() throws {
        let who: Who = Who.rootless.available ? .rootless : .root
        guard who.available, TestEnv.amRoot || who == .root else { print("skip: \(TestEnv.setupHint)"); return }
        for f in [Self.pythonTar, "\(Self.pyapt)/Packages", "\(TestEnv.fixtures)/apt/hello.deb"] where access(f, R_OK) != 0 {
            print("skip: no \(f) (scripts/setup.sh makes it from Debian's mirror)"); return
        }
        let w = try Workspace(who)
        try project(w)
        // the repository on 127.0.0.1
        guard let (server, port) = try LocalHTTP.serve("\(w.dir)/repo", firstPort: 23000) else {
            print("skip: busybox httpd cannot serve on 127.0.0.1"); return
        }
        defer { server.signal(SIGKILL); _ = server.wait() }

        // the base: python3 with pip and venv from the local mirror, which it keeps as its source
        expectOK(try w.ctr("import", "-q", "--tag", "pyfix:1", Self.pythonTar))
        let baseCtx = "\(w.dir)/basectx"
        try FileManager.default.createDirectory(atPath: baseCtx, withIntermediateDirectories: true)
        try Data("""
            FROM pyfix:1
            RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] http://127.0.0.1:\(port)/ ./' > /etc/apt/sources.list.d/local.list \\
             && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip python3-venv >/dev/null && rm -rf /var/lib/apt/lists/*

            """.utf8).write(to: URL(fileURLWithPath: "\(baseCtx)/Dockerfile"))
        _ = try w.bash("chmod -R a+rwX \(baseCtx)")
        expectOK(try w.ctr("build", "-q", "--network", "host", "-t", "py:base", baseCtx), "the Python base")

        let args = ["build-images", "--base", "py:base", "--network", "host", "--find-links", "wheels", "--no-index", "\(w.dir)/myproj"]
        let printed = try w.ctr(["build-images", "--print", "--base", "py:base", "--find-links", "wheels", "--no-index", "\(w.dir)/myproj"])
        expectOK(printed, "--print")
        #expect(printed.stdout.contains("AS builder") && printed.stdout.contains("AS myproj-worker") && !printed.stdout.contains("COPY"), "\(printed.stdout)")
        #expect(printed.stdout.contains("gcc python3-dev libc6-dev") && printed.stdout.contains("install -y --no-install-recommends hello"), "bindep: \(printed.stdout)")

        let started = Date()
        let b = try w.ctr(args)
        expectOK(b, "build-images")
        print("build-images: \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        let names = b.lines.compactMap { $0.split(separator: " ").first.map(String.init) }
        #expect(names == ["myproj-base:latest", "myproj-api:latest", "myproj-worker:latest"], "\(b.stdout)")
        guard b.status == 0 else { return }

        let api = try w.ctr("run", "--rm", "myproj-api:latest")
        #expect(api.stdout == "api 5 extra_api yes extra_worker no extra_base yes\n", "\(api)")
        let worker = try w.ctr("run", "--rm", "myproj-worker:latest")
        #expect(worker.stdout == "worker 23 extra_api no extra_worker yes extra_base yes\n", "\(worker)")
        for image in ["myproj-base:latest", "myproj-api:latest", "myproj-worker:latest"] {
            let look = try w.ctr("run", "--rm", image, "sh", "-c",
                                 "command -v gcc cc || echo no-compiler; test -e /wheels && echo wheels-dir; find / -xdev -name 'myproj-*.whl' -o -xdev -name 'extra_*.whl' | head -3; hello")
            #expect(look.stdout == "no-compiler\nHello, world!\n", "\(image): no compiler, no wheel, the runtime package: \(look)")
        }
        // nothing changed: no step runs, the same images
        let again = try w.ctr(args)
        expectOK(again, "the rebuild")
        #expect(again.stdout == b.stdout, "the same images: \(again.stdout) vs \(b.stdout)")
        let runs = again.stderr.components(separatedBy: ": RUN ").count - 1
        let cached = again.stderr.components(separatedBy: "--> CACHED").count - 1
        #expect(runs > 0 && cached == runs, "every RUN cached (\(cached) of \(runs)): \(again.stderr)")
        // --prefix and --push: the same images under the registry's names, pulled back elsewhere
        if TestRegistry.available, let reg = TestRegistry.secure {
            try w.trust(reg)
            let creds = "\(TestRegistry.user):\(TestRegistry.password)"
            let tag = "t\(UUID().uuidString.prefix(8).lowercased())"
            let pushed = try w.ctrHome(args.dropLast() + ["--prefix", "\(reg.addr)/team", "--tag", tag, "--push", "--creds", creds, "\(w.dir)/myproj"])
            expectOK(pushed, "--push")
            #expect(pushed.lines.first?.hasPrefix("\(reg.addr)/team/myproj-base:\(tag) ") == true, "\(pushed.stdout)")
            let other = "\(w.dir)/other-store"
            expectOK(try w.ctrHome(["pull", "-q", "--creds", creds, "\(reg.addr)/team/myproj-worker:\(tag)"], root: other))
            let r = try w.ctrHome(["run", "--rm", "\(reg.addr)/team/myproj-worker:\(tag)"], root: other)
            #expect(r.stdout == worker.stdout, "the pushed worker image: \(r)")
        } else {
            print("skip --push: \(TestRegistry.skipReason)")
        }
        // bad bindep.txt: one line naming it
        expectOK(try w.bash("cp -r \(w.dir)/myproj \(w.dir)/bad && echo 'gcc >= 4 [compile]' >> \(w.dir)/bad/bindep.txt"))
        expectOneLineError(try w.ctr(["build-images", "--print", "--base", "py:base", "\(w.dir)/bad"]), mentions: "bindep.txt:10")
    }
}
