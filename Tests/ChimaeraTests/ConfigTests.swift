import Glibc
import Testing

@testable import Chimaera
import ChimaeraYAML

/// Parses `text` as chimaera.yaml, for tests that expect success.
private func parse(_ text: String) throws -> RuntimeConfig {
    try RuntimeConfig.parse(text, file: "chimaera.yaml")
}

/// The description of the error parsing `text` gives, or nil when it parses.
private func failure(_ text: String) -> String? {
    do {
        _ = try RuntimeConfig.parse(text, file: "chimaera.yaml")
        return nil
    } catch {
        return error.description
    }
}

private let nameRule = "of 1 to 48 characters from A-Z a-z 0-9 _ . -"
private let sizeRule = "a size between 16M and 64G (bytes, or a number with a K, M or G suffix)"
private let depthRule = "a power of two between 64 and 1048576"
private let workerRule = "an integer between 0 and 64"
private let spinRule = "an integer between 0 and 100000"
private let boolRule = "true or false (or yes/no, on/off)"
private let levelRule = "one of debug, info, warn, error"

@Suite struct ConfigDefaultsTests {
    @Test func defaultsAreTheDocumentedValues() {
        let c = RuntimeConfig()
        #expect(c.name == "default")
        #expect(c.shmSize == 1 << 30)
        #expect(c.queueDepth == 4096)
        #expect(c.lowLatencyWorkers == 1 && c.highLatencyWorkers == 1)
        #expect(c.pinWorkers && c.workerSpinUs == 50)
        #expect(c.modulePath.isEmpty && c.modules.isEmpty)
        #expect(c.logLevel == .info && c.clientMode == .attach && c.clientSpinUs == 20)
    }

    @Test(arguments: ["", "{}", "# a comment\n", "---\n", "\n\n", "runtime:\nclient:\n", "client: {}"])
    func documentWithoutSettingsGivesDefaults(text: String) throws {
        #expect(try parse(text) == RuntimeConfig())
    }
}

@Suite struct ConfigValueTests {
    @Test func everyKeyIsParsed() throws {
        let c = try parse(
            """
            runtime:
              name: bench-1.a_b
              shm_size: 2G
              queue_depth: 65536
              low_latency_workers: 4
              high_latency_workers: 0
              pin_workers: false
              worker_spin_us: 0
              module_path: [/opt/chimaera/lib, "./mods"]
              modules:
                - chimaera_admin
                - small_message
              log_level: debug
            client:
              mode: embedded
              spin_us: 100000
            """)
        var expected = RuntimeConfig()
        expected.name = "bench-1.a_b"
        expected.shmSize = 2 << 30
        expected.queueDepth = 65536
        expected.lowLatencyWorkers = 4
        expected.highLatencyWorkers = 0
        expected.pinWorkers = false
        expected.workerSpinUs = 0
        expected.modulePath = ["/opt/chimaera/lib", "./mods"]
        expected.modules = ["chimaera_admin", "small_message"]
        expected.logLevel = .debug
        expected.clientMode = .embedded
        expected.clientSpinUs = 100_000
        #expect(c == expected)
    }

    @Test func flowStyleAndQuotedScalarsAreAccepted() throws {
        let c = try parse(#"{runtime: {name: "x", queue_depth: "64", pin_workers: 'no'}}"#)
        #expect(c.name == "x" && c.queueDepth == 64 && !c.pinWorkers)
    }

    @Test(arguments: [
        ("true", true), ("yes", true), ("on", true), ("True", true), ("YES", true),
        ("false", false), ("no", false), ("off", false), ("Off", false),
    ])
    func boolAcceptsYAMLSpellings(text: String, value: Bool) throws {
        #expect(try parse("runtime: {pin_workers: \(text)}").pinWorkers == value)
    }

    @Test(arguments: RuntimeConfig.LogLevel.allCases)
    func everyLogLevelIsAccepted(level: RuntimeConfig.LogLevel) throws {
        #expect(try parse("runtime: {log_level: \(level.rawValue)}").logLevel == level)
    }

    @Test(arguments: RuntimeConfig.ClientMode.allCases)
    func everyClientModeIsAccepted(mode: RuntimeConfig.ClientMode) throws {
        #expect(try parse("client: {mode: \(mode.rawValue)}").clientMode == mode)
    }

    @Test func listKeysWithNoValueAreEmpty() throws {
        let c = try parse("runtime:\n  module_path:\n  modules: ~\n")
        #expect(c.modulePath.isEmpty && c.modules.isEmpty)
    }

    @Test func boundsAreInclusive() throws {
        let low = try parse("runtime: {shm_size: 16M, queue_depth: 64, low_latency_workers: 0}")
        #expect(low.shmSize == 16 << 20 && low.queueDepth == 64 && low.lowLatencyWorkers == 0)
        let high = try parse(
            """
            runtime: {shm_size: 64G, queue_depth: 1048576, high_latency_workers: 64,
                      worker_spin_us: 100000, name: \(String(repeating: "n", count: 48))}
            """)
        #expect(high.shmSize == 64 << 30 && high.queueDepth == 1 << 20)
        #expect(high.highLatencyWorkers == 64 && high.workerSpinUs == 100_000)
        #expect(high.name.count == 48)
    }

    @Test func shmSizeAcceptsPlainBytesAndLowercaseSuffixes() throws {
        #expect(try parse("runtime: {shm_size: 33554432}").shmSize == 32 << 20)
        #expect(try parse("runtime: {shm_size: 512m}").shmSize == 512 << 20)
        #expect(try parse("runtime: {shm_size: 1048576k}").shmSize == 1 << 30)
    }
}

@Suite struct ParseSizeTests {
    @Test(arguments: [
        ("0", 0), ("1024", 1024), ("1K", 1024), ("1k", 1024), ("16M", 16 << 20),
        ("3g", 3 << 30), ("64G", 64 << 30), ("2T", 2 << 40),
    ])
    func sizesWithSuffixesUseBinaryUnits(text: String, bytes: Int) {
        #expect(RuntimeConfig.parseSize(text) == bytes)
    }

    @Test(arguments: [
        "", "K", "1.5G", "-1", "+1", "1X", "1GB", "1 G", " 1G", "G1", "0x10", "١٢",
        "9999999999999T",
    ])
    func malformedOrOverflowingSizesAreRejected(text: String) {
        #expect(RuntimeConfig.parseSize(text) == nil)
    }
}

@Suite struct ConfigBadValueTests {
    @Test func queueDepthThatIsNotAPowerOfTwoNamesKeyLineAndValue() {
        let text = "# Chimaera\n\nruntime:\n  name: a\n  shm_size: 1G\n\n  queue_depth: 100\n"
        #expect(
            failure(text)
                == #"chimaera.yaml:7: runtime.queue_depth: expected \#(depthRule), got "100""#)
    }

    @Test(arguments: [
        ("name: 'has space'", #"name: expected a name \#(nameRule), got "has space""#),
        ("name: ''", #"name: expected a name \#(nameRule), got """#),
        ("name: a/b", #"name: expected a name \#(nameRule), got "a/b""#),
        ("name: \(String(repeating: "n", count: 49))", #"got "\#(String(repeating: "n", count: 49))""#),
        ("name: {a: 1}", "name: expected a name \(nameRule), got a mapping"),
        ("shm_size: 16777215", #"shm_size: expected \#(sizeRule), got "16777215""#),
        ("shm_size: 65G", #"shm_size: expected \#(sizeRule), got "65G""#),
        ("shm_size: 1.5G", #"shm_size: expected \#(sizeRule), got "1.5G""#),
        ("shm_size: [1G]", "shm_size: expected \(sizeRule), got a list"),
        ("queue_depth: 32", #"queue_depth: expected \#(depthRule), got "32""#),
        ("queue_depth: 2097152", #"queue_depth: expected \#(depthRule), got "2097152""#),
        ("queue_depth: lots", #"queue_depth: expected \#(depthRule), got "lots""#),
        ("queue_depth: null", "queue_depth: expected \(depthRule), got no value"),
        ("low_latency_workers: 65", #"low_latency_workers: expected \#(workerRule), got "65""#),
        ("high_latency_workers: -1", #"high_latency_workers: expected \#(workerRule), got "-1""#),
        ("pin_workers: maybe", #"pin_workers: expected \#(boolRule), got "maybe""#),
        ("pin_workers: 1", #"got "1""#),
        ("worker_spin_us: 100001", #"worker_spin_us: expected \#(spinRule), got "100001""#),
        ("worker_spin_us: 1e3", #"worker_spin_us: expected \#(spinRule), got "1e3""#),
        ("module_path: /opt/lib", #"module_path: expected a list of directories, got "/opt/lib""#),
        ("module_path: ['']", #"module_path[0]: expected a non-empty directory path, got """#),
        ("module_path: [a, [b]]", "module_path[1]: expected a non-empty directory path, got a list"),
        ("modules: {a: 1}", "modules: expected a list of module names, got a mapping"),
        ("modules: [ok, ../x]", #"modules[1]: expected a module name \#(nameRule), got "../x""#),
        ("log_level: verbose", #"log_level: expected \#(levelRule), got "verbose""#),
        ("log_level: INFO", #"log_level: expected \#(levelRule), got "INFO""#),
    ])
    func badRuntimeValueIsAnErrorNamingKeyAndValue(setting: String, message: String) throws {
        let error = try #require(failure("runtime:\n  \(setting)\n"))
        #expect(error.hasPrefix("chimaera.yaml:2: runtime."))
        #expect(error.hasSuffix(message))
    }

    @Test(arguments: [
        ("mode: remote", #"client.mode: expected one of attach, embedded, got "remote""#),
        ("spin_us: -5", #"client.spin_us: expected \#(spinRule), got "-5""#),
        ("spin_us: [1]", "client.spin_us: expected \(spinRule), got a list"),
    ])
    func badClientValueIsAnErrorNamingKeyAndValue(setting: String, message: String) {
        #expect(failure("client:\n  \(setting)\n") == "chimaera.yaml:2: \(message)")
    }

    @Test func zeroWorkersInTotalIsAnError() {
        #expect(
            failure("runtime:\n  low_latency_workers: 0\n  high_latency_workers: 0\n")
                == "chimaera.yaml:3: runtime.low_latency_workers + runtime.high_latency_workers: "
                + "expected at least 1 worker in total, got 0")
        #expect(failure("runtime:\n  high_latency_workers: 0\n") == nil)
    }

    @Test func sectionThatIsNotAMappingIsAnError() {
        #expect(failure("runtime: 5\n") == #"chimaera.yaml:1: runtime: expected a mapping, got "5""#)
        #expect(failure("client: [a]\n") == "chimaera.yaml:1: client: expected a mapping, got a list")
        let topLevel = "chimaera.yaml:1: the top level: expected a mapping, got a list"
        #expect(failure("- a\n") == topLevel)
    }

    @Test func omittedValueIsReportedOnItsKeysLine() {
        #expect(
            failure("runtime:\n  log_level:\n  name: x\n")
                == "chimaera.yaml:2: runtime.log_level: expected one of debug, info, warn, error, "
                + "got no value")
        // Without a ':' libyaml would mark the empty value at the next key, two lines on.
        let error = failure("runtime:\n  ? log_level\n\n  ? name\n")
        #expect(error?.hasPrefix("chimaera.yaml:2: runtime.log_level:") == true)
    }

    @Test func listItemErrorIsReportedOnTheItemsLine() {
        let error = failure("runtime:\n  modules:\n    - a\n    - b c\n")
        #expect(error?.hasPrefix("chimaera.yaml:4: runtime.modules[1]:") == true)
    }
}

@Suite struct ConfigKeyTests {
    @Test func unknownKeyIsAnErrorThatNamesIt() {
        let error = failure("runtime:\n  name: a\n  wokers: 4\n")
        #expect(error == #"chimaera.yaml:3: unknown key "runtime.wokers""#)
    }

    @Test func unknownTopLevelKeyIsAnError() {
        let error = failure("client: {}\nruntim:\n  name: a\n")
        #expect(error == #"chimaera.yaml:2: unknown key "runtim""#)
    }

    @Test func unknownClientKeyIsAnError() {
        let error = failure("client:\n  mode: attach\n  spinus: 3\n")
        #expect(error == #"chimaera.yaml:3: unknown key "client.spinus""#)
    }

    @Test func repeatedKeyIsAnErrorNamingBothLines() {
        #expect(
            failure("runtime:\n  name: a\n  modules: []\n  name: b\n")
                == #"chimaera.yaml:4: duplicate key "runtime.name" (first given on line 2)"#)
        #expect(
            failure("client: {}\nclient: {}\n")
                == #"chimaera.yaml:2: duplicate key "client" (first given on line 1)"#)
    }
}

@Suite struct ConfigYAMLErrorTests {
    @Test(arguments: [
        ("runtime:\n  name: a\n   bad: x\n", 3, "mapping values are not allowed in this context"),
        ("runtime:\n  name: a\n  - b\n", 3, "did not find expected key (while parsing a block"),
        ("runtime: [a, b\n", 1, "did not find expected ',' or ']' (while parsing a flow sequence)"),
        ("runtime:\n  name: \"abc\n", 2, "found unexpected end of stream"),
        ("runtime:\n\tname: a\n", 2, "found character that cannot start any token"),
        ("runtime:\n  name: a\u{1}b\n", 2, "control characters are not allowed"),
    ])
    func syntaxErrorNamesFileLineAndLibyamlProblem(text: String, line: Int, problem: String)
        throws
    {
        let error = try #require(failure(text))
        #expect(error.hasPrefix("chimaera.yaml:\(line): invalid YAML: "))
        #expect(error.contains(problem))
    }

    @Test func aliasesAndAnchorsAreRejected() {
        let expected = "chimaera.yaml:2: YAML anchors and aliases are not supported"
        #expect(failure("runtime:\n  name: &n a\n") == expected)
        #expect(failure("client: {}\nruntime: *c\n") == expected)
    }

    @Test func secondDocumentIsRejected() {
        let error = failure("runtime: {}\n---\nclient: {}\n")
        #expect(error == "chimaera.yaml:2: expected a single YAML document, found a second one")
    }

    @Test func nonStringKeyIsRejected() {
        let error = failure("runtime:\n  ? [a]\n  : 1\n")
        #expect(error == "chimaera.yaml:2: mapping keys must be strings, not lists or mappings")
    }

    @Test func excessiveNestingIsRejected() {
        let text = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(failure("runtime: " + text)?.contains("nesting deeper than 64 levels") == true)
    }

    @Test func treeKeepsOrderKindsAndLines() throws {
        let root = try #require(try YAMLNode.parse("b: 1\na:\n  - 'x'\n  - {}\n", file: "t"))
        guard case .mapping(let entries, line: 1) = root else {
            Issue.record("expected a mapping on line 1, got \(root)")
            return
        }
        #expect(entries.map(\.key) == ["b", "a"] && entries.map(\.keyLine) == [1, 2])
        #expect(entries[0].value == .scalar("1", isPlain: true, line: 1))
        let items: [YAMLNode] = [.scalar("x", isPlain: false, line: 3), .mapping([], line: 4)]
        #expect(entries[1].value == .sequence(items, line: 3))
    }
}

/// Serialized: these tests set $CHIMAERA_CONF, which is process-wide.
@Suite(.serialized) struct ConfigLoadTests {
    /// Writes `bytes` to a fresh temporary file and returns its path.
    private func temporaryFile(_ bytes: [UInt8]) throws -> String {
        var template = Array("/tmp/chimaera-config-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    @Test func loadReadsTheGivenFile() throws {
        let path = try temporaryFile(Array("runtime:\n  name: fromfile\n".utf8))
        defer { unlink(path) }
        #expect(try RuntimeConfig.load(path: path).name == "fromfile")
    }

    @Test func nilPathUsesTheEnvironmentVariable() throws {
        let path = try temporaryFile(Array("client: {mode: embedded}\n".utf8))
        defer { unlink(path); unsetenv("CHIMAERA_CONF") }
        setenv("CHIMAERA_CONF", path, 1)
        #expect(try RuntimeConfig.load(path: nil).clientMode == .embedded)
    }

    @Test func nilPathWithoutEnvironmentVariableGivesDefaults() throws {
        unsetenv("CHIMAERA_CONF")
        #expect(try RuntimeConfig.load(path: nil) == RuntimeConfig())
        setenv("CHIMAERA_CONF", "", 1)
        defer { unsetenv("CHIMAERA_CONF") }
        #expect(try RuntimeConfig.load(path: nil) == RuntimeConfig())
    }

    @Test func unreadablePathIsAnErrorThatNamesIt() {
        let missing = "/nonexistent/chimaera.yaml"
        let noFile = "cannot read: No such file or directory"
        #expect(throws: ConfigError(file: missing, line: nil, message: noFile)) {
            try RuntimeConfig.load(path: missing)
        }
        let directory = ConfigError(file: "/tmp", line: nil, message: "cannot read: Is a directory")
        #expect(throws: directory) { try RuntimeConfig.load(path: "/tmp") }
        setenv("CHIMAERA_CONF", "/nonexistent/env.yaml", 1)
        defer { unsetenv("CHIMAERA_CONF") }
        let error = #expect(throws: ConfigError.self) { try RuntimeConfig.load(path: nil) }
        #expect(error?.description == "/nonexistent/env.yaml: \(noFile)")
    }

    @Test func endlessFileIsRefusedAfterOneMebibyte() {
        let error = #expect(throws: ConfigError.self) { try RuntimeConfig.load(path: "/dev/zero") }
        #expect(error?.description == "/dev/zero: larger than 1 MiB, not a config file")
    }

    @Test func errorsInALoadedFileNameItsPath() throws {
        let path = try temporaryFile(Array("runtime:\n  queue_depth: 100\n".utf8))
        defer { unlink(path) }
        let error = #expect(throws: ConfigError.self) { try RuntimeConfig.load(path: path) }
        let expected = #"\#(path):2: runtime.queue_depth: expected \#(depthRule), got "100""#
        #expect(error?.description == expected)
    }

    @Test func invalidUTF8IsAnErrorOnItsLine() throws {
        let path = try temporaryFile(Array("runtime:\n  name: a".utf8) + [0xFF] + Array("\n".utf8))
        defer { unlink(path) }
        let error = #expect(throws: ConfigError.self) { try RuntimeConfig.load(path: path) }
        #expect(error?.line == 2)
        #expect(error?.message.hasPrefix("invalid YAML: invalid leading UTF-8 octet") == true)
    }
}
