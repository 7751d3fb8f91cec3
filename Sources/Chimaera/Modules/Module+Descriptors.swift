import CChimaera

/// Load-time checks of the descriptors that describe no task (ABI 1.7): the create-params
/// layout and the record layouts of array fields. The runtime acts on neither, but bindings
/// trust what chi_module_describe hands them, so a module that lies is refused here, once,
/// with a message naming what is wrong.
extension Module {
    /// Field types a create parameter or a record member may have: values, no pointers.
    private static let plainTypes: Set<UInt32> = [
        CHI_FT_U8, CHI_FT_U16, CHI_FT_U32, CHI_FT_U64, CHI_FT_I8, CHI_FT_I16, CHI_FT_I32,
        CHI_FT_I64, CHI_FT_F32, CHI_FT_F64, CHI_FT_BOOL, CHI_FT_BYTES, CHI_FT_STR,
    ]

    /// The width an integer or float type must have (bool, bytes and str: any nonzero size).
    private static func width(_ type: UInt32) -> UInt32? {
        switch type {
        case CHI_FT_U8, CHI_FT_I8: 1
        case CHI_FT_U16, CHI_FT_I16: 2
        case CHI_FT_U32, CHI_FT_I32, CHI_FT_F32: 4
        case CHI_FT_U64, CHI_FT_I64, CHI_FT_F64: 8
        default: nil
        }
    }

    private static func isInteger(_ type: UInt32) -> Bool {
        (CHI_FT_U8...CHI_FT_I64).contains(type)
    }

    /// Checks `count` plain fields lying inside `extent` bytes; `what` names them in errors.
    private static func checkPlainFields(_ fields: UnsafePointer<chi_field_desc_t>?, _ count: UInt32,
                                         extent: UInt32, what: String) throws(ChiError) {
        guard count <= 4096, count == 0 || fields != nil else {
            throw ChiError(CInt(CHI_EBADTASK), "\(what): \(count) fields and no table of them")
        }
        guard let fields else { return }
        for i in 0..<Int(count) {
            let f = fields[i]
            guard f.name != nil else { throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(i) has no name") }
            guard plainTypes.contains(f.type) else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(i) has type \(f.type): only numbers, bool, bytes and str may be here")
            }
            guard f.size > 0, width(f.type).map({ $0 == f.size }) ?? true else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(i) of type \(f.type) has size \(f.size)")
            }
            guard UInt64(f.offset) + UInt64(f.size) <= UInt64(extent) else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(i) lies outside its \(extent) bytes")
            }
        }
    }

    /// A CHI_MF_CREATE_PARAMS descriptor: id 0, no other flag, no handler, IN plain fields
    /// inside the params struct.
    static func checkCreateParams(_ m: UnsafePointer<chi_method_desc_t>, module: String) throws(ChiError) {
        let what = "module \(module): create parameters"
        guard m.pointee.id == CHI_METHOD_CREATE, m.pointee.flags == UInt32(CHI_MF_CREATE_PARAMS),
            m.pointee.handler == nil
        else {
            throw ChiError(CInt(CHI_EBADTASK), "\(what): the descriptor must have id 0, only the flag CHI_MF_CREATE_PARAMS and no handler")
        }
        try checkPlainFields(m.pointee.fields, m.pointee.nfields, extent: m.pointee.task_size, what: what)
        for i in 0..<Int(m.pointee.nfields) where m.pointee.fields![i].dir != UInt32(CHI_DIR_IN) {
            throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(i) is not CHI_DIR_IN")
        }
    }

    /// The vtable's records: each names a bytes field of a declared method (or of the create
    /// parameters), an element size dividing it, an integer count field or -1, and plain members
    /// inside one element; one record a field at most.
    static func checkRecords(_ vt: chi_module_vtable_t, _ table: [UnsafePointer<chi_method_desc_t>?],
                             _ createParams: UnsafePointer<chi_method_desc_t>?, module: String) throws(ChiError) {
        guard vt.nrecords > 0 else { return }
        guard vt.nrecords <= 4096, let records = vt.records else {
            throw ChiError(CInt(CHI_EBADTASK), "module \(module): \(vt.nrecords) records and no table of them")
        }
        var seen = Set<UInt64>()
        for i in 0..<Int(vt.nrecords) {
            let r = records[i]
            let what = "module \(module): record \(i)"
            let id = Int(r.method)
            let m = id == 0 && createParams != nil ? createParams : (id < table.count ? table[id] : nil)
            guard let m, let fields = m.pointee.fields else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what) names method \(id), which has no fields")
            }
            guard r.field < m.pointee.nfields, fields[Int(r.field)].type == UInt32(CHI_FT_BYTES) else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(r.field) of method \(id) is not a bytes field")
            }
            let array = fields[Int(r.field)]
            guard r.elem_size > 0, array.size % r.elem_size == 0 else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): element size \(r.elem_size) does not divide the field's \(array.size) bytes")
            }
            guard r.count_field == -1
                || (r.count_field >= 0 && UInt32(r.count_field) < m.pointee.nfields
                    && UInt32(r.count_field) != r.field && isInteger(fields[Int(r.count_field)].type))
            else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): count field \(r.count_field) is not an integer field of method \(id)")
            }
            guard r.name != nil else { throw ChiError(CInt(CHI_EBADTASK), "\(what) has no name") }
            guard seen.insert(UInt64(r.method) << 32 | UInt64(r.field)).inserted else {
                throw ChiError(CInt(CHI_EBADTASK), "\(what): field \(r.field) of method \(id) has a record already")
            }
            try checkPlainFields(r.fields, r.nfields, extent: r.elem_size, what: what)
        }
    }
}
