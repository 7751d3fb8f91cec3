/// The files chi_make_repo and chi_make_mod write once. They hold empty generated regions and
/// the CHI_AUTOGEN_METHODS line; chi_refresh_repo fills them in right after.
enum Templates {
    // MARK: repo

    /// chimaera_repo.yaml: the repo's namespace.
    static func repoYAML(namespace: String) -> String {
        """
        # A Chimaera module repo, made by chi_make_repo. chi_refresh_repo reads the namespace: the
        # modules register as <namespace>_<module>, and other projects find the repo with
        # find_package(\(Naming.upperCamel(snake: namespace)) CONFIG) and link \(namespace)::<module>_client.
        namespace: \(namespace)

        """
    }

    /// The repo's CMakeLists.txt, with the `modules` region chi_refresh_repo fills.
    static func repoCMake(namespace: String) -> String {
        """
        # The "\(namespace)" module repo: every module in it, built against an installed Chimaera.
        #   cmake -S . -B build -DCMAKE_PREFIX_PATH=<chimaera prefix> -DCMAKE_INSTALL_PREFIX=<prefix>
        #   cmake --build build && cmake --install build
        # Other projects then use find_package(\(Naming.upperCamel(snake: namespace)) CONFIG REQUIRED) and link
        # \(namespace)::<module>_client; the runtime finds the modules in <prefix>/lib/chimaera.
        # chi_refresh_repo rewrites the CHI_AUTOGEN_BEGIN(modules) region; the rest is yours.
        cmake_minimum_required(VERSION 3.16)
        project(\(namespace) VERSION 0.1.0 LANGUAGES C)

        find_package(Chimaera CONFIG REQUIRED)
        chimaera_repo(\(namespace))

        # CHI_AUTOGEN_BEGIN(modules)
        # CHI_AUTOGEN_END(modules)

        chimaera_install_repo()

        """
    }

    // MARK: module, any language

    /// chimaera_mod.yaml: the module's name, language and version.
    static func modYAML(_ ctx: ModuleContext) -> String {
        """
        # The \(ctx.name) module, made by chi_make_mod. Its methods are declared in
        # \(ctx.methodsYAML); run chi_refresh_repo on the repo after changing either.
        name: \(ctx.name)
        language: \(ctx.language.rawValue)  # c, cpp or swift: what the runtime side is written in
        version: 1     # reported to the runtime; a live upgrade goes from an older version

        """
    }

    /// `<name>_methods.yaml` as a new module starts: the inherited methods and the syntax.
    static func methodsYAML(_ ctx: ModuleContext) -> String {
        """
        # The \(ctx.name) module's methods. After changing them, run chi_refresh_repo on the repo.

        # Inherited methods: fixed ids, or -1 when not implemented. kCreate is required; it may
        # declare params that chi_pool_create hands to every container, as a mapping like the one
        # below: `kCreate: {id: 0, params: {level: in i32}}`.
        kCreate: 0        # builds each container's state
        kDestroy: 1       # frees it
        kNodeFailure: -1  # 2
        kRecover: -1      # 3
        kMigrate: -1      # 4: moves a container to another node
        kUpgrade: -1      # 5: live upgrade from an older version

        # The containers' state, optionally: declared here, the kit defines it and writes the
        # code that kMigrate and kUpgrade need to save and restore it (docs/modules.md):
        #   state:
        #     served: u64     # u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 bool str[N] bytes[N]

        # Custom methods: ids from 10 (6-9 are reserved). Either `kName: id`, or a mapping:
        #   kCompress:
        #     id: 10
        #     style: plain      # a plain function called through libffi (default: classic)
        #     local: true       # its tasks never leave their node (default: false)
        #     doc: Compresses data into out.
        #     params:           # in order, `<in|out|inout> <type> [write] [expose]`, types:
        #       data: in bulk(size)        # u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 bool str[N]
        #       size: in u64               # bytes[N] shm_ptr domain_query bulk(<size param>)
        #       out_size: out u64

        """
    }

    /// `<name>_tasks.h` with an empty `tasks` region.
    static func tasksHeader(_ ctx: ModuleContext) -> String {
        """
        /* The \(ctx.name) module's tasks: its create params and one struct per method, laid out as
         * \(ctx.name)_methods.yaml declares them. Clients and the runtime share these structs in shared
         * memory, so they are plain C: no pointers, only chi_shm_ptr_t.
         *
         * chi_refresh_repo rewrites the CHI_AUTOGEN_BEGIN(tasks) region; what you add outside it stays. */
        #ifndef \(ctx.guardPrefix)_TASKS_H
        #define \(ctx.guardPrefix)_TASKS_H

        #include <stdbool.h>
        #include <stdint.h>

        #include <chimaera/task.h>

        #include "\(ctx.name)_methods.h"

        #ifdef __cplusplus
        extern "C" {
        #endif

        /* CHI_AUTOGEN_BEGIN(tasks) */
        /* CHI_AUTOGEN_END(tasks) */

        #ifdef __cplusplus
        }
        #endif
        #endif

        """
    }

    /// `<name>_client.h` with an empty `client` region.
    static func clientHeader(_ ctx: ModuleContext) -> String {
        """
        /* The \(ctx.name) module's client API: \(ctx.name)_create makes a pool, and each method has
         * \(ctx.name)_<method> (run it and wait) and \(ctx.name)_<method>_new (a filled task to submit
         * yourself). Link \(ctx.namespace)::\(ctx.name)_client (CMake) or use pkg-config \(ctx.moduleName).
         *
         * chi_refresh_repo rewrites the CHI_AUTOGEN_BEGIN(client) region; what you add outside it stays. */
        #ifndef \(ctx.guardPrefix)_CLIENT_H
        #define \(ctx.guardPrefix)_CLIENT_H

        #include <errno.h>
        #include <stddef.h>
        #include <string.h>

        #include <chimaera/chimaera.h>

        #include "\(ctx.name)_tasks.h"

        #ifdef __cplusplus
        extern "C" {
        #endif

        /* CHI_AUTOGEN_BEGIN(client) */
        /* CHI_AUTOGEN_END(client) */

        #ifdef __cplusplus
        }
        #endif

        /* In C++17 or later, also the seed-shaped chi::\(ctx.name)::Client (generated). */
        #if defined(__cplusplus) && __cplusplus >= 201703L && !defined(CHI_NO_CPP_CLIENT)
        #include "\(ctx.name)_cpp_client.h"
        #endif
        #endif

        """
    }

    // MARK: C module

    /// `<name>_runtime.c`: the default lane mapping and monitor, the `decls` region and the anchor.
    static func cRuntime(_ ctx: ModuleContext) -> String {
        """
        /* The \(ctx.name) module's runtime side: each container's state and the methods' code. The
         * runtime loads it as lib\(ctx.moduleName).so.
         *
         * This file is yours. chi_refresh_repo only rewrites the CHI_AUTOGEN_BEGIN(decls) region and
         * adds a CHI_BEGIN(Method) ... CHI_END(Method) region with a skeleton for each new method, above
         * the CHI_AUTOGEN_METHODS line. The hex number on a CHI_BEGIN line is the checksum of the
         * skeleton: while the region still matches it, the tool may update it (new params) or remove
         * it (method removed); once you edit it, it is left alone. The descriptors, the dispatch and
         * the entry point are generated into \(ctx.name)_lib_exec.h, included at the end. */
        #include <errno.h>
        #include <stdbool.h>
        #include <stdint.h>
        #include <stdlib.h>
        #include <string.h>

        #include <chimaera/module.h>

        #include "\(ctx.name)/\(ctx.name)_tasks.h"

        /* CHI_AUTOGEN_BEGIN(decls) */
        /* CHI_AUTOGEN_END(decls) */

        /** Picks the lane a task runs on: an index from chi_lane_by_hash or chi_lane_least_loaded. */
        static int MapTaskToLane(\(ctx.stateType) *state, chi_container_t *c, const chi_task_t *task) {
            (void)state;
            return chi_lane_by_hash(c, 0, task->lane_hash);
        }

        /** The scheduling and aggregation hooks (CHI_MONITOR_*); returns 0 or -errno. For a broadcast
         *  this keeps the first replica's outputs and the first failure; a dynamic query is left to
         *  the runtime, which picks a container by hash. */
        static int Monitor(\(ctx.stateType) *state, uint32_t mode, chi_task_t *task, chi_rctx_t *rctx) {
            (void)state;
            if (mode != CHI_MONITOR_REPLICA_AGG) return 0;
            uint32_t n = chi_rctx_replica_count(rctx);
            for (uint32_t i = 0; i < n; i++) {
                const chi_task_t *r = chi_rctx_replica(rctx, i);
                if (r == NULL) continue;
                if (i == 0 && r->size == task->size)
                    memcpy(CHI_TASK_PARAMS(task), CHI_TASK_PARAMS(r), task->size - sizeof(chi_task_t));
                if (r->rc < 0) return r->rc;
            }
            return 0;
        }

        /* CHI_AUTOGEN_METHODS: chi_refresh_repo adds new methods above this line */

        #include "\(ctx.name)_lib_exec.h"

        """
    }

    /// A C module's CMakeLists.txt.
    static func cModuleCMake(_ ctx: ModuleContext) -> String {
        """
        # The \(ctx.name) module: its runtime library lib\(ctx.moduleName).so (loaded by the runtime) and
        # its client target \(ctx.namespace)::\(ctx.name)_client (the headers in include/, linking
        # chimaera::chimaera). Add sources, libraries (LINK_LIBRARIES) and tests here: chi_refresh_repo
        # never edits this file.
        add_chimaera_module(\(ctx.name)
          SOURCES src/\(ctx.name)_runtime.c)

        """
    }

    // MARK: Swift module

    /// A Swift module's Package.swift: a dynamic product named `<namespace>_<name>`.
    static func swiftPackage(_ ctx: ModuleContext) -> String {
        """
        // swift-tools-version:6.0
        // The \(ctx.name) module in Swift: SwiftPM builds lib\(ctx.moduleName).so, which the runtime loads
        // like a C module. The repo's CMake build runs SwiftPM for it (add_chimaera_swift_module); by hand:
        //   swift build -c release -Xswiftc -static-stdlib -Xcc -I<chimaera>/include -Xlinker -L<chimaera>/lib
        import PackageDescription

        let package = Package(
            name: "\(ctx.name)",
            products: [
                .library(name: "\(ctx.moduleName)", type: .dynamic, targets: ["\(ctx.name)"]),
            ],
            targets: [
                // The C headers: chimaera/module.h and this module's task layouts.
                .systemLibrary(name: "\(ctx.cModule)", path: "Sources/\(ctx.cModule)"),
                .target(name: "\(ctx.name)", dependencies: ["\(ctx.cModule)"], path: "Sources/\(ctx.name)"),
            ]
        )

        """
    }

    /// The module map of the system-library target that imports the C headers.
    static func swiftModuleMap(_ ctx: ModuleContext) -> String {
        """
        module \(ctx.cModule) [system] {
            header "\(ctx.cModule).h"
            link "chimaera"
            export *
        }

        """
    }

    /// The header that module map names: module.h and the task layouts.
    static func swiftShimHeader(_ ctx: ModuleContext) -> String {
        """
        /* What the \(ctx.name) module's Swift code imports as \(ctx.cModule): the module API and the
         * module's task layouts (the same header its C clients include). */
        #include <chimaera/module.h>

        #include "../../\(ctx.tasksHeader)"

        """
    }

    /// `<name>_runtime.swift`: the default lane mapping and monitor, and the anchor.
    static func swiftRuntime(_ ctx: ModuleContext) -> String {
        """
        // The \(ctx.name) module's runtime side, in Swift: each container's state and the methods' code.
        // The task layouts and the client API are the C headers in include/\(ctx.name)/ (module \(ctx.cModule)).
        //
        // This file is yours. chi_refresh_repo only adds a CHI_BEGIN(Method) ... CHI_END(Method) region
        // with a skeleton for each new method, above the CHI_AUTOGEN_METHODS line. The hex number on a
        // CHI_BEGIN line is the skeleton's checksum: while the region still matches it, the tool may
        // update it (new params) or remove it (method removed); once you edit it, it is left alone.
        // The descriptors, the dispatch and chi_module_entry are generated into \(ctx.name)_lib_exec.swift.
        import \(ctx.cModule)
        import Glibc

        /// Picks the lane a task runs on: an index from chi_lane_by_hash or chi_lane_least_loaded.
        func mapTaskToLane(_ state: State, _ c: OpaquePointer, _ task: UnsafePointer<chi_task_t>) -> Int32 {
            chi_lane_by_hash(c, 0, UInt64(task.pointee.lane_hash))
        }

        /// The scheduling and aggregation hooks (CHI_MONITOR_*); returns 0 or -errno. For a broadcast
        /// this keeps the first replica's outputs and the first failure; a dynamic query is left to the
        /// runtime, which picks a container by hash.
        func monitor(_ state: State, _ mode: UInt32, _ task: UnsafeMutablePointer<chi_task_t>, _ rctx: OpaquePointer) -> Int32 {
            guard mode == UInt32(CHI_MONITOR_REPLICA_AGG) else { return 0 }
            let header = MemoryLayout<chi_task_t>.stride
            for i in 0..<chi_rctx_replica_count(rctx) {
                guard let r = chi_rctx_replica(rctx, i) else { continue }
                if i == 0 && r.pointee.size == task.pointee.size {
                    (UnsafeMutableRawPointer(task) + header).copyMemory(
                        from: UnsafeRawPointer(r) + header, byteCount: Int(task.pointee.size) - header)
                }
                if r.pointee.rc < 0 { return r.pointee.rc }
            }
            return 0
        }

        // CHI_AUTOGEN_METHODS: chi_refresh_repo adds new methods above this line

        """
    }

    /// A Swift module's CMakeLists.txt.
    static func swiftModuleCMake(_ ctx: ModuleContext) -> String {
        """
        # The \(ctx.name) module, in Swift: SwiftPM builds its runtime library lib\(ctx.moduleName).so
        # (Package.swift); its client target \(ctx.namespace)::\(ctx.name)_client is the C headers in include/.
        # chi_refresh_repo never edits this file.
        add_chimaera_swift_module(\(ctx.name))

        """
    }
}
