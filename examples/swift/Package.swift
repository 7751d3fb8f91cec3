// swift-tools-version:6.0
// The seed's client example in Swift, on the native API (`import ChimaeraSwift`, which sits on
// libchimaera.so's C ABI: the program holds no runtime of its own).
// Build against the tree `make` staged in build/ (or an installed one: CHIMAERA_PREFIX=/usr/local):
//   swift build --package-path examples/swift
// Attached to a running daemon:
//   chimaera start --segment demo --detach
//   CHIMAERA_SEGMENT=demo examples/swift/.build/debug/SwiftClientExample
//   chimaera stop --segment demo
// Embedded (the runtime inside this process; no environment variable needed):
//   examples/swift/.build/debug/SwiftClientExample --embedded
import PackageDescription

let package = Package(
    name: "SwiftClientExample",
    dependencies: [.package(name: "Chimaera", path: "../..")],
    targets: [
        .executableTarget(
            name: "SwiftClientExample",
            dependencies: [.product(name: "ChimaeraSwift", package: "Chimaera")]
        ),
    ]
)
