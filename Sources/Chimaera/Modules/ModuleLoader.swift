import CChimaera
import Glibc

/// Finds and loads modules by name: `lib<name>.so` on `CHI_MODULE_PATH`, then
/// `LD_LIBRARY_PATH`, then the configured `module_path`, then the built-in module directory
/// beside libchimaera.so. Loaded modules stay loaded for the life of the process.
package final class ModuleLoader: @unchecked Sendable {
    private var loaded: [String: Module] = [:]
    private var lock = pthread_mutex_t()
    private let configPaths: [String]

    package init(configPaths: [String]) {
        self.configPaths = configPaths
        pthread_mutex_init(&lock, nil)
    }

    /// The directories searched, in order.
    package var searchPath: [String] {
        var dirs: [String] = []
        func add(_ env: String) {
            guard let v = getenv(env) else { return }
            dirs += String(cString: v).split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        add("CHI_MODULE_PATH")
        add("LD_LIBRARY_PATH")
        dirs += configPaths
        dirs.append(Self.builtinDirectory)
        return dirs
    }

    /// `<dir of libchimaera.so>/chimaera`, where `make install` puts the built-in modules.
    package static var builtinDirectory: String {
        let me = String(cString: chi_self_path())
        guard let slash = me.lastIndex(of: "/") else { return "./chimaera" }
        return String(me[..<slash]) + "/chimaera"
    }

    /// A module name is a file-name stem: letters, digits, `_`, `-`, `.`; no path.
    package static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count < Int(CHI_NAME_MAX) && name.utf8.allSatisfy {
            ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122)
                || $0 == 95 || $0 == 45 || $0 == 46
        } && name.first != "."
    }

    /// The loaded module `name`, loading it on first use.
    package func load(_ name: String) throws(ChiError) -> Module {
        guard Self.validName(name) else {
            throw ChiError(EINVAL, "invalid module name \"\(name)\": use letters, digits, '_', '-' or '.'")
        }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let m = loaded[name] { return m }
        let file = "lib\(name).so"
        let dirs = searchPath
        for dir in dirs {
            let path = dir.hasSuffix("/") ? dir + file : dir + "/" + file
            guard access(path, R_OK) == 0 else { continue }
            let m = try open(name: name, path: path)
            loaded[name] = m
            return m
        }
        throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\" not found: no \(file) in \(dirs.joined(separator: ":")) (searched CHI_MODULE_PATH, LD_LIBRARY_PATH, runtime.module_path, then the built-in directory)")
    }

    /// Whether `name` is loaded.
    package func isLoaded(_ name: String) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return loaded[name] != nil
    }

    private func open(name: String, path: String) throws(ChiError) -> Module {
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\": cannot load \(path): \(why)")
        }
        guard let sym = dlsym(h, CHI_MODULE_ENTRY_SYMBOL) else {
            dlclose(h)
            throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\": \(path) does not export \(CHI_MODULE_ENTRY_SYMBOL)")
        }
        let entry = unsafeBitCast(sym, to: chi_module_entry_fn.self)
        guard let vt = entry() else {
            throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\": \(CHI_MODULE_ENTRY_SYMBOL) in \(path) returned NULL")
        }
        let major = Int(vt.pointee.abi_major)
        guard major == Int(CHI_ABI_MAJOR) else {
            throw ChiError(CInt(CHI_EABI), "module \"\(name)\" (\(path)) was built for Chimaera ABI \(major).\(vt.pointee.abi_minor), but this runtime is ABI \(CHI_ABI_MAJOR).\(CHI_ABI_MINOR); rebuild the module")
        }
        // An older module's vtable is smaller: copy what it has, the rest stays zero (NULL).
        var copy = chi_module_vtable_t()
        let n = min(Int(vt.pointee.size), MemoryLayout<chi_module_vtable_t>.size)
        guard n >= MemoryLayout<chi_module_vtable_t>.offset(of: \.run)! + 8 else {
            throw ChiError(CInt(CHI_EABI), "module \"\(name)\" (\(path)) has a vtable of \(vt.pointee.size) bytes, too small")
        }
        withUnsafeMutableBytes(of: &copy) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: vt, count: n))
        }
        return try Module(name: name, path: path, vtable: copy, handle: h)
    }
}
