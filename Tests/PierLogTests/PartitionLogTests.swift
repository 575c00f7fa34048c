// Segments, indexes, rolling, reads by offset and time, retention, and crash recovery.

import Foundation
import Testing
@testable import PierLog

@Suite struct PartitionLogTests {
    @Test func appendAssignsOffsetsAndReadsBack() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 2)
        let a = try await engine.produceOK("t", [rec("a", "1"), rec("b", "2")])
        let b = try await engine.produceOK("t", [rec("c", "3")])
        #expect(a.baseOffset == 0 && a.lastOffset == 1 && b.baseOffset == 2)
        let all = try engine.readAll("t")
        #expect(all.map(\.offset) == [0, 1, 2])
        #expect(all.map { String(decoding: $0.record.value!, as: UTF8.self) } == ["1", "2", "3"])
        // A read from the middle of a batch starts with that batch; the client skips below.
        let mid = try engine.read(topic: "t", partition: 0, offset: 1)
        #expect(try RecordBatchReader.records(in: Array(mid.records)).first?.offset == 0)
        #expect(mid.nextOffset == 3 && mid.highWatermark == 3)
        // At the end: nothing, not an error. Past it: OUT_OF_RANGE with the valid range.
        #expect(try engine.read(topic: "t", partition: 0, offset: 3).records.isEmpty)
        #expect(throws: LogError.offsetOutOfRange(topic: "t", partition: 0, offset: 9, logStartOffset: 0, logEndOffset: 3)) {
            try engine.read(topic: "t", partition: 0, offset: 9)
        }
        #expect(LogError.offsetOutOfRange(topic: "t", partition: 0, offset: 9, logStartOffset: 0, logEndOffset: 3).code == .outOfRange)
        #expect(throws: LogError.partitionNotFound(topic: "t", partition: 2, partitions: 2)) {
            try engine.read(topic: "t", partition: 2, offset: 0)
        }
    }

    @Test func rollsSegmentsAndUsesTheIndex() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 1, configs: ["segment.bytes": "4096", "index.interval.bytes": "256"])
        let value = [UInt8](repeating: 7, count: 100)
        for i in 0..<200 {
            _ = try await engine.produceOK("t", [Record(key: bytes("k\(i)"), value: value, timestampMs: 10_000 + Int64(i))])
        }
        let info = try engine.describeTopic("t").partitions[0]
        #expect(info.segments > 3)
        #expect(info.logEndOffset == 200)
        // Every offset can be read back directly, whichever segment holds it.
        for o in stride(from: Int64(0), to: 200, by: 17) {
            let r = try engine.read(topic: "t", partition: 0, offset: o, maxBytes: 1)
            let recs = try RecordBatchReader.records(in: Array(r.records), fromOffset: o)
            #expect(recs.first?.offset == o)
            #expect(recs.first?.record.key == bytes("k\(o)"))
        }
        // Time index: first record at or after a timestamp.
        let byTime = try engine.listOffsets(topic: "t", spec: .timestamp(10_123))
        #expect(byTime[0].offset == 123 && byTime[0].timestampMs == 10_123)
        #expect(try engine.listOffsets(topic: "t", spec: .timestamp(99_999))[0].offset == 200)
        #expect(try engine.listOffsets(topic: "t", spec: .timestamp(0))[0].offset == 0)
        #expect(try engine.resolve(.timestamp(10_050), topic: "t", partition: 0) == 50)
        // Sealed segments have index files, so a restart need not scan them.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/data/t-0")
        #expect(files.contains(Segment.name(0, "index")))
        #expect(files.contains(Segment.name(0, "timeindex")))
    }

    @Test func retentionBySizeAndTime() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let clock = ManualClock()
        let engine = try openEngine(dir, clock: clock)
        defer { engine.shutdown() }
        try engine.createTopic("sized", partitions: 1, configs: ["segment.bytes": "2048", "retention.bytes": "4096"])
        try engine.createTopic("timed", partitions: 1, configs: ["retention.ms": "60000"])
        let value = [UInt8](repeating: 1, count: 200)
        for _ in 0..<100 { _ = try await engine.produceOK("sized", [Record(value: value)]) }
        for _ in 0..<3 {
            _ = try await engine.produceOK("timed", [Record(value: value)])
            try engine.rollSegments(topic: "timed")
        }
        try engine.runMaintenance()
        let sized = try engine.describeTopic("sized").partitions[0]
        #expect(sized.logStartOffset > 0)
        #expect(sized.sizeBytes < 4096 + 2048)
        #expect(sized.logEndOffset == 100)
        #expect(throws: LogError.self) { try engine.read(topic: "sized", partition: 0, offset: 0) }
        #expect(try engine.readAll("sized").first?.offset == sized.logStartOffset)

        #expect(try engine.describeTopic("timed").partitions[0].logStartOffset == 0)
        clock.advance(61_000)
        try engine.runMaintenance()
        let timed = try engine.describeTopic("timed").partitions[0]
        #expect(timed.logStartOffset == 3)
        #expect(timed.segments == 1)
        #expect(try engine.listOffsets(topic: "timed", spec: .earliest)[0].offset == 3)
    }

    @Test func compactionKeepsLatestPerKeyAndDropsOldTombstones() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let clock = ManualClock()
        let engine = try openEngine(dir, clock: clock)
        defer { engine.shutdown() }
        try engine.createTopic("c", partitions: 1, configs: ["cleanup.policy": "compact", "delete.retention.ms": "1000"])
        _ = try await engine.produceOK("c", [rec("a", "a1"), rec("b", "b1"), rec("c", "c1")])
        _ = try await engine.produceOK("c", [rec("a", "a2"), rec("b", nil)])
        try engine.rollSegments(topic: "c")
        _ = try await engine.produceOK("c", [rec("c", "c2")])
        try engine.rollSegments(topic: "c")
        // Keyless records are refused on compacted topics.
        let keyless = await engine.produce(topic: "c", records: [rec(nil, "x")], partitioning: .explicit(0))
        #expect(throws: LogError.self) { try keyless[0].result.get() }

        try engine.runMaintenance()
        var left = try engine.readAll("c").map { "\($0.offset):\(String(decoding: $0.record.key!, as: UTF8.self))=\($0.record.value.map { String(decoding: $0, as: UTF8.self) } ?? "∅")" }
        #expect(left == ["3:a=a2", "4:b=∅", "5:c=c2"])
        clock.advance(5000)
        try engine.runMaintenance()
        left = try engine.readAll("c").map { "\($0.offset):\(String(decoding: $0.record.key!, as: UTF8.self))" }
        #expect(left == ["3:a", "5:c"])
        // Offsets are unchanged by compaction and new appends continue after them.
        #expect(try await engine.produceOK("c", [rec("a", "a3")]).baseOffset == 6)
    }

    @Test func recoveryTruncatesATornTail() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("t", partitions: 1)
            for i in 0..<10 { _ = try await engine.produceOK("t", [rec("k", "v\(i)")]) }
            engine.shutdown()
        }
        let path = dir + "/data/t-0/" + Segment.name(0, "log")
        let file = try LogFile(path: path, create: false)
        let good = try file.size()
        // A torn write: half a batch at the end.
        var b = RecordBatchBuilder(appendTimeMs: 1)
        b.append(rec("k", "torn"))
        let batch = b.build()
        let frame = Array(batch.storage[batch.frameStart...])
        try file.write(Array(frame.prefix(frame.count / 2)), at: good)
        do {
            let engine = try openEngine(dir)
            #expect(try engine.describeTopic("t").partitions[0].logEndOffset == 10)
            #expect(try file.size() == good)
            #expect(try await engine.produceOK("t", [rec("k", "after")]).baseOffset == 10)
            #expect(try engine.readAll("t").count == 11)
            engine.shutdown()
        }
        // A flipped byte in the last batch: it fails its CRC and is cut off with what follows.
        let size = try file.size()
        var last = try file.read(count: 1, at: size - 1)
        last[0] ^= 0x55
        try file.write(last, at: size - 1)
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        #expect(try engine.describeTopic("t").partitions[0].logEndOffset == 10)
        #expect(try engine.readAll("t").map(\.offset) == Array(0..<10))
    }

    @Test func recoveryRebuildsMissingIndexesAndKeepsOffsets() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("t", partitions: 1, configs: ["segment.bytes": "2048", "index.interval.bytes": "128"])
            for i in 0..<100 { _ = try await engine.produceOK("t", [rec("k\(i)", String(repeating: "x", count: 50), ts: Int64(i + 1))]) }
            engine.shutdown()
        }
        let pdir = dir + "/data/t-0"
        for f in try FileManager.default.contentsOfDirectory(atPath: pdir) where f.hasSuffix("index") {
            try FileManager.default.removeItem(atPath: pdir + "/" + f)
        }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        #expect(try engine.describeTopic("t").partitions[0].logEndOffset == 100)
        #expect(try engine.readAll("t", from: 57).first?.record.key == bytes("k57"))
        #expect(try engine.listOffsets(topic: "t", spec: .timestamp(42))[0].offset == 41)
    }

    @Test func fetchWaitsForDurableRecords() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 1)
        async let fetched = engine.fetch(topic: "t", partition: 0, offset: 0, maxWaitMs: 10_000)
        try await Task.sleep(for: .milliseconds(50))
        _ = try await engine.produceOK("t", [rec("k", "live")])
        let r = try await fetched
        #expect(try RecordBatchReader.records(in: Array(r.records)).map(\.record.value) == [bytes("live")])
        // With nothing arriving, the wait ends empty.
        let empty = try await engine.fetch(topic: "t", partition: 0, offset: 1, maxWaitMs: 20)
        #expect(empty.records.isEmpty && empty.nextOffset == 1)
    }

    @Test func tornSealedSegmentDropsTheUnacknowledgedSegmentsAfterIt() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            try engine.createTopic("t", partitions: 1)
            for i in 0..<5 { _ = try await engine.produceOK("t", [rec("k", "a\(i)")]) }
            try engine.rollSegments(topic: "t")
            for i in 0..<5 { _ = try await engine.produceOK("t", [rec("k", "b\(i)")]) }
            engine.shutdown()
        }
        // As if the machine died during the round that rolled: the first segment's tail and
        // index files never reached the disk, so nothing after it can have been acknowledged.
        let pdir = dir + "/data/t-0"
        for ext in ["index", "timeindex"] { try FileManager.default.removeItem(atPath: pdir + "/" + Segment.name(0, ext)) }
        let first = try LogFile(path: pdir + "/" + Segment.name(0, "log"), create: false)
        try first.truncate(to: try first.size() - 5)
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        let info = try engine.describeTopic("t").partitions[0]
        #expect(info.logEndOffset == 4 && info.segments == 1)
        #expect(!FileManager.default.fileExists(atPath: pdir + "/" + Segment.name(5, "log")))
        #expect(try await engine.produceOK("t", [rec("k", "c")]).baseOffset == 4)
    }

    @Test func fetchHonoursMaxBytesButReturnsAtLeastOneBatch() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 1)
        let big = [UInt8](repeating: 1, count: 10_000)
        for _ in 0..<3 { _ = try await engine.produceOK("t", [Record(value: big)]) }
        let one = try engine.read(topic: "t", partition: 0, offset: 0, maxBytes: 100)
        #expect(one.nextOffset == 1 && one.records.count > 10_000)
        let two = try engine.read(topic: "t", partition: 0, offset: 0, maxBytes: 25_000)
        #expect(two.nextOffset == 2)
        let all = try engine.read(topic: "t", partition: 0, offset: 1, maxBytes: 1 << 20)
        #expect(all.nextOffset == 3 && all.highWatermark == 3)
    }

    @Test func routingByKeyAndRoundRobin() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 3)
        let keyed = await engine.produce(topic: "t", records: [rec("21", "x"), rec("foobar", "y"), rec("21", "z")], partitioning: .byKey)
        let p21 = Murmur2.partition(forKey: bytes("21"), partitions: 3)
        let pFoo = Murmur2.partition(forKey: bytes("foobar"), partitions: 3)
        #expect(Set(keyed.map(\.partition)) == Set([p21, pFoo]))
        #expect(try engine.readAll("t", partition: p21).filter { $0.record.key == bytes("21") }.count == 2)
        var seen = Set<Int32>()
        for _ in 0..<3 {
            let r = await engine.produce(topic: "t", records: [rec(nil, "rr")], partitioning: .roundRobin)
            seen.insert(r[0].partition)
        }
        #expect(seen == [0, 1, 2])
    }
}
