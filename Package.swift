// swift-tools-version:6.0
// Chimaera: a modular runtime for data-intensive tasks. The C ABI lives in include/chimaera;
// libchimaera.so is the `chimaera` dynamic product, built by `make` with the flags that make
// it self-contained (see Makefile).
import PackageDescription

// The `chimaera` tool links libchimaera.so itself (-lchimaera), so it can only be linked once
// that library exists: `make` builds the library first, then the tool with CHIMAERA_TOOL=1.
// Without it (`swift build`, `swift test`) the tool target and its dependency are left out.
let buildTool = Context.environment["CHIMAERA_TOOL"] == "1"

// The Swift API (product ChimaeraSwift) is a thin layer over libchimaera.so's C ABI, so a
// program that uses it holds no runtime of its own: it links the library `make` staged in
// build/lib (or the one in $CHIMAERA_PREFIX/lib, an installed tree) and records that directory
// as its run path, so it runs, embedded mode included, with no environment variable.
// CHIMAERA_RPATH overrides the run path (the Makefile stages bench programs with $ORIGIN).
let chimaeraLib = (Context.environment["CHIMAERA_PREFIX"] ?? Context.packageDirectory + "/build") + "/lib"
let chimaeraRpath = Context.environment["CHIMAERA_RPATH"] ?? chimaeraLib
// Its tests link the library too, so `swift test` needs `make` first (as the daemon tests do);
// CHIMAERA_SWIFT_TESTS=0 leaves them out. (Not a check that the file exists: SwiftPM caches the
// evaluated manifest by its text and environment, so the answer would stick.)
let swiftAPITests = Context.environment["CHIMAERA_SWIFT_TESTS"] != "0"
// `chimaera bench swift`'s program links the library as well: `make` adds it
// (CHIMAERA_SWIFT_BENCH=1), so a plain `swift build` links nothing that needs the library.
let buildSwiftBench = Context.environment["CHIMAERA_SWIFT_BENCH"] == "1"

let package = Package(
    name: "Chimaera",
    products: [
        .library(name: "chimaera", type: .dynamic, targets: ["ChimaeraCExports"]),
        // The native Swift API (`import ChimaeraSwift`): Client, Pool, DomainQuery, module
        // clients, over libchimaera.so.
        .library(name: "ChimaeraSwift", targets: ["ChimaeraSwift"]),
    ] + (buildSwiftBench ? [
        // `chimaera bench swift`'s program, staged in libexec/chimaera by `make`.
        .executable(name: "chi_bench_swift", targets: ["ChimaeraBenchSwift"]),
    ] : []) + (buildTool ? [.executable(name: "chimaera-tool", targets: ["ChimaeraTool"])] : []),
    dependencies: [
        // The transport between nodes (Sources/Chimaera/Remote).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ] + (buildTool ? [.package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")] : []),
    targets: [
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1",
                       providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CNuma", pkgConfig: "numa",
                       providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "CChimaera", linkerSettings: [.linkedLibrary("ffi")]),
        // The YAML reader the runtime's config and the module kit share (no runtime in it).
        .target(name: "ChimaeraYAML", dependencies: ["CYAML"]),
        // The module kit: chi_make_repo, chi_make_mod, chi_refresh_repo's generators and
        // templates. It needs no runtime.
        .target(name: "ChimaeraDevKit", dependencies: ["ChimaeraYAML"]),
        .target(
            name: "Chimaera",
            dependencies: [
                "CChimaera", "CYAML", "CNuma", "COpenSSL", "ChimaeraYAML",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // The metrics endpoint's HTTP/1.1 (Sources/Chimaera/Metrics).
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Workers own their state and never share a class instance's mutable storage
            // across threads, so dynamic exclusivity checks only cost time on the task path.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .target(
            name: "ChimaeraCExports",
            dependencies: ["Chimaera", "CChimaera"],
            exclude: ["chimaera.map"]
        ),
        // The libFuzzer harness (`make fuzz`, docs/testing.md): the targets' entry points live in
        // Sources/Chimaera/Fuzz; this executable selects one and, for the task codec, links the
        // built-in modules' sources (CChimaeraFuzzMods) for their real descriptors. Built
        // without -DCHI_FUZZ it is a replayer, so a plain `swift build` still links it.
        .target(name: "CChimaeraFuzzMods", dependencies: ["CChimaera"]),
        .executableTarget(
            name: "ChimaeraFuzz",
            dependencies: ["Chimaera", "ChimaeraCExports", "CChimaera", "CChimaeraFuzzMods"]
        ),
        // libchimaera.so's C ABI as Swift sees it: the public headers (its include/chimaera is
        // a symlink to include/chimaera), linked -lchimaera. Used by the Swift API and the
        // tool. A C target, not a system library, so its header path reaches every importer.
        .target(name: "CChimaeraABI"),
        .target(
            name: "ChimaeraSwift",
            dependencies: ["CChimaeraABI"],
            // Staged/: the package `make` stages in share/chimaera/ChimaeraSwift.
            exclude: ["Staged"],
            linkerSettings: [.unsafeFlags(["-L\(chimaeraLib)", "-Xlinker", "-rpath", "-Xlinker", chimaeraRpath])]
        ),
        .testTarget(
            name: "ChimaeraTests",
            dependencies: ["Chimaera", "CChimaera", "ChimaeraYAML", "ChimaeraDevKit",
                           .product(name: "NIOCore", package: "swift-nio")]
        ),
    ] + (buildSwiftBench ? [
        .executableTarget(name: "ChimaeraBenchSwift", dependencies: ["ChimaeraSwift"]),
    ] : []) + (swiftAPITests ? [
        // The Swift API against a real daemon (needs `make all`: the library and the tool).
        .testTarget(name: "ChimaeraSwiftTests", dependencies: ["ChimaeraSwift"]),
    ] : []) + (buildTool ? [
        // The `chimaera` command: reaches the runtime only through libchimaera.so's C ABI,
        // so a process that runs a runtime holds the one copy inside that library.
        .executableTarget(
            name: "ChimaeraTool",
            dependencies: ["CChimaeraABI", "ChimaeraDevKit", "ChimaeraYAML",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
    ] : [])
)
