import Glibc
import Testing

@testable import ChimaeraDevKit

/// A fresh directory under /tmp, removed with everything in it when the test ends.
private final class TempDir {
    let path: String

    init() {
        var template = Array("/tmp/chi-gen-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    deinit { Self.remove(path) }

    private static func remove(_ p: String) {
        if RepoFiles.isDirectory(p) {
            for n in RepoFiles.list(p) { remove(p + "/" + n) }
            rmdir(p)
        } else {
            unlink(p)
        }
    }
}

/// Every file under `dir` with its text, keyed by path.
private func contents(_ dir: String) -> [String: String] {
    var out: [String: String] = [:]
    for n in RepoFiles.list(dir) {
        let p = dir + "/" + n
        if RepoFiles.isDirectory(p) {
            out.merge(contents(p)) { a, _ in a }
        } else {
            out[p] = (try? RepoFiles.read(p)) ?? nil
        }
    }
    return out
}

/// A repo with a C module `calc` and a Swift module `greeter`, made by the commands.
private func makeRepo(_ tmp: TempDir) -> String {
    let repo = tmp.path + "/repo"
    #expect(DevKit.makeRepo(dir: repo, namespace: "example") == 0)
    #expect(DevKit.makeMod(path: repo + "/calc") == 0)
    #expect(DevKit.makeMod(path: repo + "/greeter", lang: "swift") == 0)
    return repo
}

private func append(_ path: String, _ text: String) throws {
    let old = try RepoFiles.read(path) ?? ""
    try RepoFiles.write(path, old + text)
}

private let methods = """
    kAdd:
      id: 10
      params:
        a: in i64
        sum: out i64
    kPack:
      id: 11
      style: plain
      params:
        data: in bulk(size)
        size: in u64

    """

@Suite struct GenerateRefreshTests {
    @Test func makeModFillsTheGeneratedPartsAndAFreshRepoIsUpToDate() throws {
        let tmp = TempDir()
        let repo = makeRepo(tmp)
        let cmake = try RepoFiles.read(repo + "/CMakeLists.txt") ?? ""
        #expect(cmake.contains("add_subdirectory(calc)\nadd_subdirectory(greeter)"))
        #expect(RepoFiles.exists(repo + "/calc/include/calc/calc_methods.h"))
        #expect(RepoFiles.exists(repo + "/greeter/Sources/greeter/greeter_lib_exec.swift"))
        let plan = try Refresh.plan(repo: repo)
        #expect(plan.writes.isEmpty && plan.warnings.isEmpty && plan.modules == ["calc", "greeter"])
    }

    @Test func newMethodsReachEveryFileAndASecondRunWritesNothing() throws {
        let tmp = TempDir()
        let repo = makeRepo(tmp)
        try append(repo + "/calc/include/calc/calc_methods.yaml", methods)
        try append(repo + "/greeter/include/greeter/greeter_methods.yaml", methods)
        let first = try Refresh.run(repo: repo)
        // Per module: tasks, client, runtime, methods header, C++ client, lib_exec (C) or the
        // Swift sources; the new methods reach each.
        #expect(first.writes.count == 12)
        #expect(first.writes.contains { $0.path.hasSuffix("/calc/include/calc/calc_cpp_client.h") && $0.text.contains("struct AddTask") })
        #expect(first.writes.contains { $0.path.hasSuffix("/greeter/include/greeter/greeter_cpp_client.h") && $0.text.contains("struct AddTask") })
        let runtime = try RepoFiles.read(repo + "/calc/src/calc_runtime.c") ?? ""
        #expect(runtime.contains("static int Add(calc_state_t *state, calc_add_task_t *task, chi_rctx_t *rctx) {"))
        #expect(runtime.contains("static int32_t Pack(chi_rctx_t *rctx, const void *data, uint64_t size) {"))
        let exec = try RepoFiles.read(repo + "/calc/src/calc_lib_exec.h") ?? ""
        #expect(exec.contains("CHI_GEN_FIELD(calc_pack_task_t, data, CHI_FT_BULK, CHI_DIR_IN, 1, CHI_DT_WRITE)"))
        #expect(exec.contains("__extension__(const void *)Pack}"))
        #expect(exec.contains("case CALC_METHOD_ADD:") && !exec.contains("case CALC_METHOD_PACK:"))
        let swift = try RepoFiles.read(repo + "/greeter/Sources/greeter/greeter_lib_exec.swift") ?? ""
        #expect(swift.contains("let packHandler: @convention(c) (OpaquePointer?, UnsafeRawPointer?, UInt64) -> Int32"))
        let before = contents(repo)
        let second = try Refresh.run(repo: repo)
        #expect(second.writes.isEmpty)
        #expect(contents(repo) == before)
    }

    @Test func malformedYAMLChangesNothingAnywhere() throws {
        let tmp = TempDir()
        let repo = makeRepo(tmp)
        try append(repo + "/calc/include/calc/calc_methods.yaml", methods)
        let yaml = repo + "/greeter/include/greeter/greeter_methods.yaml"
        let line = (try RepoFiles.read(yaml) ?? "").split(separator: "\n", omittingEmptySubsequences: false).count
        try append(yaml, "kBad: 8\n")
        let before = contents(repo)
        do {
            _ = try Refresh.run(repo: repo)
            Issue.record("a refresh with a reserved id succeeded")
        } catch {
            #expect(error.all.map(\.description) == [
                "\(yaml):\(line): id 8 of kBad is reserved: ids 6-9 lie between the inherited methods (0-5) and custom ones (10 and up)"
            ])
        }
        #expect(contents(repo) == before)
    }

    @Test func deletedMarkersAreReportedNotGuessedAt() throws {
        let tmp = TempDir()
        let repo = makeRepo(tmp)
        let tasks = repo + "/calc/include/calc/calc_tasks.h"
        let text = try RepoFiles.read(tasks) ?? ""
        try RepoFiles.write(tasks, text.replacing("/* CHI_AUTOGEN_END(tasks) */\n", with: ""))
        #expect(throws: GenerateErrors.self) { try Refresh.plan(repo: repo) }
    }

    @Test func moduleMetadataMustMatchItsDirectory() throws {
        let tmp = TempDir()
        let repo = makeRepo(tmp)
        try RepoFiles.write(repo + "/calc/chimaera_mod.yaml", "name: other\nlanguage: c\n")
        do {
            _ = try Refresh.plan(repo: repo)
            Issue.record("a misnamed module was accepted")
        } catch {
            #expect(error.all.first?.description.contains("chimaera_mod.yaml:1: the module is named \"other\"") == true)
        }
    }

    @Test func commandsRefuseBadArguments() {
        let tmp = TempDir()
        #expect(DevKit.makeRepo(dir: tmp.path + "/r", namespace: "Bad-NS") == 2)
        #expect(DevKit.makeMod(path: tmp.path + "/nowhere/m") == 1)
        #expect(DevKit.refreshRepo(repo: tmp.path) == 1)
        let repo = makeRepo(tmp)
        #expect(DevKit.makeMod(path: repo + "/calc") == 1)
        #expect(DevKit.makeMod(path: repo + "/x", lang: "rust") == 2)
        #expect(DevKit.makeRepo(dir: repo, namespace: "example") == 1)
        #expect(DevKit.command(forProgram: "chi_refresh_repo") == "refresh-repo")
        #expect(DevKit.command(forProgram: "chimaera") == nil)
    }
}
