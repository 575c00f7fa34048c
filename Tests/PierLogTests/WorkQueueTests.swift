// Work queues: leases, acks, redelivery after the visibility timeout, and dead-lettering.

import Testing
@testable import PierLog

@Suite struct WorkQueueTests {
    @Test func leaseAckRedeliverAndDeadLetter() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let clock = ManualClock()
        let engine = try openEngine(dir, clock: clock)
        defer { engine.shutdown() }
        try engine.createTopic("jobs", partitions: 2, configs: ["queue.max.attempts": "2"])
        _ = try await engine.produceOK("jobs", [rec("a", "job-a"), rec("b", "job-b")], partition: 0)
        _ = try await engine.produceOK("jobs", [rec("c", "job-c")], partition: 1)
        let q = engine.queues

        let got = try await q.receive(topic: "jobs", queue: "workers", maxRecords: 10, visibilityTimeoutMs: 1000)
        #expect(Set(got.map { String(decoding: $0.record.value!, as: UTF8.self) }) == ["job-a", "job-b", "job-c"])
        #expect(got.allSatisfy { $0.attempt == 1 })
        // Leased records are invisible to other receivers.
        #expect(try await q.receive(topic: "jobs", queue: "workers", maxRecords: 10).isEmpty)

        // Ack job-a; nack job-b; let job-c's lease expire.
        let a = got.first { $0.record.value == bytes("job-a") }!
        let b = got.first { $0.record.value == bytes("job-b") }!
        let c = got.first { $0.record.value == bytes("job-c") }!
        let acked = try q.ack(topic: "jobs", queue: "workers", leases: [.init(partition: a.partition, offset: a.offset, leaseId: a.leaseId)])
        #expect(acked.acked == 1 && acked.stale.isEmpty)
        _ = try q.nack(topic: "jobs", queue: "workers", leases: [.init(partition: b.partition, offset: b.offset, leaseId: b.leaseId)])
        clock.advance(1001)
        engine.tick()
        // A late ack of the expired lease is stale.
        let late = try q.ack(topic: "jobs", queue: "workers", leases: [.init(partition: c.partition, offset: c.offset, leaseId: c.leaseId)])
        #expect(late.acked == 0 && late.stale.count == 1)

        let again = try await q.receive(topic: "jobs", queue: "workers", maxRecords: 10, visibilityTimeoutMs: 1000)
        #expect(Set(again.map { String(decoding: $0.record.value!, as: UTF8.self) }) == ["job-b", "job-c"])
        #expect(again.allSatisfy { $0.attempt == 2 })

        // Second attempt used up: the next expiry sends both to the dead-letter topic.
        clock.advance(1001)
        engine.tick()
        var dead: [StoredRecord] = []
        for _ in 0..<200 where dead.count < 2 {
            try await Task.sleep(for: .milliseconds(10))
            dead = (try? engine.readAll("jobs.dlq")) ?? []
        }
        #expect(Set(dead.map { String(decoding: $0.record.value!, as: UTF8.self) }) == ["job-b", "job-c"])
        #expect(dead.allSatisfy { $0.record.headers.contains(RecordHeader(key: bytes("pier.dlq.attempts"), value: bytes("2"))) })
        for _ in 0..<200 where q.pendingCount(topic: "jobs", queue: "workers") > 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(q.pendingCount(topic: "jobs", queue: "workers") == 0)
        #expect(try await q.receive(topic: "jobs", queue: "workers", maxRecords: 10).isEmpty)
    }

    @Test func receiveWaitsForNewRecordsAndFloorSurvivesRestart() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("jobs", partitions: 1)
            async let waited = engine.queues.receive(topic: "jobs", queue: "w", maxRecords: 5, maxWaitMs: 10_000)
            try await Task.sleep(for: .milliseconds(50))
            _ = try await engine.produceOK("jobs", [rec("k", "1"), rec("k", "2")])
            let got = try await waited
            #expect(got.map(\.offset) == [0, 1])
            _ = try engine.queues.ack(topic: "jobs", queue: "w", leases: got.prefix(1).map { .init(partition: 0, offset: $0.offset, leaseId: $0.leaseId) })
            try await Task.sleep(for: .milliseconds(50))
            engine.shutdown()
        }
        // Offset 0 was acked; offset 1 was not, so it comes again after the restart.
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        let got = try await engine.queues.receive(topic: "jobs", queue: "w", maxRecords: 5)
        #expect(got.map(\.offset) == [1])
    }
}
