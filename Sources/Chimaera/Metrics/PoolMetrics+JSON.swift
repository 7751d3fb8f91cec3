/// The pools' per-method figures in `statsJSON` (what `chimaera top` reads).
extension RuntimePool {
    /// Writes `"methods": [{method, completed, errors, sum_ns, buckets}]`: the methods the
    /// module declares, and "other" when a task named an undeclared id. `buckets` are per
    /// bucket, not cumulative, with bounds 2^(8+i) ns and a last unbounded one.
    func writeMethodStats(_ j: inout JSONWriter) {
        j.key("methods"); j.openArray()
        for slot in 0..<metrics.methodSlots {
            let t = metrics.totals(slot: slot)
            let last = slot == metrics.methodSlots - 1
            guard last ? t.completed > 0 : module.method(UInt32(slot)) != nil else { continue }
            j.open()
            j.key("method"); j.string(last ? "other" : module.methodName(UInt32(slot)))
            j.key("completed"); j.int(Int(t.completed))
            j.key("errors"); j.int(Int(t.errors))
            j.key("sum_ns"); j.int(Int(t.sumNs))
            j.key("buckets"); j.openArray()
            for b in t.buckets { j.int(Int(b)) }
            j.closeArray()
            j.close()
        }
        j.closeArray()
    }
}
