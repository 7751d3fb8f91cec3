// The seed's "Client API Example" in Swift: register small_message, create the pool
// "ipc_test", run 256 Md calls (then 256 more that suspend instead of blocking), check each
// returns 1 and print the latency; then create a bdev pool from create parameters given by
// name. `--embedded` runs the runtime inside this process (on a
// segment of its own) instead of attaching to a daemon. Build and run lines: see Package.swift.
import ChimaeraSwift
import Glibc

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The files of libchimaera.so this process has mapped (one: the library holds the runtime).
func mappedChimaeraLibraries() -> [String] {
    guard let f = fopen("/proc/self/maps", "r") else { return [] }
    defer { fclose(f) }
    var paths: [String] = []
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), f) != nil {
        let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = text.firstIndex(of: "/") else { continue }
        let path = String(text[slash...])
        if path.contains("libchimaera.so"), !paths.contains(path) { paths.append(path) }
    }
    return paths
}

let embedded = CommandLine.arguments.dropFirst().contains("--embedded")
do {
    let client = embedded
        ? try Client(segment: "swift_example_\(getpid())", mode: .embedded)
        : try Client()
    try client.registerModule("small_message")
    let sm = try SmallMessageClient.create(client, name: "ipc_test")
    let ops = 256
    print("OPS: \(ops)")
    var t0 = now()
    for i in 0..<ops {
        let ret = try sm.md(depth: 0, .directHash(UInt64(i)))
        precondition(ret == 1, "Md returned \(ret)")
    }
    var us = Double(now() - t0) / 1000
    print("Latency: \(ops) ops, \(us) us total, \(us / Double(ops)) us/op, \(Double(ops) / us) MOps/s")
    t0 = now()
    for i in 0..<ops {
        let ret = try await sm.mdAsync(depth: 0, .directHash(UInt64(i)))
        precondition(ret == 1, "Md returned \(ret)")
    }
    us = Double(now() - t0) / 1000
    print("Async latency: \(ops) ops, \(us) us total, \(us / Double(ops)) us/op")
    // Create parameters by name, laid out from the module's own create descriptor.
    let dev = try client.createPool(module: "bdev", name: "swift_dev", ["path": "ram://", "size": 4_194_304])
    let declared = try CreateParams.describe(module: "bdev")?.fields.map(\.description) ?? []
    print("Pool \(dev.name) (bdev, id \(dev.id)) created from: \(declared.joined(separator: ", "))")
    do {
        _ = try client.createPool(module: "bdev", name: "swift_dev2", ["sise": 1])
        print("error: an unknown create parameter was accepted")
        exit(1)
    } catch {
        print("Refused: \(error.message)")
    }
    try dev.destroy()
    let libs = mappedChimaeraLibraries()
    print("Runtime: \(embedded ? "embedded" : "attached"), libchimaera.so mapped from \(libs.count) file(s): \(libs.joined(separator: " "))")
    client.close()
} catch {
    print("error: \(error)")
    exit(1)
}
