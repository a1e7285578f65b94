import Errors
import Testing
import Layers

/// `import --change` checks what docker import checks.
@Suite struct ConfigChangeTests {
    @Test func exposeAndStopsignalAreChecked() throws {
        var c = ContainerConfig()
        try ConfigChange.apply("EXPOSE 80 53/UDP 8000-8010", to: &c)
        #expect(Set(c.exposedPorts?.keys.map { $0 } ?? []) == ["80/tcp", "53/udp", "8000-8010/tcp"])
        try ConfigChange.apply("STOPSIGNAL SIGQUIT", to: &c)
        #expect(c.stopSignal == "SIGQUIT")
        for bad in ["EXPOSE 99999", "EXPOSE abc", "EXPOSE 80/xyz", "STOPSIGNAL FOO", "STOPSIGNAL 99"] {
            #expect(throws: CtrError.self, "\(bad)") { try ConfigChange.apply(bad, to: &c) }
        }
    }

    /// Instructions are read by the Dockerfile parser: both command forms, both ENV forms,
    /// quotes and escapes removed, `$VAR` kept as written (no build environment to expand it in).
    static let accepted: [(String, @Sendable (ContainerConfig) -> Bool)] = [
        (#"CMD ["sh", "-c", "x"]"#, { $0.cmd == ["sh", "-c", "x"] }),
        ("CMD echo hi there", { $0.cmd == ["/bin/sh", "-c", "echo hi there"] }),
        (#"cmd=["a","b"]"#, { $0.cmd == ["a", "b"] }),
        ("ENTRYPOINT []", { $0.entrypoint == nil }),
        ("ENTRYPOINT run me", { $0.entrypoint == ["/bin/sh", "-c", "run me"] }),
        (#"ENV A=1 B="two words" C=a\ b D="x\"y""#, { $0.env == ["A=1", "B=two words", "C=a b", #"D=x"y"#] }),
        ("ENV A 1 2", { $0.env == ["A=1 2"] }),
        (#"ENV A="$HOME" B=${Y:-z} C='$Q'"#, { $0.env == ["A=$HOME", "B=${Y:-z}", "C=$Q"] }),
        (#"LABEL org.example.k=v "k 2"="v 2""#, { $0.labels == ["org.example.k": "v", "k 2": "v 2"] }),
        (#"VOLUME ["/c", "/d"]"#, { Set($0.volumes?.keys.map { $0 } ?? []) == ["/c", "/d"] }),
        ("VOLUME /a '/b c'", { Set($0.volumes?.keys.map { $0 } ?? []) == ["/a", "/b c"] }),
        (#"USER "1000:1000""#, { $0.user == "1000:1000" }),
        ("WORKDIR rel", { $0.workingDir == "/rel" }),
        ("ONBUILD RUN echo hi", { $0.onBuild == ["RUN echo hi"] }),
    ]

    @Test(arguments: accepted)
    func parsedAsInADockerfile(change: String, check: @Sendable (ContainerConfig) -> Bool) throws {
        var c = ContainerConfig()
        try ConfigChange.apply(change, to: &c)
        #expect(check(c), "\(change): \(c)")
    }

    static let refused: [(String, String)] = [
        ("RUN echo", "RUN cannot be used here"),
        ("HEALTHCHECK NONE", "HEALTHCHECK cannot be used here"),
        ("", "empty instruction"),
        ("CMD", "CMD requires at least one argument"),
        (#"CMD ["a", 1]"#, "arrays must be comprised of strings only"),
        (#"ENV A="open"#, "matching double-quote"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        (#"VOLUME [""]"#, "can not be an empty string"),
    ]

    @Test(arguments: refused)
    func errorsNameTheChange(change: String, fragment: String) {
        var c = ContainerConfig()
        do {
            try ConfigChange.apply(change, to: &c)
            Issue.record("\(change) was accepted")
        } catch {
            #expect("\(error)".hasPrefix("--change \"\(change)\": "), "\(error)")
            #expect("\(error)".contains(fragment), "\(error)")
        }
    }
}
