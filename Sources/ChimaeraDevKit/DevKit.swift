import Glibc

/// The module developer's commands: chi_make_repo, chi_make_mod and chi_refresh_repo (also
/// `chimaera make-repo`, `make-mod` and `refresh-repo`). Messages go to stderr prefixed with
/// the program's name; the files written go to stdout, one a line.
package enum DevKit {
    /// The commands' lines in `chimaera help`.
    package static let usage = """
          make-repo DIR NAMESPACE       (chi_make_repo) a module repo: chimaera_repo.yaml, CMakeLists.txt
          make-mod DIR/NAME [--lang c|cpp|swift]
                                        (chi_make_mod) a module in the repo DIR from the template
          refresh-repo DIR              (chi_refresh_repo) regenerate ids, descriptors, dispatch and
                                        stubs from each module's <name>_methods.yaml
        """

    /// The command a program name stands for: `chi_make_mod` -> `make-mod`.
    package static func command(forProgram name: String) -> String? {
        switch name {
        case "chi_make_repo": "make-repo"
        case "chi_make_mod": "make-mod"
        case "chi_refresh_repo": "refresh-repo"
        default: nil
        }
    }

    /// The program name a command's messages carry: `make-mod` -> `chi_make_mod`.
    package static func program(for cmd: String) -> String {
        "chi_" + String(cmd.map { $0 == "-" ? "_" : $0 })
    }

    private static func say(_ program: String, _ msg: String) {
        let m = "\(program): \(msg)\n"
        _ = m.withCString { write(2, $0, strlen($0)) }
    }

    private static func report(_ program: String, _ errors: GenerateErrors) {
        for e in errors.all { say(program, e.description) }
    }

    // MARK: chi_make_repo

    /// `chi_make_repo DIR NAMESPACE`: writes chimaera_repo.yaml and CMakeLists.txt.
    package static func makeRepo(dir: String, namespace ns: String, program: String = "chi_make_repo") -> Int32 {
        guard Naming.isSnakeIdentifier(ns) else {
            say(program, "bad namespace \"\(ns)\": use a lower_snake_case C identifier of at most 40 characters (it prefixes module and CMake target names)")
            return 2
        }
        for f in ["chimaera_repo.yaml", "CMakeLists.txt"] where RepoFiles.exists(RepoFiles.join(dir, f)) {
            say(program, "\(RepoFiles.join(dir, f)) already exists; not overwriting it")
            return 1
        }
        do throws(GenerateError) {
            try RepoFiles.makeDirectories(dir)
            try RepoFiles.write(RepoFiles.join(dir, "chimaera_repo.yaml"), Templates.repoYAML(namespace: ns))
            try RepoFiles.write(RepoFiles.join(dir, "CMakeLists.txt"), Templates.repoCMake(namespace: ns))
        } catch {
            say(program, error.description)
            return 1
        }
        print(RepoFiles.join(dir, "chimaera_repo.yaml"))
        print(RepoFiles.join(dir, "CMakeLists.txt"))
        say(program, "made module repo \(dir) (namespace \(ns)); add a module with chi_make_mod \(RepoFiles.join(dir, "NAME"))")
        return 0
    }

    // MARK: chi_make_mod

    /// `chi_make_mod DIR/NAME [--lang c|swift]`: writes the template, then refreshes the repo.
    package static func makeMod(path: String, lang langText: String = "c", program: String = "chi_make_mod") -> Int32 {
        guard let lang = ModuleContext.Language(rawValue: langText) else {
            say(program, "--lang must be c, cpp or swift, not \"\(langText)\"")
            return 2
        }
        let name = RepoFiles.baseName(path)
        var repo = RepoFiles.parent(path)
        if repo.isEmpty { repo = "." }
        guard Naming.isSnakeIdentifier(name) else {
            say(program, "bad module name \"\(name)\": use a lower_snake_case C identifier of at most 40 characters")
            return 2
        }
        let ns: String
        do { ns = try Refresh.readRepo(RepoFiles.join(repo, "chimaera_repo.yaml")) } catch {
            say(program, error.description)
            return 1
        }
        let dir = RepoFiles.join(repo, name)
        if RepoFiles.exists(dir) && !RepoFiles.list(dir).isEmpty {
            say(program, "\(dir) already exists and is not empty; not overwriting it")
            return 1
        }
        let ctx = ModuleContext(namespace: ns, name: name, language: lang, version: 1)
        var files: [(String, String)] = [("chimaera_mod.yaml", Templates.modYAML(ctx))]
        if lang == .cpp {
            files += [
                (ctx.methodsYAML, CppTemplates.methodsYAML(ctx)),
                (ctx.tasksHeader, CppTemplates.tasksHeader(ctx)),
                (ctx.clientHeader, CppTemplates.clientHeader(ctx)),
            ]
        } else {
            files += [
                (ctx.methodsYAML, Templates.methodsYAML(ctx)),
                (ctx.tasksHeader, Templates.tasksHeader(ctx)),
                (ctx.clientHeader, Templates.clientHeader(ctx)),
            ]
        }
        switch lang {
        case .c:
            files += [(ctx.runtimeSource, Templates.cRuntime(ctx)), ("CMakeLists.txt", Templates.cModuleCMake(ctx))]
        case .cpp:
            files += [
                (ctx.runtimeSource, CppTemplates.runtime(ctx)),
                (ctx.clientSource, CppTemplates.clientSource(ctx)),
                ("CMakeLists.txt", CppTemplates.moduleCMake(ctx)),
            ]
        case .swift:
            files += [
                ("Package.swift", Templates.swiftPackage(ctx)),
                ("Sources/\(ctx.cModule)/module.modulemap", Templates.swiftModuleMap(ctx)),
                ("Sources/\(ctx.cModule)/\(ctx.cModule).h", Templates.swiftShimHeader(ctx)),
                (ctx.runtimeSource, Templates.swiftRuntime(ctx)),
                ("CMakeLists.txt", Templates.swiftModuleCMake(ctx)),
            ]
        }
        do throws(GenerateError) {
            for (rel, text) in files { try RepoFiles.write(RepoFiles.join(dir, rel), text) }
        } catch {
            say(program, error.description)
            return 1
        }
        for (rel, _) in files { print(RepoFiles.join(dir, rel)) }
        // Fill the generated parts now, so the new module builds as it is.
        do throws(GenerateErrors) {
            let plan = try Refresh.run(repo: repo)
            for w in plan.writes where !files.contains(where: { RepoFiles.join(dir, $0.0) == w.path }) { print(w.path) }
            for w in plan.warnings { say(program, w) }
        } catch {
            report(program, error)
            say(program, "made \(dir), but could not refresh the repo; fix the problems above and run chi_refresh_repo \(repo)")
            return 1
        }
        say(program, "made \(lang.title) module \(name) (registered as \(ctx.moduleName)); declare its methods in \(RepoFiles.join(dir, ctx.methodsYAML)), then run chi_refresh_repo \(repo)")
        return 0
    }

    // MARK: chi_refresh_repo

    /// `chi_refresh_repo DIR`: regenerates; prints the files written, warnings to stderr.
    package static func refreshRepo(repo: String, program: String = "chi_refresh_repo") -> Int32 {
        do throws(GenerateErrors) {
            let plan = try Refresh.run(repo: repo)
            for w in plan.writes { print(w.path) }
            for w in plan.warnings { say(program, w) }
            say(program, plan.writes.isEmpty
                ? "\(repo) is up to date (\(plan.modules.count) module\(plan.modules.count == 1 ? "" : "s"))"
                : "updated \(plan.writes.count) file\(plan.writes.count == 1 ? "" : "s") in \(repo)")
            return 0
        } catch {
            report(program, error)
            say(program, "nothing was changed")
            return 1
        }
    }
}
