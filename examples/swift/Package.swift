// swift-tools-version:6.0
// The seed's client example in Swift, on the native API (`import ChimaeraSwift`, which sits on
// libchimaera.so's C ABI: the program holds no runtime of its own). It depends on the Swift API
// package `make` stages in build/share/chimaera/ChimaeraSwift, or an installed tree's
// (CHIMAERA_PREFIX=/usr/local at build time), and runs with no environment variable.
//   make && swift build --package-path examples/swift
// Attached to a running daemon:
//   chimaera start --segment demo --detach
//   CHIMAERA_SEGMENT=demo examples/swift/.build/debug/SwiftClientExample
//   chimaera stop --segment demo
// Embedded (the runtime inside this process):
//   examples/swift/.build/debug/SwiftClientExample --embedded
import PackageDescription

let prefix = Context.environment["CHIMAERA_PREFIX"] ?? Context.packageDirectory + "/../../build"

let package = Package(
    name: "SwiftClientExample",
    dependencies: [.package(path: prefix + "/share/chimaera/ChimaeraSwift")],
    targets: [
        .executableTarget(
            name: "SwiftClientExample",
            dependencies: [.product(name: "ChimaeraSwift", package: "ChimaeraSwift")]
        ),
    ]
)
