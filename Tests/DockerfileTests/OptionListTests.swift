import Dockerfile
import Testing

@Suite struct OptionListTests {
    @Test func plainFields() {
        let f = OptionList.parse("type=cache,target=/root/.cache,sharing=locked")
        #expect(f == ["type": "cache", "target": "/root/.cache", "sharing": "locked"])
    }

    @Test func bareFieldsAndCase() {
        let f = OptionList.parse("type=bind,RO,Target=/x", bare: "true", lowercaseKeys: true)
        #expect(f == ["type": "bind", "ro": "true", "target": "/x"])
        #expect(OptionList.parse("id=a,ro")["ro"] == "")
    }

    @Test func valuesKeepTheirEquals() {
        #expect(OptionList.parse("id=tok,env=A=B")["env"] == "A=B")
    }

    /// CSV as BuildKit reads it: a quoted field may hold commas and doubled quotes.
    @Test func quotedFields() {
        let f = OptionList.parse(#"type=bind,"source=a,b",target=/x,"label=say ""hi""""#)
        #expect(f["source"] == "a,b")
        #expect(f["target"] == "/x")
        #expect(f["label"] == #"say "hi""#)
        #expect(OptionList.pairs("a=1,,b=2").map(\.key) == ["a", "b"], "empty fields are skipped")
    }
}
