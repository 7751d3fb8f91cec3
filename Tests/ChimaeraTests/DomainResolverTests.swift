import CChimaera
import Glibc
import Testing

@testable import Chimaera

/// A pool of `n` containers of a do-nothing module; containers alternate between nodes
/// 1 and 2 so the physical-node sub-domain has something to select. Node 1 is local.
func makePool(_ n: Int, tag: String) throws -> (Runtime, RuntimePool) {
    var config = RuntimeConfig()
    config.shmSize = 32 << 20
    config.pinWorkers = false
    let rt = try Runtime(config: config, segmentName: "unit_\(tag)_\(getpid())", anonymous: true)
    var vt = chi_module_vtable_t()
    vt.size = UInt32(MemoryLayout<chi_module_vtable_t>.size)
    vt.abi_major = UInt16(CHI_ABI_MAJOR)
    vt.run = { _, _, _ in 0 }
    let module = try Module(name: "fake", path: "(test)", vtable: vt, handle: nil)
    let pool = RuntimePool(id: 7, name: "p", module: module, workers: 1)
    for i in 0..<n {
        let c = Container(pool: pool, id: UInt32(i), node: UInt32(1 + i % 2), runtime: rt)
        pool.containers.append(c)
        if c.node == 1 { pool.local.append(c) }
    }
    return (rt, pool)
}

@Suite struct DomainResolverTests {
    let global = UInt32(CHI_SUBDOMAIN_GLOBAL_CONTAINERS)
    let localSub = UInt32(CHI_SUBDOMAIN_LOCAL_CONTAINERS)

    func one(_ q: chi_domain_query_t, _ pool: RuntimePool) -> UInt32? {
        if case .one(let c) = DomainResolver.resolve(q, in: pool, node: 1) { return c.o.id }
        return nil
    }

    func many(_ q: chi_domain_query_t, _ pool: RuntimePool) -> ([UInt32], UInt32)? {
        if case .many(let cs, let iter) = DomainResolver.resolve(q, in: pool, node: 1) { return (cs.ids, iter) }
        return nil
    }

    func failure(_ q: chi_domain_query_t, _ pool: RuntimePool) -> CInt? {
        if case .failure(let code) = DomainResolver.resolve(q, in: pool, node: 1) { return code }
        return nil
    }

    @Test func directIdSelectsThatContainer() throws {
        let (_, pool) = try makePool(6, tag: "dq1")
        #expect(one(chi_dq_direct_id(global, 3), pool) == 3)
        #expect(failure(chi_dq_direct_id(global, 6), pool) == CInt(CHI_ENOCONTAINER))
    }

    @Test func directHashWrapsAroundThePool() throws {
        let (_, pool) = try makePool(6, tag: "dq2")
        #expect(one(chi_dq_direct_hash(global, 13), pool) == 1)
        #expect(one(chi_dq_direct_hash(global, 256), pool) == 4)
    }

    @Test func localQueriesSelectOnlyThisNodesContainers() throws {
        let (_, pool) = try makePool(6, tag: "dq3")  // local: 0, 2, 4
        #expect(one(chi_dq_local_id(localSub, 1), pool) == 2)
        #expect(one(chi_dq_local_hash(5), pool) == 4)
        #expect(failure(chi_dq_local_id(localSub, 3), pool) == CInt(CHI_ENOCONTAINER))
        #expect(one(chi_dq_direct_id(localSub, 2), pool) == 4)
    }

    @Test func globalBroadcastSelectsEveryContainer() throws {
        let (_, pool) = try makePool(5, tag: "dq4")
        let r = many(chi_dq_global_bcast(), pool)
        #expect(r?.0 == [0, 1, 2, 3, 4])
        #expect(r?.1 == UInt32(CHI_DQ_BCAST))
    }

    @Test func globalCarriesItsIterationFlag() throws {
        let (_, pool) = try makePool(4, tag: "dq5")
        #expect(many(chi_dq_global(global, UInt32(CHI_DQ_REP_UNTIL_SUCCESS)), pool)?.1 == UInt32(CHI_DQ_REP_UNTIL_SUCCESS))
        #expect(many(chi_dq_global(global, 0), pool)?.1 == UInt32(CHI_DQ_BCAST))
    }

    @Test func rangeSelectsASliceAndZeroCountMeansToTheEnd() throws {
        let (_, pool) = try makePool(6, tag: "dq6")
        let r = many(chi_dq_range(global, 1, 2, UInt32(CHI_DQ_CHOOSE_ONE)), pool)
        #expect(r?.0 == [1, 2])
        #expect(r?.1 == UInt32(CHI_DQ_CHOOSE_ONE))
        #expect(many(chi_dq_range(global, 4, 0, UInt32(CHI_DQ_BCAST)), pool)?.0 == [4, 5])
        #expect(many(chi_dq_range(global, 4, 100, UInt32(CHI_DQ_BCAST)), pool)?.0 == [4, 5])
        #expect(failure(chi_dq_range(global, 6, 1, UInt32(CHI_DQ_BCAST)), pool) == CInt(CHI_ENOCONTAINER))
    }

    @Test func physicalNodeSelectsThatNodesContainers() throws {
        let (_, pool) = try makePool(6, tag: "dq7")
        let r = many(chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_PHYSICAL_NODE), 2), pool)
        #expect(r?.0 == [1, 3, 5])
        #expect(r?.1 == UInt32(CHI_DQ_CHOOSE_ONE))
        #expect(failure(chi_dq_direct_id(UInt32(CHI_SUBDOMAIN_PHYSICAL_NODE), 9), pool) == CInt(CHI_ENOCONTAINER))
    }

    @Test func dynamicAndMalformedQueriesAreRejected() throws {
        let (_, pool) = try makePool(3, tag: "dq8")
        // Dynamic queries are rewritten by the module's kSchedule hook before resolution.
        #expect(failure(chi_dq_dynamic(), pool) == EINVAL)
        #expect(failure(chi_dq_make(UInt32(CHI_DQ_LOCAL | CHI_DQ_GLOBAL | CHI_DQ_ID), global, 0, 1), pool) == EINVAL)
        #expect(failure(chi_dq_make(UInt32(CHI_DQ_DIRECT), global, 0, 1), pool) == EINVAL)
        #expect(failure(chi_dq_make(UInt32(CHI_DQ_DIRECT | CHI_DQ_ID), 99, 0, 1), pool) == EINVAL)
    }

    @Test func emptyPoolHasNoContainerToSelect() throws {
        let (_, pool) = try makePool(0, tag: "dq9")
        #expect(failure(chi_dq_direct_hash(global, 1), pool) == CInt(CHI_ENOCONTAINER))
    }
}
