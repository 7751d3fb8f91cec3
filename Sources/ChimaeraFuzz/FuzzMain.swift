// The libFuzzer harness over Chimaera's parsers of outside bytes (docs/testing.md).
//
// `make fuzz` builds it with -sanitize=fuzzer,address and -DCHI_FUZZ, so libFuzzer supplies
// main and calls the two entry points below; each target is a symlink to the one binary,
// build-fuzz/bin/fuzz-<name>, and argv[0] picks it. Without CHI_FUZZ (a plain `swift build`,
// `swift test`) the same file is a small replayer: `ChimaeraFuzz <target> FILE...` runs files
// through a target, `ChimaeraFuzz <target> --write-seeds DIR` writes its seeds.
import CChimaera
import CChimaeraFuzzMods
import Chimaera
import Glibc

/// One fuzz target: its entry point and the seeds its corpus starts from.
struct Target: Sendable {
    let name: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void
    var seeds: @Sendable () -> [[UInt8]] = { [] }
}

/// Adding a target: its entry point in Sources/Chimaera/Fuzz, one line here, seed files in
/// Tests/fuzz/corpus/<name>/ (`make fuzz-seeds` writes them when it has a `seeds`).
let targets: [Target] = [
    Target(name: "frames", run: Fuzz.frames, seeds: Fuzz.framesSeeds),
    Target(name: "request", run: Fuzz.request, seeds: Fuzz.requestSeeds),
    Target(name: "reply", run: Fuzz.reply, seeds: Fuzz.replySeeds),
    Target(name: "validate", run: Fuzz.validate, seeds: Fuzz.validateSeeds),
    Target(name: "handshake", run: Fuzz.handshake, seeds: Fuzz.handshakeSeeds),
]

/// The target argv[0] named; set once, before the first input.
nonisolated(unsafe) var selected: Target?

/// One line on stderr.
func complain(_ line: String) {
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Sets up the modules and the segment and picks `name`; exits 2 naming the targets if none
/// has that name.
func setUp(_ name: String) -> Target {
    guard let t = targets.first(where: { $0.name == name }) else {
        complain("chimaera-fuzz: no target \"\(name)\"; targets: \(targets.map(\.name).joined(separator: ", "))\n")
        exit(2)
    }
    do {
        try Fuzz.setUp(modules: [("small_message", chi_fuzz_small_message_entry()),
                                 ("chimaera_admin", chi_fuzz_admin_entry())])
    } catch {
        complain("chimaera-fuzz: \(error.message)\n")
        exit(2)
    }
    return t
}

/// Writes the target's seeds as DIR/seed-<n>; exits 0.
func writeSeeds(_ t: Target, to dir: String) -> Never {
    mkdir(dir, 0o755)
    for (i, seed) in t.seeds().enumerated() {
        let path = "\(dir)/seed-\(i)"
        guard let f = fopen(path, "wb"), fwrite(seed, 1, seed.count, f) == seed.count, fclose(f) == 0 else {
            complain("chimaera-fuzz: cannot write \(path)\n")
            exit(1)
        }
    }
    exit(0)
}

/// libFuzzer's set-up hook: picks the target from argv[0] (`fuzz-<name>`); with
/// CHI_FUZZ_WRITE_SEEDS=DIR writes the target's seeds there and exits instead.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt
{
    let me = String(cString: argv.pointee[0]!)
    let base = me.split(separator: "/").last.map(String.init) ?? me
    guard base.hasPrefix("fuzz-") else {
        complain("chimaera-fuzz: run it as build-fuzz/bin/fuzz-<target> (targets: \(targets.map(\.name).joined(separator: ", ")))\n")
        exit(2)
    }
    let t = setUp(String(base.dropFirst(5)))
    if let dir = getenv("CHI_FUZZ_WRITE_SEEDS") { writeSeeds(t, to: String(cString: dir)) }
    selected = t
    return 0
}

/// libFuzzer's per-input hook: runs the selected target on one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected!.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if !CHI_FUZZ
/// The replayer main of a build without libFuzzer (see the top of this file).
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments
        guard args.count >= 3 else {
            complain("usage: ChimaeraFuzz TARGET FILE... | ChimaeraFuzz TARGET --write-seeds DIR\n")
            exit(2)
        }
        let t = setUp(args[1])
        if args[2] == "--write-seeds", args.count == 4 { writeSeeds(t, to: args[3]) }
        for path in args[2...] {
            guard let f = fopen(path, "rb") else {
                complain("ChimaeraFuzz: cannot open \(path)\n")
                exit(1)
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, f)
                if n <= 0 { break }
                bytes += chunk[..<n]
            }
            fclose(f)
            bytes.withUnsafeBytes { t.run($0) }
            print("\(path): ok")
        }
    }
}
#endif
