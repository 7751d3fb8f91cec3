import CChimaera
import Chimaera

// The `chimaera` tool's entry point (chimaera.h): Sources/chimaera/main.c calls it, so the
// daemon runs on libchimaera.so itself and modules bind to the same runtime.

@c(chi_tool_main)
public func chiToolMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var args: [String] = []
    var program = "chimaera"
    if let argv {
        for i in 1..<Int(max(argc, 1)) { if let a = argv[i] { args.append(String(cString: a)) } }
        // chi_make_repo and friends are symlinks to the tool: the name picks the command.
        if argc > 0, let a0 = argv[0] { program = String(String(cString: a0).split(separator: "/").last ?? "") }
    }
    return Tool.main(args, program: program)
}
