/// The runtime side of a C module: the declarations region and the method skeletons of
/// `<name>_runtime.c`, and the whole of `<name>_lib_exec.h` (descriptors, dispatch, vtable).
enum CRuntime {
    /// The parameters of a plain handler, after `chi_rctx_t *rctx`: the runtime's libffi call
    /// passes in scalars by value, bulk buffers as resolved pointers, every other in field and
    /// every out or inout field as a pointer into the task.
    static func plainParams(_ m: MethodSpec) -> [String] {
        m.fields.map { f in
            switch (f.type, f.direction) {
            case (.bulk, .input): "const void *\(f.name)"
            case (.bulk, _): "void *\(f.name)"
            case (_, .input) where f.type.isScalar: "\(f.type.cType) \(f.name)"
            case (_, .input): "const \(f.type.cType) *\(f.name)"
            default: "\(f.type.cType) *\(f.name)"
            }
        }
    }

    /// The signature of the user's function for method `m`, without `static`.
    static func signature(_ ctx: ModuleContext, _ m: MethodSpec, tail: String) -> [String] {
        m.style == .plain
            ? Text.call("static int32_t \(m.name)", ["chi_rctx_t *rctx"] + plainParams(m), tail: tail)
            : Text.call("static int \(m.name)", ["\(ctx.stateType) *state", "\(ctx.taskType(m)) *task", "chi_rctx_t *rctx"], tail: tail)
    }

    // With a declared state the kit allocates the state, so the hooks that build one get it to
    // fill in (`T *state`); otherwise they allocate it and hand it back (`T **state`).

    private static func createSig(_ ctx: ModuleContext, _ spec: ModuleSpec, tail: String) -> [String] {
        let state = spec.state == nil ? "\(ctx.stateType) **state" : "\(ctx.stateType) *state"
        return Text.call("static int Create", ["chi_container_t *c", "const \(ctx.paramsType) *params", state], tail: tail)
    }

    private static func destroySig(_ ctx: ModuleContext, tail: String) -> [String] {
        ["static void Destroy(chi_container_t *c, \(ctx.stateType) *state)\(tail)"]
    }

    private static func upgradeSig(_ ctx: ModuleContext, _ spec: ModuleSpec, tail: String) -> [String] {
        let args = spec.state == nil
            ? ["chi_container_t *c", "void *old_state", "uint32_t old_version", "\(ctx.stateType) **state"]
            : ["chi_container_t *c", "const void *old_state", "uint32_t old_version", "\(ctx.stateType) *state"]
        return Text.call("static int Upgrade", args, tail: tail)
    }

    private static func migrateOutSig(_ ctx: ModuleContext, tail: String) -> [String] {
        Text.call("static int MigrateOut", ["chi_container_t *c", "const \(ctx.stateType) *state", "chi_migrate_stream_t *out"], tail: tail)
    }

    private static func migrateInSig(_ ctx: ModuleContext, _ spec: ModuleSpec, tail: String) -> [String] {
        let state = spec.state == nil ? "\(ctx.stateType) **state" : "\(ctx.stateType) *state"
        return Text.call("static int MigrateIn", ["chi_container_t *c", "chi_migrate_stream_t *in", "uint32_t version", state], tail: tail)
    }

    /// The body of the `decls` region: the state type and every function the generated
    /// tables call, so a signature that drifts from the declaration fails to compile.
    static func declsRegion(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [String] {
        var out: [String]
        if let fields = spec.state {
            out = CState.decls(ctx, spec, fields)
        } else {
            out = ["typedef struct \(ctx.name)_state \(ctx.stateType); /* defined in the Create region */", ""]
        }
        out += createSig(ctx, spec, tail: ";")
        if spec.hasDestroy { out += destroySig(ctx, tail: ";") }
        if spec.hasUpgrade { out += upgradeSig(ctx, spec, tail: ";") }
        if spec.hasMigrate { out += migrateOutSig(ctx, tail: ";") + migrateInSig(ctx, spec, tail: ";") }
        out += ["static int MapTaskToLane(\(ctx.stateType) *state, chi_container_t *c, const chi_task_t *task);",
                "static int Monitor(\(ctx.stateType) *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx);"]
        for m in spec.methods { out += signature(ctx, m, tail: ";") }
        return out
    }

    /// The regions the runtime file should have, with the skeleton each starts as.
    static func skeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = []
        if spec.state != nil {
            out += declaredStateSkeletons(ctx, spec)
            return out + methodSkeletons(ctx, spec)
        }
        out.append(("Create", [
            "/** One container's state: what its methods share. Add your own fields. */",
            "struct \(ctx.name)_state {",
            "    uint32_t id; /* the container's id in its pool */",
            "};",
            "",
            "/** Builds one container's state from the pool's create params and adds its lanes. Returns 0",
            " *  or -errno (the pool is not created). */",
        ] + createSig(ctx, spec, tail: " {") + [
            "    (void)params;",
            "    \(ctx.stateType) *s = calloc(1, sizeof(*s));",
            "    if (s == NULL) return -ENOMEM;",
            "    s->id = chi_container_id(c);",
            "    /* Lane group 0: one low-latency lane. MapTaskToLane picks among a group's lanes. */",
            "    int rc = chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);",
            "    if (rc < 0) {",
            "        free(s);",
            "        return rc;",
            "    }",
            "    *state = s;",
            "    return 0;",
            "}",
        ]))
        if spec.hasDestroy {
            out.append(("Destroy", ["/** Frees one container's state when its pool is destroyed. */"]
                + destroySig(ctx, tail: " {") + ["    (void)c;", "    free(state);", "}"]))
        }
        if spec.hasUpgrade {
            out.append(("Upgrade", [
                "/** Live upgrade (chimaera module upgrade): builds this version's state from old_state, the",
                " *  state of version old_version, while the container is plugged. old_state is read-only: if",
                " *  any container's upgrade fails, the old version goes on with it; otherwise the old version's",
                " *  Destroy frees it after the swap. The lanes carry over. This copy is right while the state's",
                " *  struct is unchanged; when a version changes it, convert field by field by old_version.",
                " *  Returns 0 or -errno (every container keeps the old version). */",
            ] + upgradeSig(ctx, spec, tail: " {") + [
                "    (void)c;",
                "    (void)old_version;",
                "    \(ctx.stateType) *s = malloc(sizeof(*s));",
                "    if (s == NULL) return -ENOMEM;",
                "    memcpy(s, old_state, sizeof(*s));",
                "    *state = s;",
                "    return 0;",
                "}",
            ]))
        }
        if spec.hasMigrate {
            out.append(("Migrate", [
                "/** Migration (chimaera migrate), on the node the container leaves: writes its state with",
                " *  chi_migrate_write, in as many pieces as you like, while the container is plugged. Leave",
                " *  the state intact: if the move fails, the container serves on with it here. Declare the",
                " *  state's fields under `state:` in \(ctx.name)_methods.yaml and the kit writes this region.",
                " *  Returns 0 or -errno (the container stays). */",
            ] + migrateOutSig(ctx, tail: " {") + [
                "    (void)c;",
                "    (void)state;",
                "    (void)out;",
                "    return -ENOSYS;",
                "}",
                "",
                "/** Migration, on the node the container arrives at: builds its state from what MigrateOut",
                " *  wrote, read with chi_migrate_read (version: the writer's module version), and adds the",
                " *  lanes and pollers Create adds. The bytes came over the network: check each one before",
                " *  use. Returns 0 or -errno (the container stays where it was). */",
            ] + migrateInSig(ctx, spec, tail: " {") + [
                "    (void)c;",
                "    (void)in;",
                "    (void)version;",
                "    (void)state;",
                "    return -ENOSYS;",
                "}",
            ]))
        }
        return out + methodSkeletons(ctx, spec)
    }

    /// The Create, Destroy, Upgrade and Migrate regions of a module whose YAML declares its
    /// state: the kit allocates and frees it, and its generated code saves and restores it.
    private static func declaredStateSkeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = []
        out.append(("Create", [
            "/** Fills in one container's state (the fields `state:` declares in \(ctx.name)_methods.yaml;",
            " *  the kit allocated it zeroed) from the pool's create params, and adds its lanes. Returns 0",
            " *  or -errno (the pool is not created). */",
        ] + createSig(ctx, spec, tail: " {") + [
            "    (void)params;",
            "    (void)state;",
            "    /* Lane group 0: one low-latency lane. MapTaskToLane picks among a group's lanes. */",
            "    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);",
            "}",
        ]))
        if spec.hasDestroy {
            out.append(("Destroy", [
                "/** Releases what one container holds when its pool is destroyed or the container has moved",
                " *  away; the kit frees the state itself afterwards. */",
            ] + destroySig(ctx, tail: " {") + ["    (void)c;", "    (void)state;", "}"]))
        }
        if spec.hasUpgrade {
            out.append(("Upgrade", [
                "/** Live upgrade (chimaera module upgrade): fills this version's state, allocated zeroed, from",
                " *  old_state, the state of version old_version, while the container is plugged.",
                " *  chi_gen_state_carry copies every field whose name and type are the same in both versions'",
                " *  `state:`; a field new in this version stays zero: set it here. old_state is read-only:",
                " *  if any container's upgrade fails, the old version goes on with it. The lanes carry over;",
                " *  register pollers again as Create does. Returns 0 or -errno (every container keeps the",
                " *  old version). */",
            ] + upgradeSig(ctx, spec, tail: " {") + [
                "    (void)c;",
                "    return chi_gen_state_carry(state, old_state, old_version);",
                "}",
            ]))
        }
        if spec.hasMigrate {
            out.append(("Migrate", [
                "/** Migration (chimaera migrate), on the node the container leaves, while it is plugged:",
                " *  chi_gen_state_write sends every field `state:` declares as one record. Leave the state",
                " *  intact: if the move fails, the container serves on with it here. Returns 0 or -errno",
                " *  (the container stays). */",
            ] + migrateOutSig(ctx, tail: " {") + [
                "    (void)c;",
                "    return chi_gen_state_write(out, state);",
                "}",
                "",
                "/** Migration, on the node the container arrives at: fills its state, allocated zeroed, from",
                " *  the record MigrateOut wrote (version: the writer's module version), and adds the lanes",
                " *  and pollers Create adds. chi_gen_state_read refuses a short, long or mismatched record",
                " *  with -EPROTO: it came over the network. Returns 0 or -errno (the container stays where it",
                " *  was). */",
            ] + migrateInSig(ctx, spec, tail: " {") + [
                "    int rc = chi_gen_state_read(state, in, version);",
                "    if (rc < 0) return rc;",
                "    return chi_container_add_lanes(c, 0, 1, CHI_PRIO_LOW_LATENCY);",
                "}",
            ]))
        }
        return out
    }

    /// One region a method, in id order.
    private static func methodSkeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = []
        for m in spec.methods {
            var body: [String]
            if m.style == .plain {
                body = Text.doc(Text.summary(m) + " Called by the runtime through libffi with the task's fields: in fields by value (bulk buffers as checked pointers into shared memory, NULL when empty), out and inout fields by pointer. Returns the task's rc: 0 or a positive count on success, -errno on failure.")
                body += signature(ctx, m, tail: " {")
                body += (["rctx"] + m.fields.map(\.name)).map { "    (void)\($0);" }
            } else {
                var text = Text.summary(m) + " Reads the task's in fields and writes its out fields; returns the task's rc: 0 or a positive count on success, -errno on failure."
                if let b = m.fields.first(where: { $0.type.isBulk }), case .bulk(let size) = b.type {
                    text += " Resolve a bulk buffer with chi_rctx_shm_ptr(rctx, task->\(b.name), task->\(size)) (NULL: -EFAULT)."
                }
                body = Text.doc(text) + signature(ctx, m, tail: " {")
                body += ["    (void)state;", "    (void)task;", "    (void)rctx;"]
            }
            body += ["    return -ENOSYS;", "}"]
            out.append((m.name, body))
        }
        return out
    }

    // MARK: lib_exec.h

    /// `<name>_lib_exec.h`, generated whole.
    static func libExec(_ ctx: ModuleContext, _ spec: ModuleSpec) -> String {
        var out: [String] = [
            "/* Generated by chi_refresh_repo from \(ctx.name)_methods.yaml: do not edit. Included at the end of",
            " * \(ctx.name)_runtime.c: the task-layout descriptors the runtime copies, checks and serialises",
            " * tasks by, the dispatch of classic methods, and the module's entry point. */",
            "#ifndef \(ctx.guardPrefix)_LIB_EXEC_H",
            "#define \(ctx.guardPrefix)_LIB_EXEC_H",
            "",
            "#include <stddef.h>",
            "",
            "#define CHI_GEN_FIELD(type, member, ftype, fdir, bulk_size, bulk_mode)                      \\",
            "    {#member, (uint32_t)offsetof(type, member), (uint32_t)sizeof(((type *)0)->member), ftype, \\",
            "     fdir, bulk_size, bulk_mode}",
        ]
        var rows: [String] = []
        if !spec.createParams.isEmpty {
            // The double underscore keeps the name apart from every method's (snake names have none).
            out += ["", "/* kCreate's params, for bindings and tools that build them by name (ABI 1.7): never",
                    " * dispatched, offsets from the start of the params struct. */",
                    "static const chi_field_desc_t chi_gen__create_fields[] = {"]
            for f in spec.createParams {
                out.append("    CHI_GEN_FIELD(\(ctx.paramsType), \(f.name), \(f.type.cConstant), CHI_DIR_IN, -1, 0),")
            }
            out.append("};")
            rows.append("    {CHI_METHOD_CREATE, (uint32_t)sizeof(\(ctx.paramsType)), CHI_MF_CREATE_PARAMS, \(spec.createParams.count), \"Create\", chi_gen__create_fields, NULL},")
        }
        for m in spec.methods {
            let fields = m.fields.isEmpty ? "NULL" : "chi_gen_\(m.snake)_fields"
            if !m.fields.isEmpty {
                out += ["", "static const chi_field_desc_t chi_gen_\(m.snake)_fields[] = {"]
                for f in m.fields {
                    var bulkSize = "-1", mode = "0"
                    if case .bulk(let s) = f.type {
                        bulkSize = String(m.fieldIndex(s)!)
                        mode = [f.bulkWrite ? "CHI_DT_WRITE" : nil, f.bulkExpose ? "CHI_DT_EXPOSE" : nil].compactMap { $0 }.joined(separator: " | ")
                    }
                    out.append("    CHI_GEN_FIELD(\(ctx.taskType(m)), \(f.name), \(f.type.cConstant), \(f.direction.cName), \(bulkSize), \(mode)),")
                }
                out.append("};")
            }
            let handler = m.style == .plain ? "__extension__(const void *)\(m.name)" : "NULL"
            rows.append("    {\(ctx.idMacro(m)), (uint32_t)sizeof(\(ctx.taskType(m))), \(m.cFlags), \(m.fields.count), \"\(m.name)\", \(fields), \(handler)},")
        }
        if !rows.isEmpty {
            out += ["", "/* Plain methods carry their handler: the runtime calls it through libffi, not run.",
                    " * (`handler` is a `const void *`; __extension__ keeps -pedantic quiet about the cast.) */",
                    "static const chi_method_desc_t chi_gen_methods[] = {"] + rows + ["};"]
        }
        if let fields = spec.state {
            out += CState.codec(ctx, spec, fields)
            out += declaredStateGlue(ctx, spec)
        } else {
            out += ownStateGlue(ctx, spec)
        }
        out += ["", "static int chi_gen_run(void *state, chi_task_t *task, chi_rctx_t *rctx) {",
                "    /* The runtime checks ids and sizes against the descriptors; checking again keeps a",
                "     * runtime bug from becoming an out-of-bounds access here. */",
                "    switch (task->method) {"]
        let classic = spec.methods.filter { $0.style == .classic }
        for m in classic {
            out += ["    case \(ctx.idMacro(m)):",
                    "        if (task->size < sizeof(\(ctx.taskType(m)))) return -CHI_EBADTASK;",
                    "        return \(m.name)((\(ctx.stateType) *)state, (\(ctx.taskType(m)) *)task, rctx);"]
        }
        if classic.isEmpty { out += ["    default:", "        (void)state;", "        (void)rctx;", "        return -CHI_ENOMETHOD;"] }
        else { out += ["    default:", "        return -CHI_ENOMETHOD;"] }
        out += ["    }", "}", "",
                "static int chi_gen_monitor(void *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {",
                "    return Monitor((\(ctx.stateType) *)state, mode, task, rctx);",
                "}", "",
                "static int chi_gen_map_task_to_lane(void *state, chi_container_t *c, const chi_task_t *task) {",
                "    return MapTaskToLane((\(ctx.stateType) *)state, c, task);",
                "}", "",
                "static const chi_module_vtable_t chi_gen_vtable = {",
                "    .size = sizeof(chi_module_vtable_t),",
                "    .abi_major = CHI_ABI_MAJOR,",
                "    .abi_minor = CHI_ABI_MINOR,",
                "    .name = \(ctx.upper)_MODULE_NAME,",
                "    .version = \(ctx.version),",
                "    .nmethods = \(rows.count),",
                "    .methods = \(rows.isEmpty ? "NULL" : "chi_gen_methods"),",
                "    .create = chi_gen_create,",
                "    .destroy = \(spec.hasDestroy || spec.state != nil ? "chi_gen_destroy" : "NULL"),",
                "    .run = chi_gen_run,",
                "    .monitor = chi_gen_monitor,",
                "    .map_task_to_lane = chi_gen_map_task_to_lane,",
                "    .upgrade = \(spec.hasUpgrade ? "chi_gen_upgrade" : "NULL"),"]
        if spec.hasMigrate {
            out += ["    .migrate_out = chi_gen_migrate_out,", "    .migrate_in = chi_gen_migrate_in,"]
        }
        if spec.state != nil {
            out += ["    .state_bytes = chi_gen_state_bytes,"]
            if let at = out.firstIndex(of: "static const chi_module_vtable_t chi_gen_vtable = {") {
                out.insert(contentsOf: [
                    "/* For chimaera status: the size of the state's record (fixed by its fields). */",
                    "static uint64_t chi_gen_state_bytes(chi_container_t *c, const void *state) {",
                    "    (void)c;",
                    "    return (uint64_t)chi_gen_state_save(state, NULL, 0);",
                    "}", ""], at: at)
            }
        }
        out += ["};", "",
                "CHI_MODULE_EXPORT(&chi_gen_vtable)", "",
                "#endif", ""]
        return out.joined(separator: "\n")
    }

    /// The hooks' glue when the kit owns the state: it allocates it with its header, and frees it
    /// when the user's hook fails or after Destroy.
    private static func declaredStateGlue(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [String] {
        /// A hook that fills a state the glue allocates.
        func building(_ head: String, _ call: String) -> [String] {
            ["", head,
             "    \(ctx.stateType) *s = chi_gen_state_new();",
             "    if (s == NULL) return -ENOMEM;",
             "    int rc = \(call);",
             "    if (rc < 0) {",
             "        free(s);",
             "        return rc;",
             "    }",
             "    *state = s;",
             "    return 0;",
             "}"]
        }
        var out = building("static int chi_gen_create(chi_container_t *c, const void *params, uint32_t params_size, void **state) {",
                           "Create(c, &p, s)")
        out.insert(contentsOf: ["    /* Params from an older client may be shorter: the rest stays zero. */",
                                "    \(ctx.paramsType) p;",
                                "    memset(&p, 0, sizeof p);",
                                "    if (params != NULL) memcpy(&p, params, params_size < sizeof p ? params_size : sizeof p);"], at: 2)
        out += ["", "static void chi_gen_destroy(chi_container_t *c, void *state) {",
                spec.hasDestroy ? "    Destroy(c, (\(ctx.stateType) *)state);" : "    (void)c;",
                "    free(state);",
                "}"]
        if spec.hasUpgrade {
            out += building("static int chi_gen_upgrade(chi_container_t *c, void *old_state, uint32_t old_version, void **state) {",
                            "Upgrade(c, old_state, old_version, s)")
        }
        if spec.hasMigrate {
            out += ["", "static int chi_gen_migrate_out(chi_container_t *c, void *state, chi_migrate_stream_t *out) {",
                    "    return MigrateOut(c, (const \(ctx.stateType) *)state, out);",
                    "}"]
            out += building("static int chi_gen_migrate_in(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version, void **state) {",
                            "MigrateIn(c, in, version, s)")
        }
        return out
    }

    /// The hooks' glue when the module's own code allocates its state.
    private static func ownStateGlue(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [String] {
        var out: [String] = [
            "",
            "static int chi_gen_create(chi_container_t *c, const void *params, uint32_t params_size, void **state) {",
            "    /* Params from an older client may be shorter: the rest stays zero. */",
            "    \(ctx.paramsType) p;",
            "    memset(&p, 0, sizeof p);",
            "    if (params != NULL) memcpy(&p, params, params_size < sizeof p ? params_size : sizeof p);",
            "    \(ctx.stateType) *s = NULL;",
            "    int rc = Create(c, &p, &s);",
            "    if (rc < 0) return rc;",
            "    *state = s;",
            "    return 0;",
            "}",
        ]
        if spec.hasDestroy {
            out += ["", "static void chi_gen_destroy(chi_container_t *c, void *state) { Destroy(c, (\(ctx.stateType) *)state); }"]
        }
        if spec.hasUpgrade {
            out += ["", "static int chi_gen_upgrade(chi_container_t *c, void *old_state, uint32_t old_version, void **state) {",
                    "    \(ctx.stateType) *s = NULL;",
                    "    int rc = Upgrade(c, old_state, old_version, &s);",
                    "    if (rc < 0) return rc;",
                    "    *state = s;",
                    "    return 0;",
                    "}"]
        }
        if spec.hasMigrate {
            out += ["", "static int chi_gen_migrate_out(chi_container_t *c, void *state, chi_migrate_stream_t *out) {",
                    "    return MigrateOut(c, (const \(ctx.stateType) *)state, out);",
                    "}",
                    "",
                    "static int chi_gen_migrate_in(chi_container_t *c, chi_migrate_stream_t *in, uint32_t version, void **state) {",
                    "    \(ctx.stateType) *s = NULL;",
                    "    int rc = MigrateIn(c, in, version, &s);",
                    "    if (rc < 0) return rc;",
                    "    *state = s;",
                    "    return 0;",
                    "}"]
        }
        return out
    }
}
