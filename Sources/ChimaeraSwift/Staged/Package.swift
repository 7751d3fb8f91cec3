// swift-tools-version:6.0
// The Swift API (product ChimaeraSwift, `import ChimaeraSwift`) as `make` stages and installs
// it: <prefix>/share/chimaera/ChimaeraSwift, beside <prefix>/include/chimaera and
// <prefix>/lib/libchimaera.so. A program depends on it by path:
//   .package(path: "/usr/local/share/chimaera/ChimaeraSwift")
//   .product(name: "ChimaeraSwift", package: "ChimaeraSwift")
// and links the prefix's libchimaera.so with that directory as its run path, so it runs (in
// embedded mode too) with no environment variable. The sources are copies of the Chimaera
// repository's Sources/ChimaeraSwift and Sources/CChimaeraABI.
import PackageDescription

let prefix = Context.packageDirectory.split(separator: "/", omittingEmptySubsequences: false)
    .dropLast(3).joined(separator: "/")  // share/chimaera/ChimaeraSwift
let lib = prefix + "/lib"

let package = Package(
    name: "ChimaeraSwift",
    products: [.library(name: "ChimaeraSwift", targets: ["ChimaeraSwift"])],
    targets: [
        .target(name: "CChimaeraABI"),
        .target(
            name: "ChimaeraSwift",
            dependencies: ["CChimaeraABI"],
            linkerSettings: [.unsafeFlags(["-L\(lib)", "-Xlinker", "-rpath", "-Xlinker", lib])]
        ),
    ]
)
