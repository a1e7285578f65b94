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
            #expect(throws: ConfigChangeError.self, "\(bad)") { try ConfigChange.apply(bad, to: &c) }
        }
    }
}
