import ChimaeraSwift
import Glibc
import Synchronization
import Testing

// The Swift API over libchimaera.so, against real daemons started with the staged tool. This
// target links only the API (no runtime target), as a user's program does.

/// The staged `chimaera` tool (`make all`), which these tests start as a real daemon.
let stagedTool: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/ChimaeraSwiftTests/SwiftAPITests.swift
    return parts.joined(separator: "/") + "/build/bin/chimaera"
}()

func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs `path args` (output discarded) and returns its exit status; kills it after `timeoutMs`.
func runTool(_ args: [String], timeoutMs: Int) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv = ([stagedTool] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, stagedTool, &actions, nil, argv, environ) == 0 else { return -1 }
    let deadline = nowNs() + UInt64(timeoutMs) * 1_000_000
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { return -1 }
        if nowNs() > deadline {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return -1
        }
        usleep(10_000)
    }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// A flag one task sets and another polls.
final class Flag: Sendable {
    let value = Atomic<Int>(0)
}

/// A daemon on a unique segment, stopped (and killed if need be) when the test ends.
final class TestDaemon {
    nonisolated(unsafe) static var counter = 0
    let segment: String
    let pidFile: String

    init() throws {
        Self.counter += 1
        segment = "swiftapi\(getpid())_\(Self.counter)"
        pidFile = "/tmp/\(segment).pid"
        let moduleDir = String(stagedTool.dropLast("bin/chimaera".count)) + "lib/chimaera"
        setenv("CHI_MODULE_PATH", moduleDir, 1)
        guard runTool(["start", "--segment", segment, "--detach", "--pid-file", pidFile], timeoutMs: 30_000) == 0 else {
            throw ChimaeraError(code: -1, message: "daemon \(segment) did not start")
        }
    }

    deinit {
        var pid: Int32?
        if let f = fopen(pidFile, "r") {
            var line = [CChar](repeating: 0, count: 32)
            if fgets(&line, 32, f) != nil { pid = Int32(atoi(line)) }
            fclose(f)
        }
        _ = runTool(["stop", "--segment", segment], timeoutMs: 20_000)
        if let pid, kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        _ = shm_unlink("/chimaera_\(segment)")
        unlink(pidFile)
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
        let start = nowNs()
        do {
            _ = try Client(segment: "swift_nobody_\(getpid())")
            Issue.record("attached to a segment nobody serves")
        } catch {
            #expect(error.code == ChimaeraError.noRuntime)
        }
        #expect(nowNs() - start < 1_500_000_000)
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

    @Test func parkedAwaitsAllCompleteWhenTheAwaitingSideDoesNotPoll() async throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        client.awaitSpinNs = 0
        let sm = try SmallMessageClient.create(client, name: "swift_parked", containersPerNode: 2)
        let total = try await withThrowingTaskGroup(of: Int32.self) { group in
            for i in 0..<500 {
                group.addTask { try await sm.mdAsync(depth: UInt32(i % 4), .directHash(UInt64(i))) }
            }
            var sum: Int32 = 0
            for try await r in group { sum += r }
            return sum
        }
        #expect(total == 500)
    }

    @Test(arguments: [Int64(0), Int64(20_000)])
    func awaitedFailureIsTheSameErrorAsTheBlockingWaitsWhetherParkedOrPolled(spinNs: Int64) async throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        defer { client.close() }
        client.awaitSpinNs = spinNs
        let sm = try SmallMessageClient.create(client, name: "swift_fail")
        // Container 7 of a one-container pool; the blocking wait's error is the reference.
        let sync = try client.newTask(chi_sm_md_task_t.self, pool: sm.pool, method: UInt32(CHI_SM_MD), .directId(7))
        try sync.submit()
        var expected: ChimaeraError?
        do { try sync.wait(timeoutNs: 10_000_000_000) } catch { expected = error }
        #expect(expected?.code == -Int32(CHI_ENOCONTAINER))
        let t = try client.newTask(chi_sm_md_task_t.self, pool: sm.pool, method: UInt32(CHI_SM_MD), .directId(7))
        try t.submit()
        do {
            try await t.completion()
            Issue.record("a task to a container that does not exist succeeded")
        } catch {
            #expect(error == expected)
            #expect(!error.message.isEmpty)
        }
    }

    @Test func closingTheClientResumesAParkedAwaitWithStopped() async throws {
        let d = try TestDaemon()
        let client = try Client(segment: d.segment)
        let sm = try SmallMessageClient.create(client, name: "swift_close")
        let t = try client.newTask(chi_sm_md_task_t.self, pool: sm.pool, method: UInt32(CHI_SM_MD), .directId(0))
        t.setPeriod(ns: 5_000_000)
        try t.submit()
        let started = Flag()
        let waiter = Task { () -> Int32 in
            started.value.store(1, ordering: .releasing)
            do throws(ChimaeraError) {
                try await t.completion()
                return 0
            } catch {
                return error.code
            }
        }
        // Other suites run beside this one: wait for the waiter to run (without holding a
        // thread of the pool), then well past its 20 us poll, so it is parked when we close.
        let deadline = nowNs() + 10_000_000_000
        while started.value.load(ordering: .acquiring) == 0 && nowNs() < deadline {
            try await Task.sleep(nanoseconds: 1_000_000)
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        client.close()
        #expect(await waiter.value == ChimaeraError.stopped)
    }
}
