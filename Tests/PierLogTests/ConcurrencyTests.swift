// Readers racing the writer: followers see every acknowledged record, in order, while segments roll.

import Foundation
import Testing
@testable import PierLog

@Suite struct ConcurrencyTests {
    @Test func followersSeeEveryRecordInOrderWhileSegmentsRoll() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 2, configs: ["segment.bytes": "8192", "index.interval.bytes": "512"])
        let perPartition = 2000

        // Two followers per partition long-poll from offset 0 and check offsets and payloads.
        let followers = (0..<4).map { i in
            Task { () throws -> Int in
                let p = Int32(i % 2)
                var next: Int64 = 0
                var seen = 0
                while seen < perPartition {
                    let r = try await engine.fetch(topic: "t", partition: p, offset: next, maxBytes: 4096, maxWaitMs: 2000)
                    for s in try RecordBatchReader.records(in: Array(r.records), fromOffset: next) {
                        #expect(s.offset == next)
                        #expect(s.record.value == bytes("p\(p)-\(s.offset)"))
                        next = s.offset + 1
                        seen += 1
                    }
                    // Nothing beyond what was acknowledged... at most what is durable.
                    #expect(r.highWatermark >= next)
                }
                return seen
            }
        }
        // Producers: batches of 10, each partition written by its own task, in order.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in Int32(0)..<2 {
                group.addTask {
                    for b in 0..<(perPartition / 10) {
                        let recs = (0..<10).map { rec("k", "p\(p)-\(b * 10 + $0)") }
                        let r = try await engine.produceOK("t", recs, partition: p)
                        #expect(r.baseOffset == Int64(b * 10))
                    }
                }
            }
            try await group.waitForAll()
        }
        for f in followers { #expect(try await f.value == perPartition) }
        #expect(try engine.describeTopic("t").partitions.allSatisfy { $0.segments > 2 })
    }
}
