import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// The descriptors that describe no task (ABI 1.7): a create-params layout and record layouts
/// of array fields, accepted when true to themselves, refused with a message otherwise, and
/// never reachable as a method.
@Suite struct ModuleDescriptorTests {
    /// One method (id 10: a u32 count at 128, 4 x 24-byte elements at 136) and, unless
    /// `create` is nil, a create-params descriptor with `create`'s fields; `records` go in the
    /// vtable. Storage is leaked: the module keeps pointers into it.
    static func module(create: [chi_field_desc_t]? = [field("size", 0, 8, CHI_FT_U64), field("path", 8, 16, CHI_FT_STR)],
                       createId: UInt32 = 0, createFlags: UInt32 = UInt32(CHI_MF_CREATE_PARAMS),
                       extra: [chi_method_desc_t] = [], records: [chi_record_desc_t] = []) throws(ChiError) -> Module {
        let mfields = table([field("count", 128, 4, CHI_FT_U32, dir: CHI_DIR_OUT),
                             field("items", 136, 96, CHI_FT_BYTES, dir: CHI_DIR_OUT)])
        var descs = [chi_method_desc_t(id: 10, task_size: 232, flags: 0, nfields: 2, name: strdup("List"),
                                       fields: UnsafePointer(mfields), handler: nil)]
        if let create {
            descs.append(chi_method_desc_t(id: createId, task_size: 24, flags: createFlags, nfields: UInt32(create.count),
                                           name: strdup("Create"), fields: UnsafePointer(table(create)), handler: nil))
        }
        descs += extra
        var vt = chi_module_vtable_t()
        vt.size = UInt32(MemoryLayout<chi_module_vtable_t>.size)
        vt.abi_major = UInt16(CHI_ABI_MAJOR)
        vt.abi_minor = UInt16(CHI_ABI_MINOR)
        vt.run = { _, _, _ in 0 }
        vt.nmethods = UInt32(descs.count)
        vt.methods = UnsafePointer(table(descs))
        vt.nrecords = UInt32(records.count)
        vt.records = records.isEmpty ? nil : UnsafePointer(table(records))
        return try Module(name: "fake", path: "(test)", vtable: vt, handle: nil)
    }

    static func field(_ name: String, _ offset: UInt32, _ size: UInt32, _ type: UInt32,
                      dir: UInt32 = UInt32(CHI_DIR_IN)) -> chi_field_desc_t {
        chi_field_desc_t(name: strdup(name), offset: offset, size: size, type: type, dir: dir,
                         bulk_size_field: -1, bulk_mode: 0)
    }

    static func table<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(items.count, 1))
        p.initialize(from: items, count: items.count)
        return p
    }

    /// A record of 24-byte elements (offset u64, size u64, container u32) over List.items.
    static func record(method: UInt32 = 10, field: UInt32 = 1, elemSize: UInt32 = 24, countField: Int32 = 0,
                       members: [chi_field_desc_t]? = nil) -> chi_record_desc_t {
        let m = members ?? [Self.field("offset", 0, 8, CHI_FT_U64, dir: CHI_DIR_OUT),
                            Self.field("size", 8, 8, CHI_FT_U64, dir: CHI_DIR_OUT),
                            Self.field("container", 16, 4, CHI_FT_U32, dir: CHI_DIR_OUT)]
        return chi_record_desc_t(method: method, field: field, elem_size: elemSize, count_field: countField,
                                 name: strdup("Block"), fields: UnsafePointer(table(m)), nfields: UInt32(m.count),
                                 reserved: 0)
    }

    /// The message a module's construction fails with, or nil if it loads.
    static func refusal(_ make: () throws(ChiError) -> Module) -> String? {
        do throws(ChiError) {
            _ = try make()
            return nil
        } catch {
            #expect(error.code == CInt(CHI_EBADTASK))
            return error.message
        }
    }

    @Test func createParamsAreKeptApartFromTheMethods() throws {
        let m = try Self.module(records: [Self.record()])
        #expect(m.createParams != nil)
        #expect(m.createParams?.pointee.task_size == 24)
        #expect(m.method(0) == nil)  // a task of method 0 finds no method, as before
        #expect(m.method(10) != nil)
        #expect(m.methodIdLimit == 11)
        // The vtable chi_module_describe hands out still lists it, and the records.
        #expect(m.vtablePtr.pointee.nmethods == 2 && m.vtablePtr.pointee.nrecords == 1)
    }

    @Test func aModuleWithoutTheNewDescriptorsLoadsAsBefore() throws {
        let m = try Self.module(create: nil)
        #expect(m.createParams == nil && m.method(0) == nil && m.method(10) != nil)
    }

    @Test func badCreateParamsAreRefused() {
        let cases: [(String, () throws(ChiError) -> Module)] = [
            ("not CHI_DIR_IN", { () throws(ChiError) in try Self.module(create: [Self.field("x", 0, 8, CHI_FT_U64, dir: CHI_DIR_OUT)]) }),
            ("only numbers", { () throws(ChiError) in try Self.module(create: [Self.field("p", 0, 16, CHI_FT_BULK)]) }),
            ("outside its 24 bytes", { () throws(ChiError) in try Self.module(create: [Self.field("x", 20, 8, CHI_FT_U64)]) }),
            ("has size 4", { () throws(ChiError) in try Self.module(create: [Self.field("x", 0, 4, CHI_FT_U64)]) }),
            ("must have id 0", { () throws(ChiError) in try Self.module(createId: 3) }),
            ("must have id 0", { () throws(ChiError) in try Self.module(createFlags: UInt32(CHI_MF_CREATE_PARAMS | CHI_MF_PERIODIC_OK)) }),
            ("described twice", { () throws(ChiError) in
                try Self.module(extra: [chi_method_desc_t(id: 0, task_size: 8, flags: UInt32(CHI_MF_CREATE_PARAMS), nfields: 0,
                                                          name: strdup("Create"), fields: nil, handler: nil)])
            }),
            ("declared beside its create parameters", { () throws(ChiError) in
                try Self.module(extra: [chi_method_desc_t(id: 0, task_size: 128, flags: 0, nfields: 0,
                                                          name: strdup("Zero"), fields: nil, handler: nil)])
            }),
        ]
        for (want, make) in cases {
            let msg = Self.refusal(make)
            #expect(msg?.contains(want) == true, "\(want): \(msg ?? "loaded")")
        }
    }

    @Test func badRecordsAreRefused() {
        let cases: [(String, chi_record_desc_t)] = [
            ("names method 11", Self.record(method: 11)),
            ("field 0 of method 10 is not a bytes field", Self.record(field: 0)),
            ("does not divide", Self.record(elemSize: 25)),
            ("count field 1 is not an integer field", Self.record(countField: 1)),
            ("count field 5", Self.record(countField: 5)),
            ("outside its 24 bytes", Self.record(members: [Self.field("x", 20, 8, CHI_FT_U64)])),
            ("only numbers", Self.record(members: [Self.field("q", 0, 24, CHI_FT_DOMAIN_QUERY)])),
        ]
        for (want, r) in cases {
            let msg = Self.refusal { () throws(ChiError) in try Self.module(records: [r]) }
            #expect(msg?.contains(want) == true, "\(want): \(msg ?? "loaded")")
        }
        let twice = Self.refusal { () throws(ChiError) in try Self.module(records: [Self.record(), Self.record()]) }
        #expect(twice?.contains("has a record already") == true)
        // A record of the create params' bytes field is fine; of a str field it is not.
        #expect(Self.refusal { () throws(ChiError) in
            try Self.module(create: [Self.field("b", 0, 24, CHI_FT_BYTES)], records: [Self.record(method: 0, field: 0, countField: -1)])
        } == nil)
        #expect(Self.refusal { () throws(ChiError) in
            try Self.module(records: [Self.record(method: 0, field: 1, countField: -1)])
        }?.contains("not a bytes field") == true)
    }
}
