import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera migrate --pool NAME --container N --to NODE`: moves one container to another node.
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a container of a pool to another node, while tasks keep coming.",
        discussion: """
            The container is plugged on its node (new tasks wait), drained, its state streamed to
            NODE and built there; then every node routes to the new place. Its id never changes.
            The module needs migrate_out/migrate_in hooks.
            """)

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "The pool's name.") var pool: String
    @Option(help: "The container's id in the pool.") var container: UInt32
    @Option(help: "The node to move it to.") var to: UInt32

    func run() throws {
        guard let r = Tool.resolve(runtime) else { throw ExitCode(2) }
        do throws(ToolError) {
            let c = try Client(segment: r.segment)
            var id: UInt64 = 0
            try check { chi_pool_get_id(c.handle, pool, &id) }
            try check { chi_container_migrate(c.handle, id, container, to) }
            print("chimaera: container \(container) of pool \(pool) is on node \(to)")
        } catch {
            Tool.fail("migrate: \(error.message)")
            throw ExitCode(1)
        }
    }
}
