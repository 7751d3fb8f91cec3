import Glibc

/// The file operations the module tools need, over Glibc (the core does not link Foundation).
enum RepoFiles {
    /// The file's text, or nil if it does not exist.
    ///
    /// - Throws: `GenerateError` if it exists but cannot be read.
    static func read(_ path: String) throws(GenerateError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw GenerateError(file: path, line: nil, message: "cannot read: \(errnoText())")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw GenerateError(file: path, line: nil, message: "cannot read: \(errnoText())") }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Replaces the file's contents atomically (write a temporary file, then rename), creating
    /// parent directories as needed. A reader never sees half a file.
    static func write(_ path: String, _ text: String) throws(GenerateError) {
        try makeDirectories(parent(path))
        let tmp = "\(path).chi-tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw GenerateError(file: path, line: nil, message: "cannot write: \(errnoText())") }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let why = errnoText()
                close(fd)
                unlink(tmp)
                throw GenerateError(file: path, line: nil, message: "cannot write: \(why)")
            }
            done += n
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let why = errnoText()
            unlink(tmp)
            throw GenerateError(file: path, line: nil, message: "cannot replace: \(why)")
        }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(GenerateError) {
        if path.isEmpty || isDirectory(path) { return }
        try makeDirectories(parent(path))
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw GenerateError(file: path, line: nil, message: "cannot create directory: \(errnoText())")
        }
    }

    /// Whether anything exists at `path`.
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` is a directory (following symlinks).
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The names in a directory, sorted, without `.` and `..`; empty if it cannot be read.
    static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// `a/b` for `a/b/c`; "" for a bare name; "/" for `/c`.
    static func parent(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// `c` for `a/b/c/`.
    static func baseName(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return String(p) }
        return String(p[p.index(after: slash)...])
    }

    /// `dir/name`, without doubling a slash.
    static func join(_ dir: String, _ name: String) -> String {
        dir.isEmpty ? name : dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }
}

/// The text of the current errno (the kit needs no runtime, so not the runtime's `Sys`).
func errnoText(_ e: CInt = errno) -> String { String(cString: strerror(e)) }
