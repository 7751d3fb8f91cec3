/// The runtime side of a Swift module: the method skeletons of `<name>_runtime.swift` and the
/// whole of `<name>_lib_exec.swift` (descriptors, dispatch, vtable and `chi_module_entry`).
/// The task layouts are the same C headers a C module has, imported through a system-library
/// target, so a client cannot tell the two apart.
enum SwiftRuntime {
    private static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
        "init", "inout", "internal", "let", "open", "operator", "private", "protocol", "public",
        "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case",
        "continue", "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in",
        "repeat", "return", "switch", "where", "while", "as", "catch", "false", "is", "nil",
        "super", "self", "throw", "throws", "true", "try", "any", "some", "consume", "copy",
    ]

    /// The Swift function name of a method, escaped if it is a keyword.
    static func funcName(_ m: MethodSpec) -> String {
        keywords.contains(m.lowerCamel) ? "`\(m.lowerCamel)`" : m.lowerCamel
    }

    /// The element type of a field as Swift sees it through a pointer.
    private static func pointee(_ t: FieldType) -> String { t.swiftType }

    /// A plain handler's parameters as the user's function takes them (non-optional pointers,
    /// except bulk buffers, which are nil when empty) and as the C thunk receives them.
    private static func plainParams(_ m: MethodSpec) -> [(name: String, user: String, c: String, unwrap: Bool)] {
        m.fields.map { f in
            switch (f.type, f.direction) {
            case (.bulk, .input): (f.name, "UnsafeRawPointer?", "UnsafeRawPointer?", false)
            case (.bulk, _): (f.name, "UnsafeMutableRawPointer?", "UnsafeMutableRawPointer?", false)
            case (_, .input) where f.type.isScalar: (f.name, f.type.swiftType, f.type.swiftType, false)
            case (_, .input): (f.name, "UnsafePointer<\(pointee(f.type))>", "UnsafePointer<\(pointee(f.type))>?", true)
            default: (f.name, "UnsafeMutablePointer<\(pointee(f.type))>", "UnsafeMutablePointer<\(pointee(f.type))>?", true)
            }
        }
    }

    /// The first lines of the user's Swift function for method `m`, up to its `{`.
    static func signature(_ ctx: ModuleContext, _ m: MethodSpec) -> [String] {
        if m.style == .plain {
            return Text.call("func \(funcName(m))", ["_ rctx: OpaquePointer"] + plainParams(m).map { "_ \($0.name): \($0.user)" }, tail: " -> Int32 {")
        }
        return Text.call("func \(funcName(m))", ["_ state: State", "_ task: UnsafeMutablePointer<\(ctx.taskType(m))>", "_ rctx: OpaquePointer"], tail: " -> Int32 {")
    }

    /// The regions the runtime file should have, with the skeleton each starts as.
    static func skeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        if spec.state != nil { return declaredStateSkeletons(ctx, spec) + methodSkeletons(ctx, spec) }
        var out: [(String, [String])] = [("Create", [
            "/// One container's state: what its methods share. Add your own properties.",
            "final class State {",
            "    /// The container's id in its pool.",
            "    let id: UInt32",
            "",
            "    init(id: UInt32) { self.id = id }",
            "}",
            "",
            "/// Builds one container's state from the pool's create params and adds its lanes; throws",
            "/// ChiFailure(-errno) to fail the pool's creation.",
            "func create(_ c: OpaquePointer, _ params: \(ctx.paramsType)) throws(ChiFailure) -> State {",
            "    // Lane group 0: one low-latency lane. mapTaskToLane picks among a group's lanes.",
            "    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))",
            "    if rc < 0 { throw ChiFailure(rc) }",
            "    return State(id: chi_container_id(c))",
            "}",
        ])]
        if spec.hasDestroy {
            out.append(("Destroy", [
                "/// Runs when the pool is destroyed; the state is released afterwards.",
                "func destroy(_ c: OpaquePointer, _ state: State) {}",
            ]))
        }
        if spec.hasUpgrade {
            out.append(("Upgrade", [
                "/// Live upgrade (chimaera module upgrade): builds this version's state from `old`, the State",
                "/// of version oldVersion, while the container is plugged. It is read-only here: if any",
                "/// container's upgrade fails, the old version goes on with it; otherwise it is released after",
                "/// the swap. Its class is the old build's: read it as this State while State's stored",
                "/// properties are unchanged, and convert by oldVersion when a version changes them.",
                "func upgrade(_ c: OpaquePointer, _ old: UnsafeMutableRawPointer?, _ oldVersion: UInt32) throws(ChiFailure) -> State {",
                "    guard let old else { throw ChiFailure(-EINVAL) }",
                "    let o = Unmanaged<State>.fromOpaque(old).takeUnretainedValue()",
                "    return State(id: o.id)",
                "}",
            ]))
        }
        if spec.hasMigrate {
            out.append(("Migrate", [
                "/// Migration (chimaera migrate), on the node the container leaves: writes its state with",
                "/// chi_migrate_write, in as many pieces as you like, while the container is plugged. Leave the",
                "/// state intact: if the move fails, the container serves on with it here. Declare the state's",
                "/// fields under `state:` in \(ctx.name)_methods.yaml and the kit writes this region.",
                "func migrateOut(_ c: OpaquePointer, _ state: State, _ out: OpaquePointer) throws(ChiFailure) {",
                "    throw ChiFailure(-ENOSYS)",
                "}",
                "",
                "/// Migration, on the node the container arrives at: builds its State from what migrateOut",
                "/// wrote, read with chi_migrate_read (version: the writer's module version), and adds the",
                "/// lanes and pollers create adds. The bytes came over the network: check each one before use.",
                "func migrateIn(_ c: OpaquePointer, _ input: OpaquePointer, _ version: UInt32) throws(ChiFailure) -> State {",
                "    throw ChiFailure(-ENOSYS)",
                "}",
            ]))
        }
        return out + methodSkeletons(ctx, spec)
    }

    /// The create, destroy, upgrade and migrate regions of a module whose YAML declares its
    /// state: the kit makes the State (generated into lib_exec.swift) and saves and restores it.
    private static func declaredStateSkeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = [("Create", [
            "/// Fills in one container's State (the fields `state:` declares in \(ctx.name)_methods.yaml,",
            "/// made by the kit with every field zero) from the pool's create params, and adds its lanes;",
            "/// throws ChiFailure(-errno) to fail the pool's creation.",
            "func create(_ c: OpaquePointer, _ params: \(ctx.paramsType), _ state: State) throws(ChiFailure) {",
            "    // Lane group 0: one low-latency lane. mapTaskToLane picks among a group's lanes.",
            "    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))",
            "    if rc < 0 { throw ChiFailure(rc) }",
            "}",
        ])]
        if spec.hasDestroy {
            out.append(("Destroy", [
                "/// Runs when the pool is destroyed or the container has moved away; the state is released",
                "/// afterwards.",
                "func destroy(_ c: OpaquePointer, _ state: State) {}",
            ]))
        }
        if spec.hasUpgrade {
            out.append(("Upgrade", [
                "/// Live upgrade (chimaera module upgrade): fills this version's State, made with every field",
                "/// zero, from `old`, the state of version oldVersion, while the container is plugged.",
                "/// chiGenCarry copies every field whose name and type are the same in both versions' `state:`;",
                "/// a field new in this version stays zero: set it here. `old` is read-only: if any container's",
                "/// upgrade fails, the old version goes on with it. The lanes carry over; register pollers",
                "/// again as create does.",
                "func upgrade(_ c: OpaquePointer, _ old: UnsafeRawPointer?, _ oldVersion: UInt32, _ state: State) throws(ChiFailure) {",
                "    try chiGenCarry(state, from: old, oldVersion)",
                "}",
            ]))
        }
        if spec.hasMigrate {
            out.append(("Migrate", [
                "/// Migration (chimaera migrate), on the node the container leaves, while it is plugged:",
                "/// chiGenWrite sends every field `state:` declares as one record. Leave the state intact: if",
                "/// the move fails, the container serves on with it here.",
                "func migrateOut(_ c: OpaquePointer, _ state: State, _ out: OpaquePointer) throws(ChiFailure) {",
                "    try chiGenWrite(state, to: out)",
                "}",
                "",
                "/// Migration, on the node the container arrives at: fills its State, made with every field",
                "/// zero, from the record migrateOut wrote (version: the writer's module version), and adds the",
                "/// lanes and pollers create adds. chiGenRead refuses a short, long or mismatched record with",
                "/// -EPROTO: it came over the network.",
                "func migrateIn(_ c: OpaquePointer, _ input: OpaquePointer, _ version: UInt32, _ state: State) throws(ChiFailure) {",
                "    try chiGenRead(state, from: input, version)",
                "    let rc = chi_container_add_lanes(c, 0, 1, UInt32(CHI_PRIO_LOW_LATENCY))",
                "    if rc < 0 { throw ChiFailure(rc) }",
                "}",
            ]))
        }
        return out
    }

    /// One region a method, in id order.
    private static func methodSkeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = []
        for m in spec.methods {
            var text = Text.summary(m)
            if m.style == .plain {
                text += " Called by the runtime through libffi with the task's fields: in fields by value (bulk buffers as checked pointers, nil when empty), out and inout fields by pointer."
            } else {
                text += " Reads the task's in fields and writes its out fields (chiString/chiSetString for str fields)."
            }
            text += " Returns the task's rc: 0 or a positive count on success, -errno on failure."
            out.append((m.name, Text.wrap(text, prefix: "/// ") + signature(ctx, m) + ["    -ENOSYS", "}"]))
        }
        return out
    }

    // MARK: lib_exec.swift

    /// `<name>_lib_exec.swift`, generated whole.
    static func libExec(_ ctx: ModuleContext, _ spec: ModuleSpec) -> String {
        var methods: [String] = []
        var thunks: [String] = []
        if !spec.createParams.isEmpty {
            // kCreate's params, for bindings and tools that build them by name (ABI 1.7): never
            // dispatched, offsets from the start of the params struct. The leading underscore
            // keeps the name apart from every method's.
            let p = ctx.paramsType
            methods.append("    let _createParamsFields: [chi_field_desc_t] = [")
            for f in spec.createParams {
                methods.append("        field(\"\(f.name)\", MemoryLayout<\(p)>.offset(of: \\.\(f.name))!, \(f.type.size), UInt32(\(f.type.cConstant)), UInt32(CHI_DIR_IN), -1, 0),")
            }
            methods.append("    ]")
            methods.append("    descs.append(chi_method_desc_t(id: UInt32(CHI_METHOD_CREATE), task_size: UInt32(MemoryLayout<\(p)>.stride), flags: UInt32(CHI_MF_CREATE_PARAMS), nfields: \(spec.createParams.count), name: name(\"Create\"), fields: UnsafePointer(table(_createParamsFields)), handler: nil))")
        }
        for m in spec.methods {
            let t = ctx.taskType(m)
            var fields = "nil"
            if !m.fields.isEmpty {
                methods.append("    let \(m.lowerCamel)Fields: [chi_field_desc_t] = [")
                for f in m.fields {
                    var bulkSize = "-1", mode = "0"
                    if case .bulk(let s) = f.type {
                        bulkSize = String(m.fieldIndex(s)!)
                        mode = [f.bulkWrite ? "UInt32(CHI_DT_WRITE)" : nil, f.bulkExpose ? "UInt32(CHI_DT_EXPOSE)" : nil].compactMap { $0 }.joined(separator: " | ")
                    }
                    methods.append("        field(\"\(f.name)\", MemoryLayout<\(t)>.offset(of: \\.\(f.name))!, \(f.type.size), UInt32(\(f.type.cConstant)), UInt32(\(f.direction.cName)), \(bulkSize), \(mode)),")
                }
                methods.append("    ]")
                fields = "UnsafePointer(table(\(m.lowerCamel)Fields))"
            }
            var handler = "nil"
            if m.style == .plain {
                let ps = plainParams(m)
                let cType = "@convention(c) (" + (["OpaquePointer?"] + ps.map(\.c)).joined(separator: ", ") + ") -> Int32"
                let names = ["rctx"] + ps.map(\.name)
                let args = ["rctx!"] + ps.map { $0.unwrap ? "\($0.name)!" : $0.name }
                thunks.append("    let \(m.lowerCamel)Handler: \(cType) = { \(names.joined(separator: ", ")) in")
                thunks.append("        \(funcName(m))(\(args.joined(separator: ", ")))")
                thunks.append("    }")
                handler = "unsafeBitCast(\(m.lowerCamel)Handler, to: UnsafeRawPointer.self)"
            }
            methods.append("    descs.append(chi_method_desc_t(id: \(m.id), task_size: UInt32(MemoryLayout<\(t)>.stride), flags: \(m.swiftFlags), nfields: \(m.fields.count), name: name(\"\(m.name)\"), fields: \(fields), handler: \(handler)))")
        }
        let classic = spec.methods.filter { $0.style == .classic }
        var cases: [String] = []
        for m in classic {
            cases += ["    case \(m.id):  // \(ctx.idMacro(m))",
                      "        guard task.pointee.size >= UInt32(MemoryLayout<\(ctx.taskType(m))>.stride) else { return -Int32(CHI_EBADTASK) }",
                      "        return \(funcName(m))(chiGenState(state), UnsafeMutableRawPointer(task).assumingMemoryBound(to: \(ctx.taskType(m)).self), rctx)"]
        }
        let hookGlue = spec.state.map { SwiftState.stateClass(ctx, spec, $0) + "\n" + SwiftState.codec(ctx, spec, $0) + declaredStateGlue(ctx, spec) }
            ?? ownStateGlue(ctx, spec)
        return """
            // Generated by chi_refresh_repo from \(ctx.name)_methods.yaml: do not edit. The task-layout
            // descriptors the runtime copies, checks and serialises tasks by, the dispatch of classic
            // methods, and the module's entry point, chi_module_entry.
            import \(ctx.cModule)
            import Glibc

            /// A failure a hook reports: a negative errno-style code (-ENOMEM, -Int32(CHI_EBADTASK), ...).
            struct ChiFailure: Error {
                var rc: Int32
                init(_ rc: Int32) { self.rc = rc }
            }

            /// The string in a fixed-size C char array field, up to its first NUL.
            func chiString<T>(_ field: T) -> String {
                withUnsafeBytes(of: field) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            }

            /// Stores `value` in a fixed-size C char array field, cut to fit with its NUL.
            func chiSetString<T>(_ field: inout T, _ value: String) {
                withUnsafeMutableBytes(of: &field) { raw in
                    guard raw.count > 0 else { return }
                    let bytes = Array(value.utf8.prefix(raw.count - 1))
                    raw.copyBytes(from: bytes)
                    raw[bytes.count] = 0
                }
            }

            \(hookGlue)
            private func chiGenRun(_ state: UnsafeMutableRawPointer?, _ task: UnsafeMutablePointer<chi_task_t>?,
                                   _ rctx: OpaquePointer?) -> Int32 {
                guard let task, let rctx else { return -EINVAL }
                // The runtime checks ids and sizes against the descriptors; checking again keeps a
                // runtime bug from becoming an out-of-bounds access here.
                switch task.pointee.method {
            \((cases + ["    default:", "        _ = (state, rctx)", "        return -Int32(CHI_ENOMETHOD)"]).joined(separator: "\n"))
                }
            }

            nonisolated(unsafe) private let chiGenVtable: UnsafeMutablePointer<chi_module_vtable_t> = {
                func name(_ s: StaticString) -> UnsafePointer<CChar> {
                    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
                }
                func table<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
                    let p = UnsafeMutablePointer<T>.allocate(capacity: max(items.count, 1))
                    p.initialize(from: items, count: items.count)
                    return p
                }
                func field(_ n: StaticString, _ offset: Int, _ size: Int, _ type: UInt32, _ dir: UInt32,
                           _ bulkSize: Int32, _ mode: UInt32) -> chi_field_desc_t {
                    chi_field_desc_t(name: name(n), offset: UInt32(offset), size: UInt32(size), type: type, dir: dir,
                                     bulk_size_field: bulkSize, bulk_mode: mode)
                }
            \(thunks.joined(separator: "\n"))
                var descs: [chi_method_desc_t] = []
            \(methods.joined(separator: "\n"))
                var vt = chi_module_vtable_t()
                vt.size = UInt32(MemoryLayout<chi_module_vtable_t>.stride)
                vt.abi_major = UInt16(CHI_ABI_MAJOR)
                vt.abi_minor = UInt16(CHI_ABI_MINOR)
                vt.name = name("\(ctx.moduleName)")
                vt.version = \(ctx.version)
                vt.nmethods = UInt32(descs.count)
                vt.methods = descs.isEmpty ? nil : UnsafePointer(table(descs))
                vt.create = chiGenCreate
                vt.destroy = chiGenDestroy
                vt.run = chiGenRun
                vt.monitor = { state, mode, task, rctx in monitor(chiGenState(state), mode, task!, rctx!) }
                vt.map_task_to_lane = { state, c, task in mapTaskToLane(chiGenState(state), c!, task!) }
                \(spec.hasUpgrade ? "vt.upgrade = chiGenUpgrade" : "vt.upgrade = nil")\(spec.hasMigrate ? "\n    vt.migrate_out = chiGenMigrateOut\n    vt.migrate_in = chiGenMigrateIn" : "")
                return table([vt])
            }()

            /// The module's entry point: the runtime dlopens lib\(ctx.moduleName).so and calls it.
            @c(chi_module_entry)
            public func chiModuleEntry() -> UnsafePointer<chi_module_vtable_t>? {
                UnsafePointer(chiGenVtable)
            }

            """
    }

    /// The hooks' glue when the module's own code makes its State.
    private static func ownStateGlue(_ ctx: ModuleContext, _ spec: ModuleSpec) -> String {
        let upgradeGlue = !spec.hasUpgrade ? "" : """

            private func chiGenUpgrade(_ c: OpaquePointer?, _ old: UnsafeMutableRawPointer?, _ oldVersion: UInt32,
                                       _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
                guard let c, let out else { return -EINVAL }
                do {
                    out.pointee = Unmanaged.passRetained(try upgrade(c, old, oldVersion)).toOpaque()
                    return 0
                } catch {
                    return error.rc
                }
            }

            """
        let migrateGlue = !spec.hasMigrate ? "" : """

            private func chiGenMigrateOut(_ c: OpaquePointer?, _ state: UnsafeMutableRawPointer?, _ out: OpaquePointer?) -> Int32 {
                guard let c, let out else { return -EINVAL }
                do {
                    try migrateOut(c, chiGenState(state), out)
                    return 0
                } catch {
                    return error.rc
                }
            }

            private func chiGenMigrateIn(_ c: OpaquePointer?, _ input: OpaquePointer?, _ version: UInt32,
                                         _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
                guard let c, let input, let out else { return -EINVAL }
                do {
                    out.pointee = Unmanaged.passRetained(try migrateIn(c, input, version)).toOpaque()
                    return 0
                } catch {
                    return error.rc
                }
            }

            """
        return """
            private func chiGenState(_ p: UnsafeMutableRawPointer?) -> State {
                Unmanaged<State>.fromOpaque(p!).takeUnretainedValue()
            }

            private func chiGenCreate(_ c: OpaquePointer?, _ params: UnsafeRawPointer?, _ size: UInt32,
                                      _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
                guard let c, let out else { return -EINVAL }
                // Params from an older client may be shorter: the rest stays zero.
                var p = \(ctx.paramsType)()
                if let params {
                    withUnsafeMutableBytes(of: &p) { dst in
                        dst.copyMemory(from: UnsafeRawBufferPointer(start: params, count: min(Int(size), dst.count)))
                    }
                }
                do {
                    out.pointee = Unmanaged.passRetained(try create(c, p)).toOpaque()
                    return 0
                } catch {
                    return error.rc
                }
            }

            private func chiGenDestroy(_ c: OpaquePointer?, _ state: UnsafeMutableRawPointer?) {
                guard let state else { return }
                let s = Unmanaged<State>.fromOpaque(state)
                \(spec.hasDestroy ? "destroy(c!, s.takeUnretainedValue())" : "_ = c")
                s.release()
            }
            \(upgradeGlue)\(migrateGlue)
            """
    }

    /// The hooks' glue when the kit makes the State: the runtime holds its box (SwiftState).
    private static func declaredStateGlue(_ ctx: ModuleContext, _ spec: ModuleSpec) -> String {
        /// A hook that fills a State the glue makes, then hands the runtime its box.
        func building(_ head: String, _ guards: String, _ call: String) -> String {
            """

            \(head)
                guard \(guards), let out else { return -EINVAL }
                let s = State()
                do {
                    try \(call)
                } catch {
                    return error.rc
                }
                out.pointee = chiGenBox(s)
                return 0
            }

            """
        }
        var out = """

            private func chiGenCreate(_ c: OpaquePointer?, _ params: UnsafeRawPointer?, _ size: UInt32,
                                      _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
                guard let c, let out else { return -EINVAL }
                // Params from an older client may be shorter: the rest stays zero.
                var p = \(ctx.paramsType)()
                if let params {
                    withUnsafeMutableBytes(of: &p) { dst in
                        dst.copyMemory(from: UnsafeRawBufferPointer(start: params, count: min(Int(size), dst.count)))
                    }
                }
                let s = State()
                do {
                    try create(c, p, s)
                } catch {
                    return error.rc
                }
                out.pointee = chiGenBox(s)
                return 0
            }

            private func chiGenDestroy(_ c: OpaquePointer?, _ state: UnsafeMutableRawPointer?) {
                guard let state else { return }
                \(spec.hasDestroy ? "destroy(c!, chiGenState(state))" : "_ = c")
                chiGenUnbox(state)
            }

            """
        if spec.hasUpgrade {
            out += building("private func chiGenUpgrade(_ c: OpaquePointer?, _ old: UnsafeMutableRawPointer?, _ oldVersion: UInt32,\n                           _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {",
                            "let c", "upgrade(c, UnsafeRawPointer(old), oldVersion, s)")
        }
        if spec.hasMigrate {
            out += """

                private func chiGenMigrateOut(_ c: OpaquePointer?, _ state: UnsafeMutableRawPointer?, _ out: OpaquePointer?) -> Int32 {
                    guard let c, let state, let out else { return -EINVAL }
                    do {
                        try migrateOut(c, chiGenState(state), out)
                        return 0
                    } catch {
                        return error.rc
                    }
                }

                """
            out += building("private func chiGenMigrateIn(_ c: OpaquePointer?, _ input: OpaquePointer?, _ version: UInt32,\n                             _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {",
                            "let c, let input", "migrateIn(c, input, version, s)")
        }
        return out
    }
}
