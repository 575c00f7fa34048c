// Idempotent producers: retries are acknowledged with their original offsets, gaps are refused.

import Testing
@testable import PierLog

@Suite struct IdempotenceTests {
    @Test func duplicateIsAckedWithOriginalOffsetAndGapIsRejected() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("t", partitions: 1)
            let pid = try engine.initProducerId()
            let first = try await engine.produceOK("t", [rec("a", "1"), rec("b", "2")], producerId: pid, baseSequence: 0)
            _ = try await engine.produceOK("t", [rec("x", "other producer")])
            let second = try await engine.produceOK("t", [rec("c", "3")], producerId: pid, baseSequence: 2)
            #expect(first.baseOffset == 0 && second.baseOffset == 3)

            // The retry of the first batch: same sequence range, original offset, nothing stored.
            let retry = try await engine.produceOK("t", [rec("a", "1"), rec("b", "2")], producerId: pid, baseSequence: 0)
            #expect(retry.duplicate && retry.baseOffset == 0 && retry.lastOffset == 1)
            #expect(try engine.describeTopic("t").partitions[0].logEndOffset == 4)

            // Sequence 4 skips 3: out of order, FAILED_PRECONDITION.
            let gap = await engine.produce(topic: "t", records: [rec("d", "4")], partitioning: .explicit(0),
                                           producerId: pid, baseSequence: 4)
            #expect(throws: LogError.outOfOrderSequence(producerId: pid, partition: 0, expected: 3, received: 4)) {
                try gap[0].result.get()
            }
            #expect(LogError.outOfOrderSequence(producerId: pid, partition: 0, expected: 3, received: 4).code == .failedPrecondition)
            // Idempotent batches must name their partition.
            let routed = await engine.produce(topic: "t", records: [rec("d", "4")], partitioning: .byKey, producerId: pid, baseSequence: 3)
            #expect(throws: LogError.self) { try routed[0].result.get() }
            engine.shutdown()
        }
        // After a restart the state is rebuilt from the log: the retry is still recognized.
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        let pid2 = try engine.initProducerId()
        #expect(pid2 > 1)
        let retry = try await engine.produceOK("t", [rec("c", "3")], producerId: 1, baseSequence: 2)
        #expect(retry.duplicate && retry.baseOffset == 3)
        #expect(try await engine.produceOK("t", [rec("d", "4")], producerId: 1, baseSequence: 3).baseOffset == 4)
    }

    @Test func producerStateSurvivesRollsViaSnapshots() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("t", partitions: 1)
            _ = try await engine.produceOK("t", [rec("a", "1")], producerId: 7, baseSequence: 0)
            try engine.rollSegments(topic: "t")
            _ = try await engine.produceOK("t", [rec("b", "2")])
            try engine.rollSegments(topic: "t")
            engine.shutdown()
        }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        let retry = try await engine.produceOK("t", [rec("a", "1")], producerId: 7, baseSequence: 0)
        #expect(retry.duplicate && retry.baseOffset == 0)
        let gap = await engine.produce(topic: "t", records: [rec("z", "z")], partitioning: .explicit(0), producerId: 7, baseSequence: 5)
        #expect(throws: LogError.self) { try gap[0].result.get() }
    }

    @Test func groupCommitAcrossManyConcurrentProducers() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 4)
        let results = await withTaskGroup(of: [(partition: Int32, result: Result<AppendResult, LogError>)].self) { group in
            for i in 0..<200 {
                group.addTask { await engine.produce(topic: "t", records: [rec("key\(i)", "v\(i)")], partitioning: .byKey) }
            }
            var all: [(partition: Int32, result: Result<AppendResult, LogError>)] = []
            for await r in group { all += r }
            return all
        }
        #expect(results.count == 200)
        #expect(results.allSatisfy { if case .success = $0.result { return true } else { return false } })
        // Each key is on the partition Kafka's client would choose, and every offset is unique.
        var total: Int64 = 0
        for p in Int32(0)..<4 {
            let recs = try engine.readAll("t", partition: p)
            #expect(Set(recs.map(\.offset)).count == recs.count)
            for r in recs { #expect(Murmur2.partition(forKey: r.record.key!, partitions: 4) == p) }
            total += Int64(recs.count)
        }
        #expect(total == 200)
    }
}
