/// An error in a file the runtime or its tools read (the configuration, a module's methods
/// YAML), in the `file:line: message` form compilers use, so editors can jump to it.
package struct FileLineError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file's path as given (relative paths stay relative).
    package var file: String
    /// The 1-based line at fault; nil when the whole file is (it cannot be read, say).
    package var line: Int?
    /// What is wrong, usually starting with the dotted key or the method.
    package var message: String

    package init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    package var description: String {
        if let line { "\(file):\(line): \(message)" } else { "\(file): \(message)" }
    }
}

/// An error in the runtime's configuration file (or another YAML file it reads).
package typealias ConfigError = FileLineError
