// swift-tools-version:6.0
// Chimaera: a modular runtime for data-intensive tasks. The C ABI lives in include/chimaera;
// libchimaera.so is the `chimaera` dynamic product, built by `make` with the flags that make
// it self-contained (see Makefile).
import PackageDescription

let package = Package(
    name: "Chimaera",
    products: [
        .library(name: "chimaera", type: .dynamic, targets: ["ChimaeraCExports"]),
        // The native Swift API (`import Chimaera`): Client, Pool, DomainQuery, module clients.
        .library(name: "ChimaeraSwift", targets: ["Chimaera"]),
    ],
    dependencies: [
        // The transport between nodes (Sources/Chimaera/Remote).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1",
                       providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CNuma", pkgConfig: "numa",
                       providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "CChimaera", linkerSettings: [.linkedLibrary("ffi")]),
        .target(
            name: "Chimaera",
            dependencies: [
                "CChimaera", "CYAML", "CNuma", "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
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
        .testTarget(
            name: "ChimaeraTests",
            dependencies: ["Chimaera", "CChimaera", .product(name: "NIOCore", package: "swift-nio")]
        ),
    ]
)
