import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// The staged `chimaera` tool (`make all`), which these tests start as a real daemon.
let stagedTool: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/ChimaeraTests/SwiftAPITests.swift
    return parts.joined(separator: "/") + "/build/bin/chimaera"
}()

/// A daemon on a unique segment, stopped (and killed if need be) when the test ends.
final class TestDaemon {
    nonisolated(unsafe) static var counter = 0
    let segment: String

    init() throws {
        Self.counter += 1
        segment = "swiftapi\(getpid())_\(Self.counter)"
        let moduleDir = String(stagedTool.dropLast("bin/chimaera".count)) + "lib/chimaera"
        setenv("CHI_MODULE_PATH", moduleDir, 1)
        let r = ChildProcess.run(stagedTool, ["start", "--segment", segment, "--detach"], timeoutMs: 30_000)
        guard r.status == 0 else { throw ChimaeraError(code: -1, message: "daemon did not start: \(r.output)") }
    }

    deinit {
        let pid = SharedSegment.livePid(of: segment)
        _ = ChildProcess.run(stagedTool, ["stop", "--segment", segment], timeoutMs: 20_000)
        if let pid, Sys.processAlive(pid) { kill(pid, SIGKILL) }
        _ = Sys.shmUnlink(SharedSegment.shmName(segment))
    }
}

@Suite(.serialized, .enabled(if: access(stagedTool, X_OK) == 0, "run `make all` first"))
struct SwiftAPITests {
    @Test func syncMdReachesEveryContainerAndBroadcastCountsThem() throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        let sm = try SmallMessageClient.create(client, name: "swift_sync", containersPerNode: 4)
        for i in 0..<4 { #expect(try sm.md(depth: 0, .directId(UInt64(i))) == 1) }
        #expect(try sm.md(depth: 0, .directHash(77)) == 1)
        #expect(try sm.md(depth: 3, .directId(0)) == 1)
        #expect(try sm.md(depth: 0, .globalBroadcast) == 4)
    }

    @Test func upgradeModuleSwapsTheCodeAndRefusesAnOlderVersion() throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        let sm = try SmallMessageClient.create(client, name: "swift_upgrade", containersPerNode: 2)
        #expect(try sm.md(depth: 0, .directId(1)) == 1)
        // `make bench-tools` stages small_message's version 2 (Md returns 2) for bench upgrade.
        let v2 = String(stagedTool.dropLast("bin/chimaera".count)) + "libexec/chimaera/libsmall_message_v2.so"
        let report = try client.upgradeModule("small_message", path: v2)
        #expect(report.contains("\"new_version\":2"))
        #expect(try sm.md(depth: 0, .directId(1)) == 2)
        #expect(try sm.md(depth: 2, .directId(0)) == 2)
        do {
            try client.upgradeModule("small_message", path: v2)
            Issue.record("the same version was accepted without force")
        } catch {
            #expect(error.code == -CInt(CHI_EVERSION))
        }
        #expect(try sm.md(depth: 0, .directId(0)) == 2)
    }

    @Test func asyncMdSuspendsInsteadOfBlockingAndAllComplete() async throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        let sm = try SmallMessageClient.create(client, name: "swift_async", containersPerNode: 2)
        let total = try await withThrowingTaskGroup(of: Int32.self) { group in
            for i in 0..<2000 {
                group.addTask { try await sm.mdAsync(depth: UInt32(i % 3), .directHash(UInt64(i))) }
            }
            var sum: Int32 = 0
            for try await r in group { sum += r }
            return sum
        }
        #expect(total == 2000)
    }

    @Test func errorsAreTypedAndNameTheProblem() throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        #expect(throws: ChimaeraError.self) { try client.registerModule("no_such_module_x") }
        do {
            try client.registerModule("no_such_module_x")
        } catch {
            #expect(error.code == ChimaeraError.noModule)
            #expect(error.message.contains("libno_such_module_x.so"))
        }
        do {
            _ = try client.pool(named: "never_made", module: "small_message")
            Issue.record("finding a missing pool succeeded")
        } catch {
            #expect(error.code == ChimaeraError.noPool)
        }
    }

    @Test func noRuntimeIsAnErrorWithinASecond() {
        let start = chi_now_ns()
        do {
            _ = try Client(segment: "swift_nobody_\(getpid())")
            Issue.record("attached to a segment nobody serves")
        } catch {
            #expect(error.code == ChimaeraError.noRuntime)
        }
        #expect(chi_now_ns() - start < 1_500_000_000)
    }

    @Test func sharedBuffersAreSeenByTheRuntimeWithoutACopy() throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        let sm = try SmallMessageClient.create(client, name: "swift_io")
        let buf = try client.buffer(size: 1 << 20)
        for i in 0..<buf.bytes.count { buf.bytes[i] = 0x5A }
        #expect(try sm.write(buf, pattern: 0x5A) == UInt64(1 << 20))
        buf.bytes[1000] = 0
        #expect(throws: ChimaeraError.self) { _ = try sm.write(buf, pattern: 0x5A) }
        #expect(try sm.read(into: buf, pattern: 0x33) == UInt64(1 << 20))
        #expect(buf.bytes.allSatisfy { $0 == 0x33 })
    }

    @Test func periodicTaskTimesOutThenStopsWithItsPool() async throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        let sm = try SmallMessageClient.create(client, name: "swift_periodic")
        let t = try client.newTask(chi_sm_md_task_t.self, pool: sm.pool, method: UInt32(CHI_SM_MD), .directId(0))
        t.setPeriod(ns: 2_000_000)
        try t.submit()
        do {
            try t.wait(timeoutNs: 50_000_000)
            Issue.record("a periodic task completed by itself")
        } catch {
            #expect(error.code == ChimaeraError.timedOut)
        }
        #expect(t.header.pointee.runs >= 5)
        try sm.pool.destroy()
        do {
            try await t.completion()
            Issue.record("a periodic task of a destroyed pool reported success")
        } catch {
            #expect(error.code == ChimaeraError.stopped)
        }
    }
}
