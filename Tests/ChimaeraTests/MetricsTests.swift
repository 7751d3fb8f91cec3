import Testing

@testable import Chimaera
import ChimaeraYAML

@Suite struct MetricsConfigTests {
    @Test func metricsAreOffUnlessListenIsGiven() throws {
        #expect(!RuntimeConfig().metrics.isEnabled)
        let c = try RuntimeConfig.parse("runtime:\n  metrics:\n    listen: 127.0.0.1:9464\n", file: "c.yaml")
        #expect(c.metrics.host == "127.0.0.1" && c.metrics.port == 9464)
        let v6 = try RuntimeConfig.parse("runtime:\n  metrics:\n    listen: \"[::1]:9000\"\n", file: "c.yaml")
        #expect(v6.metrics.host == "::1" && v6.metrics.port == 9000)
    }

    @Test func badListenAddressesAndUnknownKeysNameTheKey() {
        for text in ["runtime:\n  metrics:\n    listen: nowhere\n",
                     "runtime:\n  metrics:\n    listen: 127.0.0.1:0\n",
                     "runtime:\n  metrics:\n    listen: 127.0.0.1:70000\n",
                     "runtime:\n  metrics:\n    port: 9464\n"] {
            #expect(throws: ConfigError.self) { try RuntimeConfig.parse(text, file: "c.yaml") }
            do {
                _ = try RuntimeConfig.parse(text, file: "c.yaml")
            } catch {
                #expect(error.description.contains("runtime.metrics."))
            }
        }
    }
}

@Suite struct PoolMetricsTests {
    @Test func bucketsArePowersOfTwoFrom256ns() {
        #expect(PoolMetrics.bucket(ns: 0) == 0)
        #expect(PoolMetrics.bucket(ns: 255) == 0)
        #expect(PoolMetrics.bucket(ns: 256) == 1)
        #expect(PoolMetrics.bucket(ns: 511) == 1)
        #expect(PoolMetrics.bucket(ns: 1 << 30) == 23)
        #expect(PoolMetrics.bucket(ns: 1 << 31) == PoolMetrics.finiteBuckets)
        #expect(PoolMetrics.bucket(ns: .max) == PoolMetrics.finiteBuckets)
        // A run lands in the bucket whose upper bound exceeds it.
        for ns: UInt64 in [1, 300, 5000, 1 << 20] {
            #expect(ns < PoolMetrics.upperBoundNs(PoolMetrics.bucket(ns: ns)))
        }
    }

    @Test func recordsSumAcrossWorkersPerMethod() {
        let m = PoolMetrics(methodIds: 11, workers: 3)
        for w in 0..<3 { for _ in 0..<10 { m.record(worker: w, method: 10, rc: 0, ticks: 100) } }
        m.record(worker: 1, method: 10, rc: -5, ticks: 100)
        m.record(worker: 2, method: 999, rc: 0, ticks: 100)
        let t = m.totals(slot: 10)
        #expect(t.completed == 31 && t.errors == 1)
        #expect(t.buckets.reduce(0, +) == 31)
        #expect(m.totals(slot: m.methodSlots - 1).completed == 1)
        #expect(m.totals(slot: 0).completed == 0)
    }
}
