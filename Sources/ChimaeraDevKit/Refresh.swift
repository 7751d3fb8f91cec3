import ChimaeraYAML
/// chi_refresh_repo: regenerates what each module's `<name>_methods.yaml` determines, in two
/// phases so that an error anywhere changes nothing: first every new file text is computed
/// (and every problem collected), then only files whose text differs are written. Running it
/// twice in a row therefore writes nothing the second time.
package enum Refresh {
    /// What a refresh did or would do.
    package struct Plan {
        /// Files whose text changes, with their new text (paths as the caller spelled the repo).
        package var writes: [(path: String, text: String)] = []
        /// Code left behind for methods no longer declared, as `file:line: warning: ...`.
        package var warnings: [String] = []
        /// The modules found, in directory order.
        package var modules: [String] = []
    }

    /// Computes the refresh of the repo at `repo` without writing anything.
    ///
    /// - Throws: `GenerateErrors` with every problem found (malformed YAML, missing files or
    ///   markers); when it throws, nothing may be written.
    package static func plan(repo: String) throws(GenerateErrors) -> Plan {
        var errors: [GenerateError] = []
        var plan = Plan()
        func attempt<T>(_ body: () throws(GenerateError) -> T) -> T? {
            do throws(GenerateError) { return try body() } catch {
                errors.append(error)
                return nil
            }
        }
        let repoYAML = RepoFiles.join(repo, "chimaera_repo.yaml")
        guard let namespace = attempt({ () throws(GenerateError) in try readRepo(repoYAML) }) else {
            throw GenerateErrors(errors)
        }
        var contexts: [(ModuleContext, String)] = []
        for entry in RepoFiles.list(repo) {
            let dir = RepoFiles.join(repo, entry)
            let modYAML = RepoFiles.join(dir, "chimaera_mod.yaml")
            guard RepoFiles.exists(modYAML) else { continue }
            if let ctx = attempt({ () throws(GenerateError) in try readModule(modYAML, dirName: entry, namespace: namespace) }) {
                contexts.append((ctx, dir))
            }
        }
        for (ctx, dir) in contexts {
            plan.modules.append(ctx.name)
            do throws(GenerateErrors) {
                try planModule(ctx, dir: dir, into: &plan)
            } catch {
                errors += error.all
            }
        }
        let cmake = RepoFiles.join(repo, "CMakeLists.txt")
        _ = attempt { () throws(GenerateError) in
            guard let old = try RepoFiles.read(cmake) else {
                throw GenerateError(file: cmake, line: nil, message: "missing: chi_make_repo writes it; restore it")
            }
            var f = try MarkedFile(old, file: cmake, style: .hash)
            try f.setGenerated("modules", contexts.map { "add_subdirectory(\($0.0.name))" })
            if f.render() != old { plan.writes.append((cmake, f.render())) }
        }
        if !errors.isEmpty { throw GenerateErrors(errors) }
        return plan
    }

    /// Plans and then writes the changed files.
    ///
    /// - Returns: The plan that was carried out.
    /// - Throws: `GenerateErrors`; from planning nothing has been written, from writing the
    ///   files before the failing one have been.
    package static func run(repo: String) throws(GenerateErrors) -> Plan {
        let p = try plan(repo: repo)
        for w in p.writes {
            do throws(GenerateError) { try RepoFiles.write(w.path, w.text) } catch { throw GenerateErrors([error]) }
        }
        return p
    }

    private static func planModule(_ ctx: ModuleContext, dir: String, into plan: inout Plan) throws(GenerateErrors) {
        var errors: [GenerateError] = []
        let path = { (rel: String) in RepoFiles.join(dir, rel) }
        let yamlPath = path(ctx.methodsYAML)
        let text: String?
        do throws(GenerateError) { text = try RepoFiles.read(yamlPath) } catch { throw GenerateErrors([error]) }
        guard let text else {
            throw GenerateErrors([GenerateError(file: yamlPath, line: nil, message: "missing: the module's methods are declared here")])
        }
        let spec = try MethodsFile.parse(text, file: yamlPath)
        if ctx.language == .cpp { try CppRuntime.check(spec, file: yamlPath) }
        /// Computes one file's new text from its old one.
        func update(_ rel: String, whole: Bool = false, _ change: (String) throws(GenerateError) -> String) {
            let p = path(rel)
            do throws(GenerateError) {
                let old = try RepoFiles.read(p)
                guard old != nil || whole else {
                    throw GenerateError(file: p, line: nil, message: "missing: chi_make_mod writes it; restore it (or move the module away and run chi_make_mod again)")
                }
                let new = try change(old ?? "")
                if new != old { plan.writes.append((p, new)) }
            } catch {
                errors.append(error)
            }
        }
        func regions(_ rel: String, _ style: MarkedFile.CommentStyle, _ edit: (inout MarkedFile) throws(GenerateError) -> Void) {
            update(rel) { old throws(GenerateError) in
                var f = try MarkedFile(old, file: path(rel), style: style)
                try edit(&f)
                return f.render()
            }
        }
        if ctx.language == .cpp {
            // The ids and the method table are generated whole; the tasks, client and server
            // files get a region per method (bare CHI_BEGIN/CHI_END macro lines, as the seed
            // writes them). The table's field names are read from the tasks header as this
            // refresh leaves it.
            update(ctx.methodsHeader, whole: true) { _ in CppRuntime.methodsHeader(ctx, spec) }
            var tasksText: String?
            let files: [(String, (ModuleContext, ModuleSpec) -> [(name: String, skeleton: [String])])] = [
                (ctx.tasksHeader, CppRuntime.taskSkeletons), (ctx.clientHeader, CppRuntime.clientSkeletons),
                (ctx.runtimeSource, CppRuntime.serverSkeletons),
            ]
            for (rel, skeletons) in files {
                regions(rel, .macro) { f throws(GenerateError) in
                    let orphans = try f.syncUserRegions(skeletons(ctx, spec))
                    plan.warnings += orphanWarnings(f, orphans, yamlPath)
                    if rel == ctx.tasksHeader { tasksText = f.render() }
                }
            }
            if let tasksText {
                update(ctx.libExec, whole: true) { _ in CppRuntime.libExec(ctx, spec, tasks: tasksText) }
            }
            if !errors.isEmpty { throw GenerateErrors(errors) }
            return
        }
        update(ctx.methodsHeader, whole: true) { _ in CHeaders.methods(ctx, spec) }
        update(ctx.cppClientHeader, whole: true) { _ in CppClient.header(ctx, spec) }
        regions(ctx.tasksHeader, .block) { f throws(GenerateError) in try f.setGenerated("tasks", CHeaders.tasksRegion(ctx, spec)) }
        regions(ctx.clientHeader, .block) { f throws(GenerateError) in try f.setGenerated("client", CHeaders.clientRegion(ctx, spec)) }
        switch ctx.language {
        case .c:
            update(ctx.libExec, whole: true) { _ in CRuntime.libExec(ctx, spec) }
            regions(ctx.runtimeSource, .block) { f throws(GenerateError) in
                try f.setGenerated("decls", CRuntime.declsRegion(ctx, spec))
                let orphans = try f.syncUserRegions(CRuntime.skeletons(ctx, spec))
                plan.warnings += orphanWarnings(f, orphans, yamlPath)
                plan.warnings += oldMigrateWarning(f, spec, hook: "MigrateOut", yamlPath)
            }
        case .cpp:
            break  // planned above
        case .swift:
            update(ctx.libExec, whole: true) { _ in SwiftRuntime.libExec(ctx, spec) }
            regions(ctx.runtimeSource, .slashes) { f throws(GenerateError) in
                let orphans = try f.syncUserRegions(SwiftRuntime.skeletons(ctx, spec))
                plan.warnings += orphanWarnings(f, orphans, yamlPath)
                plan.warnings += oldMigrateWarning(f, spec, hook: "migrateOut", yamlPath)
            }
        }
        if !errors.isEmpty { throw GenerateErrors(errors) }
    }

    /// `file:line: warning: ...` for each region kept for a method no longer declared.
    private static func orphanWarnings(_ f: MarkedFile, _ names: [String], _ yaml: String) -> [String] {
        names.map { name in
            "\(f.file):\(f.renderedLine(ofRegion: name) ?? 0): warning: the CHI_BEGIN(\(name)) region holds code you wrote for \(name), which \(yaml) no longer declares; it was left in place: delete it, or move what you keep out of the markers"
        }
    }

    /// A warning for a CHI_BEGIN(Migrate) region that still holds a Migrate *method*: kMigrate
    /// was an ordinary method at id 4 before it became the migration hook, and the region kept
    /// its name, so the tool would otherwise keep the old code silently (it no longer compiles:
    /// its task struct is gone).
    private static func oldMigrateWarning(_ f: MarkedFile, _ spec: ModuleSpec, hook: String, _ yaml: String) -> [String] {
        guard spec.hasMigrate, let body = f.userRegionBody("Migrate"), !body.contains(where: { $0.contains(hook) }) else { return [] }
        return ["\(f.file):\(f.renderedLine(ofRegion: "Migrate") ?? 0): warning: the CHI_BEGIN(Migrate) region holds a Migrate method, but kMigrate in \(yaml) is now the hook that moves a container to another node: rewrite the region as the \(hook) and \(hook == "MigrateOut" ? "MigrateIn" : "migrateIn") hooks (delete it to get their skeleton), or give the method a custom id"]
    }

    // MARK: metadata files

    /// The namespace from chimaera_repo.yaml.
    static func readRepo(_ path: String) throws(GenerateError) -> String {
        guard let text = try RepoFiles.read(path) else {
            throw GenerateError(file: path, line: nil, message: "not a module repo: no chimaera_repo.yaml (create one with chi_make_repo DIR NAMESPACE)")
        }
        let map = try mapping(text, file: path, keys: ["namespace"])
        guard let (ns, line) = map["namespace"] else {
            throw GenerateError(file: path, line: 1, message: "no namespace: key")
        }
        guard Naming.isSnakeIdentifier(ns) else {
            throw GenerateError(file: path, line: line, message: "bad namespace \"\(ns)\": use a lower_snake_case C identifier of at most 40 characters")
        }
        return ns
    }

    /// The module's context from its chimaera_mod.yaml.
    static func readModule(_ path: String, dirName: String, namespace: String) throws(GenerateError) -> ModuleContext {
        guard let text = try RepoFiles.read(path) else {
            throw GenerateError(file: path, line: nil, message: "missing")
        }
        let map = try mapping(text, file: path, keys: ["name", "language", "version"])
        let (name, nameLine) = map["name"] ?? (dirName, 1)
        guard name == dirName else {
            throw GenerateError(file: path, line: nameLine, message: "the module is named \"\(name)\" but its directory is \"\(dirName)\"; they must match")
        }
        guard Naming.isSnakeIdentifier(name) else {
            throw GenerateError(file: path, line: nameLine, message: "bad module name \"\(name)\": use a lower_snake_case C identifier of at most 40 characters")
        }
        let (langText, langLine) = map["language"] ?? ("c", 1)
        guard let lang = ModuleContext.Language(rawValue: langText) else {
            throw GenerateError(file: path, line: langLine, message: "language must be c, cpp or swift, not \"\(langText)\"")
        }
        let (versionText, versionLine) = map["version"] ?? ("1", 1)
        guard let version = Int(versionText), version >= 0, version <= Int(Int32.max) else {
            throw GenerateError(file: path, line: versionLine, message: "version must be a whole number, not \"\(versionText)\"")
        }
        return ModuleContext(namespace: namespace, name: name, language: lang, version: version)
    }

    /// A flat mapping of scalars, with each value's line; unknown keys are errors.
    private static func mapping(_ text: String, file: String, keys: Set<String>) throws(GenerateError) -> [String: (String, Int)] {
        let root: YAMLNode?
        do throws(ConfigError) { root = try YAMLNode.parse(text, file: file) } catch {
            throw GenerateError(file: file, line: error.line, message: error.message)
        }
        guard let root else { return [:] }
        guard case .mapping(let entries, _) = root else {
            throw GenerateError(file: file, line: root.line, message: "expected a mapping of keys to values")
        }
        var out: [String: (String, Int)] = [:]
        for e in entries {
            guard keys.contains(e.key) else {
                throw GenerateError(file: file, line: e.keyLine, message: "unknown key \(e.key): expected \(keys.sorted().joined(separator: ", "))")
            }
            guard out[e.key] == nil else {
                throw GenerateError(file: file, line: e.keyLine, message: "\(e.key) is given twice")
            }
            guard case .scalar(let v, _, let line) = e.value else {
                throw GenerateError(file: file, line: e.value.line, message: "\(e.key) must be a single value")
            }
            out[e.key] = (v, line)
        }
        return out
    }
}
