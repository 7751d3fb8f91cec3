import Testing

@testable import ChimaeraDevKit

/// The description of every error parsing `text` gives, or [] when it parses.
private func errors(_ text: String) -> [String] {
    do {
        _ = try MethodsFile.parse(text, file: "m.yaml")
        return []
    } catch {
        return error.all.map(\.description)
    }
}

private let inherited = """
    kCreate: 0
    kDestroy: 1
    kNodeFailure: -1
    kRecover: -1
    kMigrate: -1
    kUpgrade: -1

    """

@Suite struct GenerateMethodsFileTests {
    @Test func theTemplateDeclaresCreateAndDestroyOnly() throws {
        let ctx = ModuleContext(namespace: "example", name: "calc", language: .c, version: 1)
        let spec = try MethodsFile.parse(Templates.methodsYAML(ctx), file: "m.yaml")
        #expect(spec.hasDestroy && !spec.hasUpgrade)
        #expect(spec.methods.isEmpty && spec.createParams.isEmpty)
    }

    @Test func writeMarksAMethodThatChangesState() throws {
        let spec = try MethodsFile.parse(inherited + """
            kPut:
              id: 10
              periodic: true
              write: true
            kGet: 11
            """, file: "m.yaml")
        let put = spec.methods.first { $0.name == "Put" }!, get = spec.methods.first { $0.name == "Get" }!
        #expect(put.write && !get.write)
        #expect(put.cFlags == "CHI_MF_PERIODIC_OK | CHI_MF_WRITE" && get.cFlags == "0")
        #expect(put.swiftFlags == "UInt32(CHI_MF_PERIODIC_OK) | UInt32(CHI_MF_WRITE)")
    }

    @Test func customMethodsKeepTheirParamsInOrderWithBulkDefaults() throws {
        let spec = try MethodsFile.parse(inherited + """
            kDecompress: 11
            kCompress:
              id: 10
              style: plain
              periodic: true
              doc: Packs.
              params:
                data: in bulk(size)
                size: in u64
                out: out bulk(cap)
                cap: inout u32
                both: inout bulk(size)
                tag: in str[16]
            """, file: "m.yaml")
        #expect(spec.methods.map(\.name) == ["Compress", "Decompress"])
        let c = spec.methods[0]
        #expect(c.id == 10 && c.style == .plain && c.periodic && c.doc == "Packs.")
        #expect(c.fields.map(\.name) == ["data", "size", "out", "cap", "both", "tag"])
        #expect(c.fields[0].type == .bulk(sizeField: "size") && c.fields[0].bulkWrite && !c.fields[0].bulkExpose)
        #expect(!c.fields[2].bulkWrite && c.fields[2].bulkExpose)
        #expect(c.fields[4].bulkWrite && c.fields[4].bulkExpose)
        #expect(c.fields[5].type == .str(16) && c.fields[5].line == 19)
        #expect(c.fieldIndex("size") == 1)
        #expect(spec.methods[1].style == .classic && spec.methods[1].fields.isEmpty)
    }

    @Test func createParamsAndHooksAreNotMethods() throws {
        let spec = try MethodsFile.parse("""
            kCreate:
              id: 0
              params:
                level: in i32
                name: in str[8]
            kDestroy: -1
            kUpgrade: 5
            kRecover: 3
            """, file: "m.yaml")
        #expect(spec.createParams.map(\.name) == ["level", "name"])
        #expect(!spec.hasDestroy && spec.hasUpgrade)
        #expect(spec.methods.map(\.id) == [3])
    }

    @Test func duplicateIdsNameBothLines() {
        #expect(errors(inherited + "kA: 10\nkB: 12\nkC: 10\n") == [
            "m.yaml:9: kC has id 10, already used by kA on line 7"
        ])
    }

    @Test func reservedAndInheritedIdsAreRefused() {
        #expect(errors(inherited + "kA: 7\n") == [
            "m.yaml:7: id 7 of kA is reserved: ids 6-9 lie between the inherited methods (0-5) and custom ones (10 and up)"
        ])
        #expect(errors(inherited + "kA: 3\n").first?.hasPrefix("m.yaml:7: id 3 of kA belongs to an inherited method") == true)
        #expect(errors(inherited + "kA: 4096\n").first?.contains("up to 4095") == true)
        #expect(errors("kCreate: 0\nkRecover: 4\n") == [
            "m.yaml:2: kRecover is an inherited method: its id must be 3, or -1 if it is not implemented"
        ])
    }

    @Test func badNamesAreRefusedWithTheirLine() {
        for bad in ["compress", "kcompress", "k_Compress", "kCom-press", "KCompress"] {
            let e = errors(inherited + "\(bad): 10\n")
            #expect(e.count == 1 && e[0].hasPrefix("m.yaml:7: bad method name \"\(bad)\""), "\(bad): \(e)")
        }
        #expect(errors(inherited + "kMonitor: 10\n").first?.contains("reserved") == true)
    }

    @Test func createIsRequired() {
        #expect(errors("kDestroy: 1\n") == ["m.yaml:1: kCreate is missing: every module needs it (add `kCreate: 0`)"])
        #expect(errors("kCreate: -1\n").first?.hasPrefix("m.yaml:1: kCreate cannot be -1") == true)
        #expect(errors("").first?.hasPrefix("m.yaml:1: no methods are declared") == true)
        #expect(errors("# only a comment\n").first?.hasPrefix("m.yaml:1: no methods are declared") == true)
    }

    @Test func badParamsNameTheirLine() {
        func e(_ params: String) -> String? {
            errors(inherited + "kA:\n  id: 10\n  params:\n" + params).first
        }
        #expect(e("    a: in int128\n")?.hasPrefix("m.yaml:10: parameter a: unknown type \"int128\"") == true)
        #expect(e("    a: sideways u8\n")?.hasPrefix("m.yaml:10: parameter a: \"sideways u8\"") == true)
        #expect(e("    Bad: in u8\n")?.hasPrefix("m.yaml:10: bad parameter name \"Bad\"") == true)
        #expect(e("    chi_x: in u8\n")?.hasPrefix("m.yaml:10: bad parameter name") == true)
        #expect(e("    int: in u8\n")?.hasPrefix("m.yaml:10: bad parameter name") == true)
        #expect(e("    a: in u8 write\n")?.contains("only bulk parameters") == true)
        #expect(e("    d: in bulk(n)\n")?.hasPrefix("m.yaml:10: bulk parameter d of kA names its size \"n\"") == true)
        #expect(e("    d: in bulk(n)\n    n: out u64\n")?.hasPrefix("m.yaml:11: n, the size of bulk parameter d, must be") == true)
        #expect(e("    d: in bulk(n)\n    n: in f64\n")?.hasPrefix("m.yaml:11:") == true)
        #expect(e("    a: in u8\n    a: in u8\n")?.hasPrefix("m.yaml:11: parameter a of kA is declared twice") == true)
        #expect(e("    s: in str[0]\n")?.contains("unknown type \"str[0]\"") == true)
        #expect(errors("kCreate:\n  id: 0\n  params:\n    p: out u8\n").first?.hasPrefix("m.yaml:4: create parameter p must be `in`") == true)
    }

    @Test func everyProblemIsReportedInLineOrder() {
        let e = errors(inherited + "kB: 8\nbad: 11\nkC:\n  id: 12\n  colour: red\n")
        #expect(e.count == 3)
        #expect(e.map { $0.split(separator: ":")[1] } == ["7", "8", "11"])
    }

    @Test func yamlSyntaxErrorsKeepLibyamlsLine() {
        let e = errors(inherited + "kA: [10\n")
        #expect(e.count == 1 && e[0].hasPrefix("m.yaml:7: invalid YAML"))
    }

    @Test func namesConvertTheWayTheGeneratorsNeed() {
        #expect(Naming.snake("GetPoolId") == "get_pool_id")
        #expect(Naming.snake("IOStats") == "io_stats")
        #expect(Naming.snake("Md5Sum") == "md5_sum")
        #expect(Naming.lowerCamel("IOStats") == "ioStats")
        #expect(Naming.lowerCamel("Compress") == "compress")
        #expect(Naming.upperCamel(snake: "hello_example") == "HelloExample")
        #expect(Naming.isSnakeIdentifier("my_mods") && !Naming.isSnakeIdentifier("My") && !Naming.isSnakeIdentifier("a__b"))
    }
}
