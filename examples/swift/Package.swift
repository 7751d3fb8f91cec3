// swift-tools-version:6.0
// The seed's client example in Swift, on the native API (`import Chimaera`).
//   chimaera start --segment demo --detach
//   CHIMAERA_SEGMENT=demo swift run --package-path examples/swift SwiftClientExample
//   chimaera stop --segment demo
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
