import Testing
@testable import Sandbox

@Suite struct SandboxSmokeTests {
    @Test func moduleLoads() {
        #expect(String(describing: Sandbox.self) == "Sandbox")
    }
}
