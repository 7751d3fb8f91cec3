import CYAML

/// A node of a parsed YAML document, with just enough structure for configuration files.
///
/// Scalars keep their text as YAML delivers it (unescaped, folded) and are not resolved to
/// numbers or booleans: the reader of each key decides what its text means. Tags are ignored.
/// Mapping entries stay in document order and duplicates are kept, so the caller can report
/// them with both lines. Lines are 1-based.
package enum YAMLNode: Sendable, Equatable {
    /// One `key: value` pair of a mapping; keys are always scalars.
    package struct Entry: Sendable, Equatable {
        /// The key's text.
        package var key: String
        /// The line the key is on.
        package var keyLine: Int
        /// The value; an omitted value is an empty plain scalar on `keyLine`.
        package var value: YAMLNode

        package init(key: String, keyLine: Int, value: YAMLNode) {
            self.key = key
            self.keyLine = keyLine
            self.value = value
        }
    }

    /// A scalar: its text, whether it was plain (not quoted, not a block scalar), and its line.
    case scalar(String, isPlain: Bool, line: Int)
    /// A sequence and the line it starts on.
    case sequence([YAMLNode], line: Int)
    /// A mapping and the line it starts on.
    case mapping([Entry], line: Int)

    /// The line the node starts on.
    package var line: Int {
        switch self {
        case .scalar(_, _, let line), .sequence(_, let line), .mapping(_, let line): line
        }
    }

    /// Whether YAML reads this node as null: a plain scalar that is empty, `~` or `null`.
    package var isNull: Bool {
        guard case .scalar(let text, isPlain: true, _) = self else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(text)
    }

    /// Nesting deeper than this is refused: the builder recurses, and no configuration needs it.
    package static let maxDepth = 64

    /// Parses a YAML stream holding at most one document.
    ///
    /// - Parameters:
    ///   - text: The YAML source.
    ///   - file: The name used in error messages.
    /// - Returns: The document's root, or nil when the stream holds no document (empty, or only
    ///   comments).
    /// - Throws: `ConfigError` with the file, the line and libyaml's problem text for a syntax
    ///   error; also for anchors or aliases, non-scalar keys, a second document, or nesting
    ///   deeper than `maxDepth`.
    package static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLNode? {
        try parse(bytes: Array(text.utf8), file: file)
    }

    /// Parses raw bytes, so that libyaml, not a lenient String decoder, judges their encoding.
    ///
    /// Same contract as `parse(_:file:)`; invalid UTF-8 is an error naming its line.
    package static func parse(bytes: [UInt8], file: String) throws(ConfigError) -> YAMLNode? {
        // yaml_parser_set_input_string rejects a NULL buffer, which an empty array may give.
        if bytes.isEmpty { return nil }
        let result = bytes.withUnsafeBufferPointer { buffer in
            let reader = EventReader(input: buffer, file: file)
            return Result { () throws(ConfigError) in try reader.document() }
        }
        return try result.get()
    }
}

/// A libyaml event reduced to what the builder needs, copied out before the event is freed.
private struct Event {
    enum Kind {
        case streamStart, streamEnd, documentStart, documentEnd
        case scalar(String, isPlain: Bool)
        case sequenceStart, sequenceEnd, mappingStart, mappingEnd
    }

    var kind: Kind
    var line: Int
}

/// Pulls events from a libyaml parser and builds nodes from them by recursive descent.
///
/// Noncopyable because it owns the parser: `deinit` releases it exactly once.
private struct EventReader: ~Copyable {
    // Heap-allocated, not a local: yaml_parser_set_input_string stores the parser's own address
    // in the parser (read_handler_data), so it must not move, and Swift guarantees no stable
    // address for `&local`.
    let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
    let event = UnsafeMutablePointer<yaml_event_t>.allocate(capacity: 1)
    let input: UnsafeBufferPointer<UInt8>
    let file: String
    let initialized: Bool

    /// Prepares to read `input`, which must outlive the reader.
    init(input: UnsafeBufferPointer<UInt8>, file: String) {
        self.input = input
        self.file = file
        initialized = yaml_parser_initialize(parser) != 0
        if initialized { yaml_parser_set_input_string(parser, input.baseAddress, input.count) }
    }

    deinit {
        if initialized { yaml_parser_delete(parser) }
        parser.deallocate()
        event.deallocate()
    }

    /// Reads the whole stream: nil when it has no document, else the one document's root.
    func document() throws(ConfigError) -> YAMLNode? {
        guard initialized else {
            throw ConfigError(file: file, line: nil, message: "out of memory")
        }
        guard case .streamStart = try next().kind else { throw unexpected() }
        let start = try next()
        if case .streamEnd = start.kind { return nil }
        guard case .documentStart = start.kind else { throw unexpected() }
        let root = try node(try next(), depth: 0)
        guard case .documentEnd = try next().kind else { throw unexpected() }
        let end = try next()
        if case .documentStart = end.kind {
            throw ConfigError(
                file: file, line: end.line,
                message: "expected a single YAML document, found a second one")
        }
        guard case .streamEnd = end.kind else { throw unexpected() }
        return root
    }

    /// Builds the node that `first` opens, reading on to its end.
    private func node(_ first: Event, depth: Int) throws(ConfigError) -> YAMLNode {
        guard depth < YAMLNode.maxDepth else {
            throw ConfigError(
                file: file, line: first.line,
                message: "nesting deeper than \(YAMLNode.maxDepth) levels is not supported")
        }
        switch first.kind {
        case .scalar(let text, let isPlain):
            return .scalar(text, isPlain: isPlain, line: first.line)
        case .sequenceStart:
            var items: [YAMLNode] = []
            while true {
                let event = try next()
                if case .sequenceEnd = event.kind { break }
                items.append(try node(event, depth: depth + 1))
            }
            return .sequence(items, line: first.line)
        case .mappingStart:
            var entries: [YAMLNode.Entry] = []
            while true {
                let keyEvent = try next()
                if case .mappingEnd = keyEvent.kind { break }
                guard case .scalar(let key, _) = keyEvent.kind else {
                    throw ConfigError(
                        file: file, line: keyEvent.line,
                        message: "mapping keys must be strings, not lists or mappings")
                }
                var value = try node(try next(), depth: depth + 1)
                // A value omitted without a ':' (`? key`, or `{key` then a newline) is marked
                // by libyaml at the next token, which may be lines on; report the key's line.
                if case .scalar("", isPlain: true, _) = value {
                    value = .scalar("", isPlain: true, line: keyEvent.line)
                }
                entries.append(.init(key: key, keyLine: keyEvent.line, value: value))
            }
            return .mapping(entries, line: first.line)
        default:
            throw unexpected()
        }
    }

    /// Parses the next event and copies out what the builder needs.
    private func next() throws(ConfigError) -> Event {
        guard yaml_parser_parse(parser, event) != 0 else { throw syntaxError() }
        defer { yaml_event_delete(event) }
        let e = event.pointee
        let line = Int(e.start_mark.line) + 1
        switch e.type {
        case YAML_STREAM_START_EVENT: return Event(kind: .streamStart, line: line)
        case YAML_STREAM_END_EVENT: return Event(kind: .streamEnd, line: line)
        case YAML_DOCUMENT_START_EVENT: return Event(kind: .documentStart, line: line)
        case YAML_DOCUMENT_END_EVENT: return Event(kind: .documentEnd, line: line)
        case YAML_SEQUENCE_END_EVENT: return Event(kind: .sequenceEnd, line: line)
        case YAML_MAPPING_END_EVENT: return Event(kind: .mappingEnd, line: line)
        case YAML_ALIAS_EVENT: throw anchorError(line)
        case YAML_SEQUENCE_START_EVENT:
            if e.data.sequence_start.anchor != nil { throw anchorError(line) }
            return Event(kind: .sequenceStart, line: line)
        case YAML_MAPPING_START_EVENT:
            if e.data.mapping_start.anchor != nil { throw anchorError(line) }
            return Event(kind: .mappingStart, line: line)
        case YAML_SCALAR_EVENT:
            let scalar = e.data.scalar
            if scalar.anchor != nil { throw anchorError(line) }
            let bytes = UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length))
            let text = String(decoding: bytes, as: UTF8.self)
            return Event(
                kind: .scalar(text, isPlain: scalar.style == YAML_PLAIN_SCALAR_STYLE), line: line)
        default:
            throw unexpected()
        }
    }

    /// The parser's error as a `ConfigError`: libyaml's problem, its context, and the line.
    private func syntaxError() -> ConfigError {
        let p = parser.pointee
        if p.error == YAML_MEMORY_ERROR {
            return ConfigError(file: file, line: nil, message: "out of memory")
        }
        var message = p.problem.map { String(cString: $0) } ?? "unknown error"
        if let context = p.context { message += " (\(String(cString: context)))" }
        let line: Int
        if p.error == YAML_READER_ERROR {
            // The reader reports a byte offset and leaves problem_mark unset.
            let end = min(Int(p.problem_offset), input.count)
            line = 1 + input[..<end].lazy.filter { $0 == UInt8(ascii: "\n") }.count
        } else {
            // At end of input the mark sits after the final newline, on a line the file does
            // not have; point at the last real line instead.
            let newlines = input.lazy.filter { $0 == UInt8(ascii: "\n") }.count
            let lines = newlines + (input.last == UInt8(ascii: "\n") ? 0 : 1)
            line = min(Int(p.problem_mark.line) + 1, max(lines, 1))
        }
        return ConfigError(file: file, line: line, message: "invalid YAML: " + message)
    }

    private func anchorError(_ line: Int) -> ConfigError {
        ConfigError(file: file, line: line, message: "YAML anchors and aliases are not supported")
    }

    /// libyaml only emits well-nested streams, so this marks a broken assumption, not bad input.
    private func unexpected() -> ConfigError {
        ConfigError(file: file, line: nil, message: "internal error: unexpected YAML event")
    }
}
