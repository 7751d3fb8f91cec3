import CChimaera
import Glibc

/// A loaded module: its vtable (copied, zero-extended from older, smaller ones) and its
/// method descriptors indexed by id.
package final class Module: @unchecked Sendable {
    package let name: String
    package let path: String
    /// The file it came from (an upgrade's candidate is loaded from a private copy).
    package var origin: String
    package let vtable: chi_module_vtable_t
    package let version: UInt32
    /// The vtable at a stable address, for chi_module_describe.
    package let vtablePtr: UnsafeMutablePointer<chi_module_vtable_t>
    /// Method descriptors by id (ids are small: 0-5 inherited, custom from 10).
    private let methodsById: [UnsafePointer<chi_method_desc_t>?]
    /// The layout of the create parameters (CHI_MF_CREATE_PARAMS, ABI 1.7), kept out of
    /// `methodsById`: it describes no task, so nothing dispatches, checks or encodes by it.
    package let createParams: UnsafePointer<chi_method_desc_t>?
    /// Prepared libffi calls of plain-function handlers, by method id.
    private var handlersById: [OpaquePointer?] = []
    private let handle: UnsafeMutableRawPointer?

    /// Unloads a module none of whose hooks ever ran (a candidate refused before use).
    func close() {
        if let handle { dlclose(handle) }
    }

    init(name: String, path: String, vtable: chi_module_vtable_t, handle: UnsafeMutableRawPointer?)
        throws(ChiError)
    {
        self.name = name
        self.path = path
        origin = path
        self.vtable = vtable
        self.version = vtable.version
        self.handle = handle
        vtablePtr = .allocate(capacity: 1)
        vtablePtr.initialize(to: vtable)
        var table: [UnsafePointer<chi_method_desc_t>?] = []
        var createParams: UnsafePointer<chi_method_desc_t>?
        if let methods = vtable.methods {
            for i in 0..<Int(vtable.nmethods) {
                let m = methods + i
                let id = Int(m.pointee.id)
                if m.pointee.flags & UInt32(CHI_MF_CREATE_PARAMS) != 0 {
                    guard createParams == nil else {
                        throw ChiError(CInt(CHI_EBADTASK), "module \(name): create parameters are described twice")
                    }
                    try Self.checkCreateParams(m, module: name)
                    createParams = m
                    continue
                }
                guard id < 4096 else {
                    throw ChiError(CInt(CHI_EBADTASK), "module \(name): method id \(id) is too large")
                }
                if table.count <= id { table += Array(repeating: nil, count: id + 1 - table.count) }
                guard table[id] == nil else {
                    throw ChiError(CInt(CHI_EBADTASK), "module \(name): method id \(id) is declared twice")
                }
                let size = m.pointee.task_size
                guard size >= UInt32(MemoryLayout<chi_task_t>.size) else {
                    throw ChiError(CInt(CHI_EBADTASK), "module \(name): method \(id) has task_size \(size), smaller than the task header")
                }
                if let fields = m.pointee.fields {
                    for f in 0..<Int(m.pointee.nfields) {
                        let fd = fields[f]
                        guard UInt64(fd.offset) + UInt64(fd.size) <= UInt64(size) else {
                            throw ChiError(CInt(CHI_EBADTASK), "module \(name): method \(id) field \(f) lies outside its task")
                        }
                        // The codec and the checks read a bulk field as a chi_shm_ptr_t and its
                        // length from the field it names: both must be what they claim.
                        guard fd.type != UInt32(CHI_FT_BULK)
                            || (fd.size == UInt32(MemoryLayout<chi_shm_ptr_t>.size) && fd.bulk_size_field >= 0
                                && Int(fd.bulk_size_field) < Int(m.pointee.nfields)
                                && [1, 2, 4, 8].contains(fields[Int(fd.bulk_size_field)].size))
                        else {
                            throw ChiError(CInt(CHI_EBADTASK), "module \(name): method \(id) bulk field \(f) must be a 16-byte chi_shm_ptr_t naming an integer size field")
                        }
                    }
                }
                table[id] = m
            }
        }
        if createParams != nil, table.first.map({ $0 != nil }) == true {
            throw ChiError(CInt(CHI_EBADTASK), "module \(name): method id 0 is declared beside its create parameters")
        }
        methodsById = table
        self.createParams = createParams
        try Self.checkRecords(vtable, table, createParams, module: name)
        handlersById = Array(repeating: nil, count: table.count)
        for (id, m) in table.enumerated() {
            guard let m, m.pointee.handler != nil else { continue }
            var err = [CChar](repeating: 0, count: 256)
            guard let fm = chi_ffi_prepare(m, &err, 256) else {
                throw ChiError(CInt(CHI_EBADTASK), "module \(name): \(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
            }
            handlersById[id] = fm
        }
        guard vtable.run != nil || table.allSatisfy({ $0 == nil || $0!.pointee.handler != nil }) else {
            throw ChiError(CInt(CHI_EBADTASK), "module \(name) (\(path)) has no run hook")
        }
    }

    /// The descriptor of method `id`, if the module declares it.
    @inline(__always)
    package func method(_ id: UInt32) -> UnsafePointer<chi_method_desc_t>? {
        let i = Int(id)
        return i < methodsById.count ? methodsById[i] : nil
    }

    /// One more than the largest method id the module declares (0 with none).
    package var methodIdLimit: Int { methodsById.count }

    /// The prepared plain-function handler of method `id`, if it has one.
    @inline(__always)
    func handler(_ id: UInt32) -> OpaquePointer? {
        let i = Int(id)
        return i < handlersById.count ? handlersById[i] : nil
    }

    /// The module's work-orchestrator hooks, if it is one (ABI 1.3).
    package var worch: UnsafePointer<chi_worch_ops_t>? { vtable.worch }

    /// The method's name for messages.
    package func methodName(_ id: UInt32) -> String {
        if let m = method(id), let n = m.pointee.name { return String(cString: n) }
        return "#\(id)"
    }
}
