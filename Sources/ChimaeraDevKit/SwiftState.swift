/// A Swift module's declared state (`state:` in the methods YAML): the `State` class and the
/// record code of `<name>_lib_exec.swift`, which write and read the same bytes as a C module's
/// (CState). The runtime does not hold the State object itself but a small box that starts
/// with the kit's header {magic, version, save}, laid out as C's `chi_gen_state_hdr_t`, so that
/// a later version, in either language, can ask this one's code for the record in Upgrade.
enum SwiftState {
    /// The Swift type of a state field and the value it starts at.
    private static func property(_ f: StateField) -> (type: String, zero: String) {
        switch f.type {
        case .str: ("String", "\"\"")
        case .bytes(let n): ("[UInt8]", "[UInt8](repeating: 0, count: \(n))")
        case .bool: ("Bool", "false")
        default: (f.type.swiftType, "0")
        }
    }

    /// The generated `State` class.
    static func stateClass(_ ctx: ModuleContext, _ spec: ModuleSpec, _ fields: [StateField]) -> String {
        let helpers = (spec.hasMigrate ? ["chiGenWrite", "chiGenRead"] : []) + (spec.hasUpgrade ? ["chiGenCarry"] : [])
        var lines = [
            "/// One container's state: the fields `state:` declares in \(ctx.name)_methods.yaml, zero until",
            "/// create sets them. The kit makes it and releases it after destroy\(helpers.isEmpty ? "." : ", and its code saves and")",
        ]
        if !helpers.isEmpty {
            lines.append("/// restores every field (\(helpers.joined(separator: ", "))).")
        }
        lines.append("final class State {")
        for f in fields {
            let (type, zero) = property(f)
            switch f.type {
            case .str(let n): lines.append("    /// str[\(n)]: at most \(n - 1) bytes of UTF-8 are saved.")
            case .bytes(let n): lines.append("    /// bytes[\(n)]: saved as \(n) bytes, cut or padded with zeros.")
            default: break
            }
            lines.append("    var \(f.name): \(type) = \(zero)")
        }
        lines.append("}")
        return lines.joined(separator: "\n")
    }

    /// The record code: save and load for this State, the box, and the helpers the hooks call.
    static func codec(_ ctx: ModuleContext, _ spec: ModuleSpec, _ fields: [StateField]) -> String {
        var save: [String] = [], load: [String] = []
        for f in fields {
            switch f.type {
            case .str(let n):
                save.append("    w.add(\"\(f.name)\", string: s.\(f.name), size: \(n))")
                load.append("    if let v = try r.takeString(\"\(f.name)\", size: \(n)) { s.\(f.name) = v }")
            case .bytes(let n):
                save.append("    w.add(\"\(f.name)\", bytes: s.\(f.name), size: \(n))")
                load.append("    if let v = try r.takeBytes(\"\(f.name)\", size: \(n)) { s.\(f.name) = v }")
            default:
                save.append("    w.add(\"\(f.name)\", UInt16(\(f.type.cConstant)), s.\(f.name))")
                load.append("    if let v = try r.take(\"\(f.name)\", UInt16(\(f.type.cConstant)), as: \(f.type.swiftType).self) { s.\(f.name) = v }")
            }
        }
        var out = """

            // ---- The state's record: the bytes migrate sends and upgrade reads ----------------------
            // A header {magic "CKR1", the module version that wrote it, the field count, the record's
            // length}, then each field {name length u16, CHI_FT_* type u16, size u32, name, value}, in
            // the host's byte order: what a C module writes too. A record comes from another node or
            // another version: ChiGenRecord checks every byte before a field is stored.

            private let chiGenStateMagic: UInt32 = 0x3153_4b43  // "CKS1": a state made by the kit
            private let chiGenRecordMagic: UInt32 = 0x3152_4b43  // "CKR1"
            private let chiGenRecordMax = 16 << 20
            private typealias ChiGenSave = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int) -> Int

            private struct ChiGenRecordWriter {
                private(set) var bytes: [UInt8] = []

                init(count: Int) {
                    for word in [chiGenRecordMagic, \(ctx.version), UInt32(count), 0] { put(word) }
                }

                private mutating func put<T: BitwiseCopyable>(_ v: T) { withUnsafeBytes(of: v) { bytes += $0 } }

                private mutating func head(_ name: String, _ type: UInt16, _ size: Int) {
                    put(UInt16(name.utf8.count))
                    put(type)
                    put(UInt32(size))
                    bytes += name.utf8
                }

                mutating func add<T: BitwiseCopyable>(_ name: String, _ type: UInt16, _ value: T) {
                    head(name, type, MemoryLayout<T>.size)
                    put(value)
                }

                /// At most size - 1 bytes, cut between characters, then NULs.
                mutating func add(_ name: String, string: String, size: Int) {
                    var n = 0
                    for c in string.unicodeScalars {
                        if n + UTF8.width(c) > size - 1 { break }
                        n += UTF8.width(c)
                    }
                    head(name, UInt16(CHI_FT_STR), size)
                    bytes += string.utf8.prefix(n)
                    bytes += repeatElement(0, count: size - n)
                }

                mutating func add(_ name: String, bytes value: [UInt8], size: Int) {
                    head(name, UInt16(CHI_FT_BYTES), size)
                    bytes += value.prefix(size)
                    bytes += repeatElement(0, count: size - min(value.count, size))
                }

                /// The record, its length filled in.
                func finish() -> [UInt8] {
                    var out = bytes
                    withUnsafeBytes(of: UInt32(out.count)) { out.replaceSubrange(12..<16, with: $0) }
                    return out
                }
            }

            /// A record, parsed and checked. From this same version it must hold exactly this
            /// version's fields (a container moving); from another (an upgrade) each field whose
            /// name, type and size are the same here is carried and the others keep their zero.
            private struct ChiGenRecord {
                let exact: Bool
                private var fields: [String: (type: UInt16, value: ArraySlice<UInt8>)] = [:]

                init(_ rec: [UInt8], version: UInt32) throws(ChiFailure) {
                    func u32(_ at: Int) -> UInt32 { rec[at..<at + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
                    func u16(_ at: Int) -> UInt16 { rec[at..<at + 2].withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) } }
                    let bad = ChiFailure(-EPROTO)
                    exact = version == \(ctx.version)
                    guard rec.count >= 16, u32(0) == chiGenRecordMagic, u32(4) == version, u32(12) == UInt32(rec.count)
                    else { throw bad }
                    let count = Int(u32(8))
                    guard count <= 1024, !exact || count == \(fields.count) else { throw bad }
                    var at = 16
                    for _ in 0..<count {
                        guard rec.count - at >= 8 else { throw bad }
                        let nameLen = Int(u16(at)), type = u16(at + 2), size = Int(u32(at + 4))
                        at += 8
                        guard nameLen >= 1, nameLen <= 64, nameLen <= rec.count - at, size >= 1, size <= rec.count - at - nameLen
                        else { throw bad }
                        let name = String(decoding: rec[at..<at + nameLen], as: UTF8.self)
                        guard fields[name] == nil else { throw bad }  // a field twice
                        fields[name] = (type, rec[at + nameLen..<at + nameLen + size])
                        at += nameLen + size
                    }
                    guard at == rec.count else { throw bad }  // nothing may follow the last field
                }

                /// The bytes of field `name` if the record has it with this type and size.
                private func field(_ name: String, _ type: UInt16, _ size: Int) throws(ChiFailure) -> ArraySlice<UInt8>? {
                    guard let f = fields[name], f.type == type, f.value.count == size else {
                        if exact { throw ChiFailure(-EPROTO) }
                        return nil
                    }
                    return f.value
                }

                func take<T: BitwiseCopyable>(_ name: String, _ type: UInt16, as: T.Type) throws(ChiFailure) -> T? {
                    guard let raw = try field(name, type, MemoryLayout<T>.size) else { return nil }
                    if type == UInt16(CHI_FT_BOOL) && raw.first! > 1 { throw ChiFailure(-EPROTO) }
                    return raw.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
                }

                func takeString(_ name: String, size: Int) throws(ChiFailure) -> String? {
                    guard let raw = try field(name, UInt16(CHI_FT_STR), size) else { return nil }
                    guard let end = raw.firstIndex(of: 0) else { throw ChiFailure(-EPROTO) }
                    return String(decoding: raw[..<end], as: UTF8.self)
                }

                func takeBytes(_ name: String, size: Int) throws(ChiFailure) -> [UInt8]? {
                    try field(name, UInt16(CHI_FT_BYTES), size).map { Array($0) }
                }
            }

            private func chiGenSave(_ s: State) -> [UInt8] {
                var w = ChiGenRecordWriter(count: \(fields.count))
            \(save.joined(separator: "\n"))
                return w.finish()
            }

            private func chiGenLoad(_ s: State, _ rec: [UInt8], version: UInt32) throws(ChiFailure) {
                let r = try ChiGenRecord(rec, version: version)
            \(load.joined(separator: "\n"))
            }

            /// The header's `save`, in C's calling convention: a later version's upgrade calls it.
            private let chiGenSaveC: ChiGenSave = { box, buf, cap in
                guard let box else { return -Int(EINVAL) }
                let rec = chiGenSave(chiGenState(UnsafeMutableRawPointer(mutating: box)))
                if let buf, cap >= rec.count {
                    rec.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: rec.count) }
                }
                return rec.count
            }

            /// What the runtime holds for a container: the kit's header {magic, version, save} as
            /// every kit-made module lays it out, then the State, retained.
            private func chiGenBox(_ s: State) -> UnsafeMutableRawPointer {
                let box = UnsafeMutableRawPointer.allocate(byteCount: 24, alignment: 8)
                box.storeBytes(of: chiGenStateMagic, as: UInt32.self)
                box.storeBytes(of: UInt32(\(ctx.version)), toByteOffset: 4, as: UInt32.self)
                box.storeBytes(of: unsafeBitCast(chiGenSaveC, to: UnsafeRawPointer.self), toByteOffset: 8, as: UnsafeRawPointer.self)
                box.storeBytes(of: Unmanaged.passRetained(s).toOpaque(), toByteOffset: 16, as: UnsafeMutableRawPointer.self)
                return box
            }

            private func chiGenState(_ p: UnsafeMutableRawPointer?) -> State {
                Unmanaged<State>.fromOpaque(p!.load(fromByteOffset: 16, as: UnsafeMutableRawPointer.self)).takeUnretainedValue()
            }

            private func chiGenUnbox(_ p: UnsafeMutableRawPointer) {
                Unmanaged<State>.fromOpaque(p.load(fromByteOffset: 16, as: UnsafeMutableRawPointer.self)).release()
                p.deallocate()
            }

            """
        if spec.hasMigrate {
            out += """

                /// Writes state's fields to a migration stream as one record (migrateOut).
                func chiGenWrite(_ state: State, to out: OpaquePointer) throws(ChiFailure) {
                    let rec = chiGenSave(state)
                    let rc = rec.withUnsafeBytes { chi_migrate_write(out, $0.baseAddress, $0.count) }
                    if rc < 0 { throw ChiFailure(rc) }
                }

                /// Reads the record migrateOut wrote (module version `version`) into state (migrateIn);
                /// a short, long or mismatched one throws -EPROTO, and state is then discarded.
                func chiGenRead(_ state: State, from input: OpaquePointer, _ version: UInt32) throws(ChiFailure) {
                    // The stream is one record, whole: its length is checked against the record's own.
                    let len = chi_migrate_remaining(input)
                    guard len >= 16, len <= UInt64(chiGenRecordMax) else { throw ChiFailure(-EPROTO) }
                    var rec = [UInt8](repeating: 0, count: Int(len))
                    var got = 0
                    while got < rec.count {
                        let n = rec.withUnsafeMutableBytes { chi_migrate_read(input, $0.baseAddress! + got, $0.count - got) }
                        if n < 0 { throw ChiFailure(Int32(n)) }
                        if n == 0 { throw ChiFailure(-EPROTO) }  // shorter than it said
                        got += n
                    }
                    try chiGenLoad(state, rec, version: version)
                }

                """
        }
        if spec.hasUpgrade {
            out += """

                /// Fills state from old, a state of module version oldVersion that the kit made (in C or
                /// Swift): every field whose name and type are the same in both versions. Throws -EPROTO
                /// if old is not one.
                func chiGenCarry(_ state: State, from old: UnsafeRawPointer?, _ oldVersion: UInt32) throws(ChiFailure) {
                    // Only the header is read through the old pointer; the old code writes the rest. A
                    // version whose state the kit did not make has no header: upgrade from it by hand.
                    guard let old, old.load(as: UInt32.self) == chiGenStateMagic,
                          old.load(fromByteOffset: 4, as: UInt32.self) == oldVersion,
                          let fn = old.load(fromByteOffset: 8, as: UnsafeRawPointer?.self)
                    else { throw ChiFailure(-EPROTO) }
                    let save = unsafeBitCast(fn, to: ChiGenSave.self)
                    let n = save(old, nil, 0)
                    guard n >= 16, n <= chiGenRecordMax else { throw ChiFailure(-EPROTO) }
                    var rec = [UInt8](repeating: 0, count: n)
                    guard rec.withUnsafeMutableBytes({ save(old, $0.baseAddress, n) }) == n else { throw ChiFailure(-EPROTO) }
                    try chiGenLoad(state, rec, version: oldVersion)
                }

                """
        }
        return out
    }
}
