/// A C module's declared state (`state:` in the methods YAML): the struct and the helper
/// declarations of the `decls` region, and the record code of `<name>_lib_exec.h` that Migrate
/// and Upgrade use, so that no module writes its own serialisation.
///
/// The record is the same bytes a Swift module writes (SwiftState); docs/modules.md describes
/// it. Every kit-made state starts with the same header, whatever the language and version:
/// {magic, the version whose code made it, a function writing its record}. That header is how
/// a new version's Upgrade reads an old version's state without knowing its layout: it asks the
/// old code (never unloaded) for the record and reads the fields it knows by name and type.
enum CState {
    static let stateMagic = "0x31534b43u"  // "CKS1" in memory
    static let recordMagic = "0x31524b43u"  // "CKR1"

    /// The state struct and the helpers' prototypes, for the `decls` region.
    static func decls(_ ctx: ModuleContext, _ spec: ModuleSpec, _ fields: [StateField]) -> [String] {
        var out = [
            "/** The kit's header at the start of every state it makes, laid out alike by every version",
            " *  and language, so that a later version's Upgrade can read this version's state. */",
            "typedef struct chi_gen_state_hdr {",
            "    uint32_t magic;   /* \(stateMagic): made by the kit */",
            "    uint32_t version; /* the module version whose code made it */",
            "    /** Writes the state's record into buf when cap holds it; returns its size either way. */",
            "    long (*save)(const void *state, void *buf, size_t cap);",
            "} chi_gen_state_hdr_t;",
            "",
        ]
        let helpers = (spec.hasMigrate ? ["chi_gen_state_write", "chi_gen_state_read"] : []) + (spec.hasUpgrade ? ["chi_gen_state_carry"] : [])
        out += helpers.isEmpty
            ? ["/** One container's state: the fields `state:` declares in \(ctx.name)_methods.yaml. The kit",
               " *  allocates it zeroed and frees it after Destroy. */"]
            : ["/** One container's state: the fields `state:` declares in \(ctx.name)_methods.yaml. The kit",
               " *  allocates it zeroed, frees it after Destroy, and its code saves and restores every field",
               " *  (\(helpers.joined(separator: ", "))). */"]
        out += [
            "typedef struct \(ctx.name)_state {",
            "    chi_gen_state_hdr_t chi_gen_hdr; /* the kit's; leave it alone */",
        ]
        out += memberLines(fields)
        out += ["} \(ctx.stateType);",
                "",
                "/** Writes state's record (docs/modules.md) into buf when cap holds it; returns its size either",
                " *  way, so chi_gen_state_save(state, NULL, 0) sizes it. */",
                "static long chi_gen_state_save(const void *state, void *buf, size_t cap);"]
        if spec.hasMigrate {
            out += ["",
                    "/** Writes state's fields to a migration stream as one record. Returns 0 or -errno. */",
                    "static int chi_gen_state_write(chi_migrate_stream_t *out, const \(ctx.stateType) *state);",
                    "/** Reads the record MigrateOut wrote (module version `version`) into state; a short, long",
                    " *  or mismatched one is refused with -EPROTO, and state is then to be discarded. */",
                    "static int chi_gen_state_read(\(ctx.stateType) *state, chi_migrate_stream_t *in, uint32_t version);"]
        }
        if spec.hasUpgrade {
            out += ["",
                    "/** Fills state from a state of module version old_version that the kit made: every field",
                    " *  whose name and type are the same in both versions. -EPROTO if old_state is not one. */",
                    "static int chi_gen_state_carry(\(ctx.stateType) *state, const void *old_state, uint32_t old_version);"]
        }
        return out + [""]
    }

    private static func memberLines(_ fields: [StateField]) -> [String] {
        fields.map { f in
            let note: String
            switch f.type {
            case .str(let n): note = " /* str[\(n)]: at most \(n - 1) bytes and a NUL */"
            case .bytes(let n): note = " /* bytes[\(n)] */"
            default: note = ""
            }
            return "    \(f.type.cType) \(f.name)\(f.type.cArraySuffix);\(note)"
        }
    }

    /// The record code of `<name>_lib_exec.h`, after the method descriptors.
    static func codec(_ ctx: ModuleContext, _ spec: ModuleSpec, _ fields: [StateField]) -> [String] {
        let v = "\(ctx.version)u"
        var out = [
            "",
            "/* ---- The state's record: the bytes Migrate sends and Upgrade reads ------------------------",
            " * A header {magic \"CKR1\", the module version that wrote it, the field count, the record's",
            " * length}, then each field {name length u16, CHI_FT_* type u16, size u32, name, value}, in the",
            " * host's byte order (the nodes of one cluster share it; another fails the magic). A record",
            " * comes from another node or another version: chi_gen_state_load checks every byte it uses. */",
            "#define CHI_GEN_STATE_MAGIC \(stateMagic)",
            "#define CHI_GEN_RECORD_MAGIC \(recordMagic)",
            "#define CHI_GEN_RECORD_MAX (16u << 20) /* 64 fields of up to 64 KiB, with room to spare */",
            "",
            "typedef struct chi_gen_state_field {",
            "    const char *name;",
            "    uint32_t type; /* CHI_FT_* */",
            "    uint32_t size;",
            "    size_t offset; /* in \(ctx.stateType) */",
            "} chi_gen_state_field_t;",
            "",
            "#define CHI_GEN_STATE_FIELD(member, ftype) \\",
            "    {#member, ftype, (uint32_t)sizeof(((\(ctx.stateType) *)0)->member), offsetof(\(ctx.stateType), member)}",
            "",
            "static const chi_gen_state_field_t chi_gen_state_fields[] = {",
        ]
        out += fields.map { "    CHI_GEN_STATE_FIELD(\($0.name), \($0.type.cConstant))," }
        out += [
            "};",
            "enum { CHI_GEN_STATE_NFIELDS = (int)(sizeof chi_gen_state_fields / sizeof chi_gen_state_fields[0]) };",
            "",
            "/* A later version calls it through the state's header. */",
            "static long chi_gen_state_save(const void *state, void *buf, size_t cap) {",
            "    size_t need = 16;",
            "    for (int i = 0; i < CHI_GEN_STATE_NFIELDS; i++)",
            "        need += 8 + strlen(chi_gen_state_fields[i].name) + chi_gen_state_fields[i].size;",
            "    if (buf == NULL || cap < need) return (long)need;",
            "    uint8_t *p = buf;",
            "    uint32_t head[4] = {CHI_GEN_RECORD_MAGIC, \(v), (uint32_t)CHI_GEN_STATE_NFIELDS, (uint32_t)need};",
            "    memcpy(p, head, sizeof head);",
            "    p += sizeof head;",
            "    for (int i = 0; i < CHI_GEN_STATE_NFIELDS; i++) {",
            "        const chi_gen_state_field_t *f = &chi_gen_state_fields[i];",
            "        uint16_t name_len = (uint16_t)strlen(f->name), type = (uint16_t)f->type;",
            "        memcpy(p, &name_len, 2);",
            "        memcpy(p + 2, &type, 2);",
            "        memcpy(p + 4, &f->size, 4);",
            "        memcpy(p + 8, f->name, name_len);",
            "        p += 8 + name_len;",
            "        memcpy(p, (const uint8_t *)state + f->offset, f->size);",
            "        if (f->type == CHI_FT_STR) p[f->size - 1] = 0; /* a full str[N] travels cut to N-1 bytes */",
            "        p += f->size;",
            "    }",
            "    return (long)need;",
            "}",
            "",
            "/** A zeroed state with the kit's header: what Create, Upgrade and MigrateIn fill in. */",
            "static \(ctx.stateType) *chi_gen_state_new(void) {",
            "    \(ctx.stateType) *s = calloc(1, sizeof(*s));",
            "    if (s == NULL) return NULL;",
            "    s->chi_gen_hdr.magic = CHI_GEN_STATE_MAGIC;",
            "    s->chi_gen_hdr.version = \(v);",
            "    s->chi_gen_hdr.save = chi_gen_state_save;",
            "    return s;",
            "}",
        ]
        guard spec.hasMigrate || spec.hasUpgrade else { return out }
        out += [
            "",
            "/* The helpers are for the Migrate and Upgrade regions, which may stop calling them. */",
            "#define CHI_GEN_HELPER static __attribute__((unused))",
            "",
            "static int chi_gen_state_find(const char *name, size_t len) {",
            "    for (int i = 0; i < CHI_GEN_STATE_NFIELDS; i++)",
            "        if (strlen(chi_gen_state_fields[i].name) == len && memcmp(chi_gen_state_fields[i].name, name, len) == 0)",
            "            return i;",
            "    return -1;",
            "}",
            "",
            "/** Stores record rec (len bytes, written by module version `version`) into state, which the",
            " *  kit allocated zeroed. From this same version the record must hold exactly this version's",
            " *  fields (a container moving); from another (an upgrade) each field whose name, type and",
            " *  size are the same here is carried and the others stay zero. Returns 0, or -EPROTO for a",
            " *  record that is short, long, malformed, of another version, or that does not match; state",
            " *  may then hold part of it and is to be discarded. */",
            "CHI_GEN_HELPER int chi_gen_state_load(\(ctx.stateType) *state, const uint8_t *rec, size_t len, uint32_t version) {",
            "    const bool exact = version == \(v);",
            "    bool seen[CHI_GEN_STATE_NFIELDS] = {false};",
            "    uint32_t head[4];",
            "    if (len < sizeof head) return -EPROTO;",
            "    memcpy(head, rec, sizeof head);",
            "    if (head[0] != CHI_GEN_RECORD_MAGIC || head[1] != version || head[3] != len) return -EPROTO;",
            "    if (head[2] > 1024 || (exact && head[2] != (uint32_t)CHI_GEN_STATE_NFIELDS)) return -EPROTO;",
            "    size_t at = sizeof head;",
            "    for (uint32_t k = 0; k < head[2]; k++) {",
            "        uint16_t name_len, type;",
            "        uint32_t size;",
            "        if (len - at < 8) return -EPROTO;",
            "        memcpy(&name_len, rec + at, 2);",
            "        memcpy(&type, rec + at + 2, 2);",
            "        memcpy(&size, rec + at + 4, 4);",
            "        at += 8;",
            "        if (name_len == 0 || name_len > 64 || name_len > len - at || size == 0 || size > len - at - name_len)",
            "            return -EPROTO;",
            "        int i = chi_gen_state_find((const char *)rec + at, name_len);",
            "        const uint8_t *value = rec + at + name_len;",
            "        at += name_len + size;",
            "        if (i < 0) {",
            "            if (exact) return -EPROTO; /* a field this version does not have */",
            "            continue;",
            "        }",
            "        const chi_gen_state_field_t *f = &chi_gen_state_fields[i];",
            "        if (seen[i]) return -EPROTO; /* a field twice */",
            "        seen[i] = true;",
            "        if (type != f->type || size != f->size) {",
            "            if (exact) return -EPROTO;",
            "            continue; /* changed its type between versions: starts at zero */",
            "        }",
            "        if (type == CHI_FT_BOOL && value[0] > 1) return -EPROTO;",
            "        if (type == CHI_FT_STR && memchr(value, 0, size) == NULL) return -EPROTO;",
            "        memcpy((uint8_t *)state + f->offset, value, size);",
            "    }",
            "    return at == len ? 0 : -EPROTO; /* nothing may follow the last field */",
            "}",
        ]
        if spec.hasMigrate {
            out += [
                "",
                "CHI_GEN_HELPER int chi_gen_state_write(chi_migrate_stream_t *out, const \(ctx.stateType) *state) {",
                "    size_t n = (size_t)chi_gen_state_save(state, NULL, 0);",
                "    uint8_t *rec = malloc(n);",
                "    if (rec == NULL) return -ENOMEM;",
                "    chi_gen_state_save(state, rec, n);",
                "    int rc = chi_migrate_write(out, rec, n);",
                "    free(rec);",
                "    return rc;",
                "}",
                "",
                "CHI_GEN_HELPER int chi_gen_state_read(\(ctx.stateType) *state, chi_migrate_stream_t *in, uint32_t version) {",
                "    /* The stream is one record, whole: its length is checked against the record's own. */",
                "    uint64_t len = chi_migrate_remaining(in);",
                "    if (len < 16 || len > CHI_GEN_RECORD_MAX) return -EPROTO;",
                "    uint8_t *rec = malloc((size_t)len);",
                "    if (rec == NULL) return -ENOMEM;",
                "    size_t got = 0;",
                "    int rc = 0;",
                "    while (rc == 0 && got < len) {",
                "        long n = chi_migrate_read(in, rec + got, (size_t)len - got);",
                "        if (n <= 0) rc = n < 0 ? (int)n : -EPROTO; /* 0: shorter than it said */",
                "        else got += (size_t)n;",
                "    }",
                "    if (rc == 0) rc = chi_gen_state_load(state, rec, (size_t)len, version);",
                "    free(rec);",
                "    return rc;",
                "}",
            ]
        }
        if spec.hasUpgrade {
            out += [
                "",
                "CHI_GEN_HELPER int chi_gen_state_carry(\(ctx.stateType) *state, const void *old_state, uint32_t old_version) {",
                "    /* Only the header is read through the old pointer; the old code writes the rest. A",
                "     * version whose state the kit did not make has no header: upgrade from it by hand. */",
                "    const chi_gen_state_hdr_t *old = old_state;",
                "    if (old == NULL || old->magic != CHI_GEN_STATE_MAGIC || old->version != old_version || old->save == NULL)",
                "        return -EPROTO;",
                "    long n = old->save(old_state, NULL, 0);",
                "    if (n < 16 || (unsigned long)n > CHI_GEN_RECORD_MAX) return -EPROTO;",
                "    uint8_t *rec = malloc((size_t)n);",
                "    if (rec == NULL) return -ENOMEM;",
                "    int rc = -EPROTO;",
                "    if (old->save(old_state, rec, (size_t)n) == n) rc = chi_gen_state_load(state, rec, (size_t)n, old_version);",
                "    free(rec);",
                "    return rc;",
                "}",
            ]
        }
        return out
    }
}
