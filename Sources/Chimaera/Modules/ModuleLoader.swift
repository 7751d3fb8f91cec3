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

    /// Modules loaded by `loadCurrent`, by file.
    private var byPath: [String: Module] = [:]

    /// Module `name` from the file the search path names now, loaded once per file: for
    /// chi_module_describe, whose callers (bindings, tests) may change CHI_MODULE_PATH between
    /// calls and must then get the descriptors of the module they will talk to, not of the
    /// first file of that name this process saw.
    package func loadCurrent(_ name: String) throws(ChiError) -> Module {
        guard Self.validName(name), let path = find(name) else { return try load(name) }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let m = byPath[path] { return m }
        let m = try open(name: name, path: path)
        byPath[path] = m
        return m
    }

    /// The loaded module `name`, if any.
    package func loaded(_ name: String) -> Module? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return loaded[name]
    }

    /// The loaded modules, by name.
    func modules() -> [Module] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return loaded.values.sorted { $0.name < $1.name }
    }

    /// Where `lib<name>.so` is found on the search path now.
    func find(_ name: String) -> String? {
        let file = "lib\(name).so"
        for dir in searchPath {
            let path = dir.hasSuffix("/") ? dir + file : dir + "/" + file
            if access(path, R_OK) == 0 { return path }
        }
        return nil
    }

    /// Modules replaced by an upgrade: never unloaded (a task, a fiber or a reader of a
    /// pool's module pointer may still use their code), only kept.
    private var replaced: [Module] = []
    private var candidates = 0

    /// Loads the new build of module `name` from `path` for an upgrade, beside the loaded
    /// one: `dlopen` hands back the old handle for a path it has open, so the file is first
    /// copied to a private directory under a fresh name (and unlinked once mapped). The file
    /// must be a regular file owned by this user or root and writable by no one else: the
    /// runtime is about to run its code.
    func loadCandidate(_ name: String, path: String) throws(ChiError) -> Module {
        guard Self.validName(name) else {
            throw ChiError(EINVAL, "invalid module name \"\(name)\"")
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\": cannot read \(path): \(Sys.errnoText(errno))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw ChiError(EINVAL, "module \"\(name)\": \(path) is not a regular file")
        }
        guard st.st_uid == geteuid() || st.st_uid == 0, st.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw ChiError(EPERM, "module \"\(name)\": \(path) must be owned by this user or root and writable by no one else")
        }
        pthread_mutex_lock(&lock)
        candidates += 1
        let seq = candidates
        pthread_mutex_unlock(&lock)
        let dir = "/tmp/chimaera-modules-\(getpid())"
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw ChiError(errno, "cannot make \(dir): \(Sys.errnoText(errno))")
        }
        var dst = stat()
        guard lstat(dir, &dst) == 0, dst.st_mode & S_IFMT == S_IFDIR, dst.st_uid == geteuid(),
              dst.st_mode & 0o077 == 0 else {
            throw ChiError(EPERM, "\(dir) is not a private directory of this user")
        }
        let copy = "\(dir)/lib\(name).\(seq).so"
        try Self.copyFile(path, to: copy)
        defer { unlink(copy) }
        let m = try open(name: name, path: copy)
        m.origin = path
        let declared = m.vtable.name.map { String(cString: $0) } ?? ""
        guard declared == name else {
            m.close()
            throw ChiError(EINVAL, "\(path) is module \"\(declared)\", not \"\(name)\"")
        }
        return m
    }

    private static func copyFile(_ from: String, to: String) throws(ChiError) {
        let src = Glibc.open(from, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw ChiError(errno, "cannot open \(from): \(Sys.errnoText(errno))") }
        defer { Glibc.close(src) }
        let dst = Glibc.open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
        guard dst >= 0 else { throw ChiError(errno, "cannot create \(to): \(Sys.errnoText(errno))") }
        defer { Glibc.close(dst) }
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
            if n == 0 { break }
            guard n > 0 else { throw ChiError(errno, "cannot read \(from): \(Sys.errnoText(errno))") }
            let w = buf.withUnsafeBytes { write(dst, $0.baseAddress, n) }
            guard w == n else { throw ChiError(EIO, "cannot write \(to)") }
        }
    }

    /// Makes `m` the module loaded as `name` (an upgrade's commit); the old one is kept.
    func replace(_ name: String, with m: Module) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let old = loaded[name] { replaced.append(old) }
        loaded[name] = m
    }

    /// A candidate whose hooks may have run (a refused or aborted upgrade): kept loaded, as
    /// its code may still be on a stack or referenced by state it made.
    func keep(_ m: Module) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        replaced.append(m)
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
            dlclose(h)
            throw ChiError(CInt(CHI_ENOMODULE), "module \"\(name)\": \(CHI_MODULE_ENTRY_SYMBOL) in \(path) returned NULL")
        }
        // Read before any dlclose below: the vtable lives in the module's mapping.
        let major = Int(vt.pointee.abi_major), minor = Int(vt.pointee.abi_minor)
        let vtSize = Int(vt.pointee.size)
        guard major == Int(CHI_ABI_MAJOR) else {
            dlclose(h)
            throw ChiError(CInt(CHI_EABI), "module \"\(name)\" (\(path)) was built for Chimaera ABI \(major).\(minor), but this runtime is ABI \(CHI_ABI_MAJOR).\(CHI_ABI_MINOR); rebuild the module")
        }
        // An older module's vtable is smaller: copy what it has, the rest stays zero (NULL).
        var copy = chi_module_vtable_t()
        let n = min(vtSize, MemoryLayout<chi_module_vtable_t>.size)
        guard n >= MemoryLayout<chi_module_vtable_t>.offset(of: \.run)! + 8 else {
            dlclose(h)
            throw ChiError(CInt(CHI_EABI), "module \"\(name)\" (\(path)) has a vtable of \(vtSize) bytes, too small")
        }
        withUnsafeMutableBytes(of: &copy) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: vt, count: n))
        }
        return try Module(name: name, path: path, vtable: copy, handle: h)
    }
}
