// Produce and consume throughput figures; runs only with PIER_LOG_BENCH=1 and asserts nothing about time.

import Foundation
import Synchronization
import Testing
@testable import PierLog

@Suite struct ThroughputBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["PIER_LOG_BENCH"] == "1"

    @Test(.enabled(if: ThroughputBenchmark.enabled))
    func produceAndConsume() async throws {
        let env = ProcessInfo.processInfo.environment
        let total = Int(env["PIER_LOG_BENCH_RECORDS"] ?? "") ?? 3_000_000
        let perBatch = Int(env["PIER_LOG_BENCH_BATCH"] ?? "") ?? 1000
        let partitions = Int32(env["PIER_LOG_BENCH_PARTITIONS"] ?? "") ?? 4
        let inFlight = Int(env["PIER_LOG_BENCH_INFLIGHT"] ?? "") ?? 64
        let dir = makeTempDir("pierlog-bench")
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("bench", partitions: partitions)
        let value = [UInt8](repeating: 0x61, count: 100)
        let batches = total / perBatch

        // Encode first (in the server this happens on the event loops, in parallel), so the
        // append figure is the engine's own: writer thread, pwrite, fdatasync, completions.
        let encodeStart = Date()
        var encoded: [EncodedBatch] = []
        encoded.reserveCapacity(batches)
        for i in 0..<batches {
            var b = engine.makeBatchBuilder(capacity: perBatch * 120)
            var key = [UInt8](repeating: 0, count: 8)
            value.withUnsafeBytes { v in
                for j in 0..<perBatch {
                    key.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(i * perBatch + j), as: UInt64.self) }
                    key.withUnsafeBytes { k in b.append(key: k, value: v) }
                }
            }
            encoded.append(b.build())
        }
        let encodeSecs = Date().timeIntervalSince(encodeStart)

        // Append: a window of batches in flight; each completes after its group commit's fsync.
        let window = DispatchSemaphore(value: inFlight)
        let done = DispatchSemaphore(value: 0)
        let remaining = Atomic<Int>(batches)
        let failures = Atomic<Int>(0)
        let start = Date()
        for (i, batch) in encoded.enumerated() {
            window.wait()
            engine.append(topic: "bench", partition: Int32(i) % partitions, batch: batch) { r in
                if case .failure = r { failures.add(1, ordering: .relaxed) }
                window.signal()
                if remaining.subtract(1, ordering: .relaxed).newValue == 0 { done.signal() }
            }
        }
        done.wait()
        let produceSecs = Date().timeIntervalSince(start)
        encoded = []
        #expect(failures.load(ordering: .relaxed) == 0)

        // Consume: fetch stored frames and walk every record in place.
        let cstart = Date()
        var count = 0
        var bytesRead = 0
        for p in 0..<partitions {
            var next: Int64 = 0
            while true {
                let r = try engine.read(topic: "bench", partition: p, offset: next, maxBytes: 1 << 20)
                if r.records.isEmpty { break }
                bytesRead += r.records.count
                try r.records.withUnsafeBytes { buf in
                    try RecordBatchReader.forEachRecord(in: buf) { rv in
                        if rv.offset >= next && rv.value != nil { count += 1 }
                    }
                }
                next = r.nextOffset
            }
        }
        let consumeSecs = Date().timeIntervalSince(cstart)
        #expect(count == batches * perBatch)
        let produced = Double(batches * perBatch)
        print(String(format: "PIERLOG BENCH encode: %.0f records/s on one thread", produced / encodeSecs))
        print(String(format: "PIERLOG BENCH produce: %d records (100 B values, %d/batch, %d partitions, %d in flight) in %.2f s = %.0f records/s, %.1f MB/s",
                     batches * perBatch, perBatch, partitions, inFlight, produceSecs, produced / produceSecs,
                     Double(bytesRead) / produceSecs / 1e6))
        print(String(format: "PIERLOG BENCH consume: %d records in %.2f s = %.0f records/s, %.1f MB/s",
                     count, consumeSecs, Double(count) / consumeSecs, Double(bytesRead) / consumeSecs / 1e6))
    }
}
