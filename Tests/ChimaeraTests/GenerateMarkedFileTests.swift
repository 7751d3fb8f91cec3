import Testing

@testable import ChimaeraDevKit

private let source = """
    #include <x.h>
    /* CHI_AUTOGEN_BEGIN(decls) */
    old decl;
    /* CHI_AUTOGEN_END(decls) */
    /* A sentence that mentions CHI_BEGIN(Fake) is not a marker. */
    int mine;   
    /* CHI_AUTOGEN_METHODS: new methods go above */
    tail
    """

private func marked(_ text: String) throws -> MarkedFile {
    try MarkedFile(text, file: "f.c", style: .block)
}

/// The error parsing `text` gives, or nil.
private func parseError(_ text: String) -> String? {
    do {
        _ = try MarkedFile(text, file: "f.c", style: .block)
        return nil
    } catch {
        return error.description
    }
}

@Suite struct GenerateMarkedFileTests {
    @Test func renderGivesBackTheTextByteForByte() throws {
        for text in [source, source + "\n", "", "\n\n", "a\r\nb\n"] {
            #expect(try marked(text).render() == text)
        }
    }

    @Test func generatedRegionsAreReplacedAndTheRestKept() throws {
        var f = try marked(source)
        try f.setGenerated("decls", ["new decl 1;", "new decl 2;"])
        #expect(f.render() == source.replacing("old decl;", with: "new decl 1;\nnew decl 2;"))
        #expect(throws: GenerateError.self) { try f.setGenerated("tasks", []) }
    }

    @Test func newRegionsGoAboveTheAnchorOnceOnly() throws {
        var f = try marked(source)
        let orphans = try f.syncUserRegions([("Add", ["int add;"]), ("Sub", ["int sub;"])])
        #expect(orphans.isEmpty)
        let text = f.render()
        let sum = MarkedFile.checksum(["int add;"])
        #expect(text.contains("/* CHI_BEGIN(Add) \(sum) */\nint add;\n/* CHI_END(Add) */\n\n/* CHI_BEGIN(Sub)"))
        #expect(text.contains("CHI_END(Sub) */\n\n/* CHI_AUTOGEN_METHODS"))
        var again = try marked(text)
        _ = try again.syncUserRegions([("Add", ["int add;"]), ("Sub", ["int sub;"])])
        #expect(again.render() == text)
        #expect(again.userRegions.map(\.name) == ["Add", "Sub"])
        #expect(again.renderedLine(ofRegion: "Sub") == 11)
    }

    @Test func untouchedSkeletonsFollowTheDeclarationEditedOnesStay() throws {
        var f = try marked(source)
        _ = try f.syncUserRegions([("Add", ["int add(int a);"]), ("Sub", ["int sub(int a);"])])
        var text = f.render().replacing("int sub(int a);", with: "int sub(int a) { return -a; }")
        var g = try marked(text)
        _ = try g.syncUserRegions([("Add", ["int add(int a, int b);"]), ("Sub", ["int sub(int a, int b);"])])
        text = g.render()
        #expect(text.contains("CHI_BEGIN(Add) \(MarkedFile.checksum(["int add(int a, int b);"])) */\nint add(int a, int b);"))
        #expect(text.contains("int sub(int a) { return -a; }") && !text.contains("int sub(int a, int b);"))
    }

    @Test func removedMethodsLoseTheirSkeletonButNotTheUsersCode() throws {
        var f = try marked(source)
        _ = try f.syncUserRegions([("Add", ["int add;"]), ("Sub", ["int sub;"]), ("Mul", ["int mul;"])])
        let text = f.render().replacing("int sub;", with: "int sub = 1;")
        var g = try marked(text)
        let orphans = try g.syncUserRegions([("Add", ["int add;"])])
        #expect(orphans == ["Sub"])
        let out = g.render()
        #expect(out.contains("int sub = 1;") && !out.contains("int mul;") && !out.contains("CHI_BEGIN(Mul)"))
    }

    @Test func aMissingAnchorIsAnErrorOnlyWhenSomethingMustBeAdded() throws {
        let noAnchor = "int x;\n"
        var f = try marked(noAnchor)
        let none = try f.syncUserRegions([])
        #expect(none.isEmpty)
        #expect(throws: GenerateError.self) { try f.syncUserRegions([("Add", ["int add;"])]) }
    }

    @Test func brokenMarkersAreErrorsWithTheirLine() {
        #expect(parseError("/* CHI_BEGIN(A) */\nx\n") == "f.c:1: CHI_BEGIN(A) is never closed by CHI_END(A)")
        #expect(parseError("x\n/* CHI_END(A) */\n") == "f.c:2: CHI_END(A) closes no region")
        #expect(parseError("/* CHI_BEGIN(A) */\n/* CHI_END(B) */\n")?.hasPrefix("f.c:2: CHI_END(B) inside the region CHI_BEGIN(A) opened on line 1") == true)
        #expect(parseError("// CHI_BEGIN(A)\n// CHI_BEGIN(B)\n")?.hasPrefix("f.c:2:") == true)
        #expect(parseError("/* CHI_BEGIN(A) */\n/* CHI_END(A) */\n/* CHI_BEGIN(A) */\n/* CHI_END(A) */\n") == "f.c:3: a second CHI_BEGIN(A) (the first is on line 1); merge them")
        #expect(parseError("/* CHI_AUTOGEN_METHODS */\n# CHI_AUTOGEN_METHODS\n")?.hasPrefix("f.c:2: a second CHI_AUTOGEN_METHODS") == true)
    }

    @Test func markersMustBeAWholeComment() throws {
        let f = try marked("x = 1; /* CHI_BEGIN(A) */\n * CHI_END(A)\n/* CHI_BEGIN(A) extra words */\n")
        #expect(f.userRegions.isEmpty)
        let g = try MarkedFile("  # CHI_AUTOGEN_BEGIN(m)\n  # CHI_AUTOGEN_END(m)\n", file: "CMakeLists.txt", style: .hash)
        #expect(g.pieces.count == 1)
    }
}
