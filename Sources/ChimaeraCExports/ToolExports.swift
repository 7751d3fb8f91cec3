import CChimaera
import Chimaera

// The `chimaera` tool's entry point (chimaera.h): Sources/chimaera/main.c calls it, so the
// daemon runs on libchimaera.so itself and modules bind to the same runtime.

@c(chi_tool_main)
public func chiToolMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var args: [String] = []
    if let argv {
        for i in 1..<Int(max(argc, 1)) { if let a = argv[i] { args.append(String(cString: a)) } }
    }
    return Tool.main(args)
}
