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

    private static func createSig(_ ctx: ModuleContext, tail: String) -> [String] {
        Text.call("static int Create", ["chi_container_t *c", "const \(ctx.paramsType) *params", "\(ctx.stateType) **state"], tail: tail)
    }

    private static func destroySig(_ ctx: ModuleContext, tail: String) -> [String] {
        ["static void Destroy(chi_container_t *c, \(ctx.stateType) *state)\(tail)"]
    }

    private static func upgradeSig(_ ctx: ModuleContext, tail: String) -> [String] {
        Text.call("static int Upgrade", ["chi_container_t *c", "void *old_state", "uint32_t old_version", "\(ctx.stateType) **state"], tail: tail)
    }

    /// The body of the `decls` region: the state type and every function the generated
    /// tables call, so a signature that drifts from the declaration fails to compile.
    static func declsRegion(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [String] {
        var out = ["typedef struct \(ctx.name)_state \(ctx.stateType); /* defined in the Create region */", ""]
        out += createSig(ctx, tail: ";")
        if spec.hasDestroy { out += destroySig(ctx, tail: ";") }
        if spec.hasUpgrade { out += upgradeSig(ctx, tail: ";") }
        out += ["static int MapTaskToLane(\(ctx.stateType) *state, chi_container_t *c, const chi_task_t *task);",
                "static int Monitor(\(ctx.stateType) *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx);"]
        for m in spec.methods { out += signature(ctx, m, tail: ";") }
        return out
    }

    /// The regions the runtime file should have, with the skeleton each starts as.
    static func skeletons(_ ctx: ModuleContext, _ spec: ModuleSpec) -> [(name: String, skeleton: [String])] {
        var out: [(String, [String])] = []
        out.append(("Create", [
            "/** One container's state: what its methods share. Add your own fields. */",
            "struct \(ctx.name)_state {",
            "    uint32_t id; /* the container's id in its pool */",
            "};",
            "",
            "/** Builds one container's state from the pool's create params and adds its lanes. Returns 0",
            " *  or -errno (the pool is not created). */",
        ] + createSig(ctx, tail: " {") + [
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
            ] + upgradeSig(ctx, tail: " {") + [
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
            rows.append("    {\(ctx.idMacro(m)), (uint32_t)sizeof(\(ctx.taskType(m))), \(m.periodic ? "CHI_MF_PERIODIC_OK" : "0"), \(m.fields.count), \"\(m.name)\", \(fields), \(handler)},")
        }
        if !rows.isEmpty {
            out += ["", "/* Plain methods carry their handler: the runtime calls it through libffi, not run.",
                    " * (`handler` is a `const void *`; __extension__ keeps -pedantic quiet about the cast.) */",
                    "static const chi_method_desc_t chi_gen_methods[] = {"] + rows + ["};"]
        }
        out += [
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
                "    .destroy = \(spec.hasDestroy ? "chi_gen_destroy" : "NULL"),",
                "    .run = chi_gen_run,",
                "    .monitor = chi_gen_monitor,",
                "    .map_task_to_lane = chi_gen_map_task_to_lane,",
                "    .upgrade = \(spec.hasUpgrade ? "chi_gen_upgrade" : "NULL"),",
                "};", "",
                "CHI_MODULE_EXPORT(&chi_gen_vtable)", "",
                "#endif", ""]
        return out.joined(separator: "\n")
    }
}
