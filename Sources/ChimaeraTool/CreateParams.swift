import CChimaeraABI
import ChimaeraYAML
import Glibc

/// A pool's create parameters given by name in a compose file, encoded as the bytes the
/// module's Create expects (`chi_pool_create_opts_t.params`).
///
/// Modules publish no descriptor of their create parameters at run time (their method
/// descriptors cover tasks, not Create), so the layouts the tool knows are listed here, one
/// function per module; the built-in bdev is the one with parameters. A module not listed takes
/// no parameters from a compose file. When modules describe kCreate's parameters (the module
/// kit's `<name>_methods.yaml` already declares them), this table can give way to a generic
/// encoder over that descriptor.
enum CreateParams {
    /// The bytes for `params` of a pool of `module`, empty when `params` is empty.
    ///
    /// - Parameters:
    ///   - owner: The pool, as errors name it (`pool "x"`).
    /// - Throws: An unknown key, a missing required key or a bad value, naming the key.
    static func encode(module: String, params: [YAMLNode.Entry], line: Int, owner: String,
                       in f: DeployFile) throws(FileLineError) -> [UInt8] {
        switch module {
        case CHI_BDEV_MODULE_NAME: return try bdev(params, line: line, owner: owner, in: f)
        default:
            guard let first = params.first else { return [] }
            throw f.error(first.keyLine, "\(owner): params.\(first.key): module \"\(module)\" takes no create parameters the tool knows of (known: bdev's url or path, size, buffered, temporary, data_high_latency)")
        }
    }

    /// bdev: `url` (fs:///abs/path or ram://) or `path` (a file, made an fs:// URL), `size`
    /// per container, and the flags as booleans.
    private static func bdev(_ params: [YAMLNode.Entry], line: Int, owner: String,
                             in f: DeployFile) throws(FileLineError) -> [UInt8] {
        var url: String?, urlLine = line, size: UInt64?, flags: UInt32 = 0
        for e in params {
            let key = "\(owner): params." + e.key
            switch e.key {
            case "url", "path":
                if url != nil {
                    throw f.error(e.keyLine, "\(key): give either params.url or params.path, not both")
                }
                let v = try f.string(e.value, key)
                url = e.key == "path" ? "fs://" + v : v
                urlLine = e.keyLine
            case "size":
                let v = try f.size(e.value, key)
                guard v >= CHI_BDEV_UNIT else {
                    throw f.error(e.keyLine, "\(key): \(v) bytes is less than one block (\(CHI_BDEV_UNIT) bytes)")
                }
                size = v
            case "buffered":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_BUFFERED) }
            case "temporary":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_TEMPORARY) }
            case "data_high_latency":
                if try f.bool(e.value, key) { flags |= UInt32(CHI_BDEV_CREATE_DATA_HIGH_LATENCY) }
            default:
                throw f.error(e.keyLine, "\(key): unknown create parameter of bdev (known: url or path, size, buffered, temporary, data_high_latency)")
            }
        }
        guard let url else { throw f.error(line, "\(owner): params.url (or params.path) is required for a bdev pool") }
        guard let size else { throw f.error(line, "\(owner): params.size is required for a bdev pool") }
        guard url.utf8.count < Int(CHI_BDEV_URL_MAX) else {
            throw f.error(urlLine, "\(owner): params.url: longer than \(CHI_BDEV_URL_MAX - 1) bytes")
        }
        var p = chi_bdev_params(url, size, flags)
        return withUnsafeBytes(of: &p) { Array($0) }
    }
}
