import Testing
@testable import Dockerfile

@Suite struct IgnorePatternsTests {
    @Test func doubleStar() {
        let p = IgnorePatterns(text: "**/*.go")
        #expect(p.isExcluded("main.go"))
        #expect(p.isExcluded("cmd/x/main.go"))
        #expect(!p.isExcluded("main.go.txt"))
        #expect(!p.isExcluded("README.md"))
        #expect(!p.hasExceptions)
    }

    @Test func exceptionLastWins() {
        let p = IgnorePatterns(text: """
            # docs
            *.md
            !README.md
            """)
        #expect(p.hasExceptions)
        #expect(p.isExcluded("CHANGELOG.md"))
        #expect(!p.isExcluded("README.md"))
        #expect(!p.isExcluded("docs/guide.md"))   // `*` does not cross `/`
        #expect(!p.isExcluded("main.swift"))
        // Order matters: a later pattern re-excludes.
        let q = IgnorePatterns(patterns: ["!keep.md", "*.md"])
        #expect(q.isExcluded("keep.md"))
        let r = IgnorePatterns(patterns: ["*", "!keep.md"])
        #expect(!r.isExcluded("keep.md"))
        #expect(r.isExcluded("other.md"))
        #expect(r.isExcluded("dir/keep.md"))
    }

    @Test func directoriesAndParents() {
        let p = IgnorePatterns(text: "dir/\n/build\n  node_modules  \n./tmp/../cache")
        #expect(p.patterns.map(\.text) == ["dir", "build", "node_modules", "cache"])
        #expect(p.isExcluded("dir"))
        #expect(p.isExcluded("dir/file"))
        #expect(p.isExcluded("dir/sub/file"))
        #expect(!p.isExcluded("dirx"))
        #expect(!p.isExcluded("a/dir"))
        #expect(p.isExcluded("build/out.o"))
        #expect(p.isExcluded("./node_modules/x/index.js"))
        #expect(p.isExcluded("cache/x"))
        #expect(!p.isExcluded("src/node_modules"))
    }

    @Test func exceptionInsideExcludedDir() {
        let p = IgnorePatterns(text: "docs\n!docs/keep.md")
        #expect(p.isExcluded("docs"))
        #expect(p.isExcluded("docs/other.md"))
        #expect(!p.isExcluded("docs/keep.md"))
        #expect(p.mayContainIncluded(dir: "docs"))
        #expect(!p.mayContainIncluded(dir: "src"))
        let q = IgnorePatterns(text: "vendor\n!**/LICENSE")
        #expect(q.mayContainIncluded(dir: "vendor"))
        #expect(!q.isExcluded("vendor/x/LICENSE"))
        #expect(q.isExcluded("vendor/x/main.go"))
        let r = IgnorePatterns(text: "a\n!b/*.txt")
        #expect(!r.mayContainIncluded(dir: "a"))
        #expect(r.mayContainIncluded(dir: "b"))
        #expect(!IgnorePatterns(text: "a").mayContainIncluded(dir: "a"))
    }

    @Test func globSyntax() {
        let p = IgnorePatterns(patterns: ["file?.txt", "[a-c]*.log", "[^x]y", "lit\\*", "**/tmp/**", "a/**/z"])
        #expect(p.isExcluded("file1.txt"))
        #expect(!p.isExcluded("file10.txt"))
        #expect(p.isExcluded("b2.log"))
        #expect(!p.isExcluded("d2.log"))
        #expect(p.isExcluded("ay"))
        #expect(!p.isExcluded("xy"))
        #expect(p.isExcluded("lit*"))
        #expect(!p.isExcluded("lita"))
        #expect(p.isExcluded("tmp/x"))
        #expect(p.isExcluded("q/r/tmp/x/y"))
        #expect(p.isExcluded("a/z"))
        #expect(p.isExcluded("a/b/c/z"))
        #expect(!p.isExcluded("a/b/c/zz"))
    }

    @Test func invalidAndEmpty() {
        let p = IgnorePatterns(text: "[abc\n!\n\n#comment\nok")
        #expect(p.invalidPatterns == ["[abc", "!"])
        #expect(p.patterns.map(\.text) == ["ok"])
        #expect(!IgnorePatterns(text: "").isExcluded("x"))
        #expect(IgnorePatterns(text: "").isEmpty)
    }
}
