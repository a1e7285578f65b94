import Errors
import Testing
import TOML
@testable import PyImages

@Suite struct ProjectTests {
    @Test func pyproject() throws {
        let t = try TOML.parse("""
            [project]
            name = "My_Project.Tools"
            [project.scripts]
            my-api = "myproj.cli:api"
            worker = "myproj.cli:worker"
            [project.optional-dependencies]
            my-api = ["flask"]
            My_Project-Tools-Base = ["six"]
            """)
        let p = try PythonProject.fromPyproject(t)
        #expect(p.normalizedName == "my-project-tools")
        #expect(p.scripts.map(\.name) == ["my-api", "worker"])
        #expect(p.scripts.map(\.entry) == ["myproj.cli:api", "myproj.cli:worker"])
        #expect(p.extras == ["my_api": ["flask"], "my_project_tools_base": ["six"]])
        #expect(p.baseExtra == "my_project_tools_base")
        #expect(p.extra(ofScript: "my-api") == "my_api")
        #expect(p.extra(ofScript: "worker") == nil)
    }

    @Test func setupCfg() throws {
        let p = try PythonProject.fromSetupCfg("""
            [metadata]
            name = zuul
            # a comment
            [entry_points]
            console_scripts =
                zuul-executor = zuul.cmd.executor:main
                zuul-web = zuul.cmd.web:main

            [extras]
            zuul_base =
                yappi
            zuul-executor =
                ara
            [options.extras_require]
            mysql = PyMySQL
            """)
        #expect(p.name == "zuul")
        #expect(p.scripts.map(\.name) == ["zuul-executor", "zuul-web"])
        #expect(p.extras == ["zuul_base": ["yappi"], "zuul_executor": ["ara"], "mysql": ["PyMySQL"]])
        #expect(p.baseExtra == "zuul_base")
        #expect(p.extra(ofScript: "zuul-executor") == "zuul_executor")
    }

    @Test func badSetupCfgNamesTheLine() {
        #expect(throws: CtrError.self) { try PythonProject.fromSetupCfg("[metadata]\nname = x\n[entry_points]\nconsole_scripts =\n    nonsense\n") }
        do { _ = try PythonProject.fromSetupCfg("[metadata]\nname = x\n[entry_points]\nconsole_scripts =\n    nonsense\n") } catch {
            #expect("\(error)".contains("setup.cfg:5"), "\(error)")
        }
    }
}

@Suite struct BindepTests {
    static let debian = OSRelease(parsing: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n")
    static let ubuntu = OSRelease(parsing: "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n")
    static let alpine = OSRelease(parsing: "ID=alpine\nVERSION_ID=3.19.1\n")
    static let text = """
        # build
        gcc [compile test]
        libffi-dev [compile platform:dpkg]
        libffi-devel [compile platform:rpm]
        musl-dev [compile platform:apk]
        libxml2 [platform:dpkg !platform:ubuntu-jammy]
        libxml2 [platform:apk]
        ca-certificates
        mysql-client [test]
        docs-only [!compile]
        only-bookworm [platform:debian-bookworm]
        only-12 [platform:debian-12]
        """

    @Test func profilesAndPlatforms() throws {
        let b = try Bindep.parse(Self.text)
        #expect(Self.debian.packageManager == .dpkg && Self.ubuntu.packageManager == .dpkg && Self.alpine.packageManager == .apk)
        #expect(b.packages(profile: "compile", on: Self.debian) == ["gcc", "libffi-dev"])
        #expect(b.packages(profile: nil, on: Self.debian) == ["libxml2", "ca-certificates", "docs-only", "only-bookworm", "only-12"])
        #expect(b.packages(profile: nil, on: Self.ubuntu) == ["ca-certificates", "docs-only"])
        #expect(b.packages(profile: "compile", on: Self.alpine) == ["gcc", "musl-dev"])
        #expect(b.packages(profile: nil, on: Self.alpine) == ["libxml2", "ca-certificates", "docs-only"])
    }

    @Test(arguments: [("gcc >=4", 1), ("ok\nbad [compile", 2), ("x [pkg:foo]", 1), ("[compile]", 1)])
    func unsupportedSyntaxNamesTheLine(_ text: String, _ line: Int) {
        do {
            _ = try Bindep.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect("\(error)".contains("bindep.txt:\(line):"), "\(error)")
        }
    }
}

@Suite struct PlanTests {
    @Test func dockerfile() throws {
        let p = PythonProject(name: "MyProj", scripts: [("api", "m:a"), ("my-worker", "m:w")],
                              extras: ["myproj_base": ["a"], "my_worker": ["b"]], source: "setup.cfg")
        let b = try Bindep.parse("gcc [compile]\npython3-dev [compile platform:dpkg]\nhello\n")
        var plan = try ImagesPlan(project: p, base: "deb:py", os: BindepTests.debian, bindep: b)
        plan.findLinks = ["/src/wheels"]
        plan.noIndex = true
        let d = plan.dockerfile
        #expect(plan.targets == ["myproj-base", "api", "my-worker"])
        #expect(d.contains("FROM deb:py AS builder\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc python3-dev"))
        #expect(d.contains("--mount=type=bind,target=/src --mount=type=cache,target=/root/.cache/pip"))
        #expect(d.contains("pip wheel --no-build-isolation --no-index --find-links /src/wheels --wheel-dir /wheels '/tmp/src[my_worker,myproj_base]'"))
        #expect(d.contains("FROM deb:py AS myproj-base\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends hello"))
        #expect(d.contains("--mount=type=bind,from=builder,source=/wheels,target=/wheels"))
        #expect(d.contains("'myproj[myproj_base]'"))
        #expect(d.contains("FROM myproj-base AS api\nCMD [\"api\"]"))
        #expect(d.contains("FROM myproj-base AS my-worker\nRUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \\\n    pip install --no-index --find-links /wheels --no-cache-dir 'myproj[my_worker]'\nCMD [\"my-worker\"]"))
        #expect(!d.contains("COPY"), "the source is mounted, never copied")
        let apk = try ImagesPlan(project: p, base: "alpine:py", os: BindepTests.alpine, bindep: b)
        #expect(apk.dockerfile.contains("RUN apk add --no-cache gcc\n"))
        #expect(apk.dockerfile.contains("RUN apk add --no-cache hello\n"))
    }
}
