import HostOS
import Testing

@Suite struct IDMappingTests {
    /// The user's lines by name or id, in file order; comments, other users and bad lines left
    /// out; a range that repeats or overlaps an earlier one counts once (useradd writes a line
    /// where /etc/subuid exists, and an image's setup often appends the same again: the kernel
    /// refuses a map with both).
    @Test func subordinateRanges() {
        let text = """
            # comment
            other:100000:65536
            ci:100000:65536
            1000:300000:10
            ci:100000:65536
            ci:165000:1000
            ci:bad:1
            ci:400000:0
              ci:500000:5\r
            """
        let r = IDMapping.parseSubordinate(text, name: "ci", id: 1000)
        #expect(r.map { [$0.0, $0.1] } == [[100000, 65536], [300000, 10], [500000, 5]])
    }
}
