// Checksums, key hashing and the stored batch format.

import PierStorage
import Testing
@testable import PierLog

@Suite struct EncodingTests {
    @Test func crc32cKnownVectors() {
        #expect(CRC32C.checksum(bytes("123456789")) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([]) == 0)
    }

    /// Vectors from Kafka's UtilsTest.testMurmur2.
    @Test func murmur2MatchesKafka() {
        #expect(Murmur2.hash(bytes("21")) == -973_932_308)
        #expect(Murmur2.hash(bytes("foobar")) == -790_332_482)
        #expect(Murmur2.hash(bytes("a-little-bit-long-string")) == -985_981_536)
        #expect(Murmur2.hash(bytes("a-little-bit-longer-string")) == -1_486_304_829)
        #expect(Murmur2.hash(bytes("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")) == -58_897_971)
        #expect(Murmur2.hash(bytes("abc")) == 479_470_107)
    }

    @Test func keyPartitioningIsKafkasDefault() {
        // toPositive(-973932308) = 1173551340; % 4 = 0, % 7 = 1173551340 % 7.
        #expect(Murmur2.partition(forKey: bytes("21"), partitions: 4) == Int32((-973_932_308 & 0x7FFF_FFFF) % 4))
        #expect(Murmur2.partition(forKey: bytes("foobar"), partitions: 7) == Int32((-790_332_482 & 0x7FFF_FFFF) % 7))
    }

    @Test func batchRoundTrip() throws {
        var b = RecordBatchBuilder(appendTimeMs: 1000)
        b.append(rec("k1", "v1", ts: 5))
        b.append(Record(key: nil, value: bytes("no key"), headers: [RecordHeader(key: bytes("h"), value: bytes("x"))]))
        b.append(rec("k2", nil, ts: 7))
        b.append(rec("k3", "", ts: 9))
        var batch = b.build(producerId: 42, baseSequence: 3)
        batch.setBaseOffset(100)
        let frame = Array(batch.storage[batch.frameStart...])
        let h = try frame.withUnsafeBytes { try BatchFrame.parseHeader($0, at: 0, verifyCRC: true) }
        #expect(h.baseOffset == 100)
        #expect(h.recordCount == 4)
        #expect(h.lastOffsetDelta == 3)
        #expect(h.producerId == 42)
        #expect(h.baseSequence == 3)
        #expect(h.leaderEpoch == 1)
        #expect(h.firstTimestampMs == 5)
        #expect(h.maxTimestampMs == 1000)
        #expect(h.frameSize == frame.count)
        let recs = try RecordBatchReader.records(in: frame)
        #expect(recs.map(\.offset) == [100, 101, 102, 103])
        #expect(recs[0].record == rec("k1", "v1", ts: 5))
        #expect(recs[1].record.key == nil)
        #expect(recs[1].record.timestampMs == 1000)
        #expect(recs[1].record.headers == [RecordHeader(key: bytes("h"), value: bytes("x"))])
        #expect(recs[2].record.value == nil)
        #expect(recs[3].record.value == [])
    }

    @Test func corruptionIsDetected() throws {
        var b = RecordBatchBuilder(appendTimeMs: 1)
        b.append(rec("k", "value"))
        let batch = b.build()
        var frame = Array(batch.storage[batch.frameStart...])
        frame[frame.count - 2] ^= 0xFF
        #expect(throws: FrameError.self) { try frame.withUnsafeBytes { try BatchFrame.parseHeader($0, at: 0, verifyCRC: true) } }
        let short = Array(frame.prefix(frame.count - 3))
        #expect(throws: FrameError.truncated(needed: frame.count)) {
            try short.withUnsafeBytes { try BatchFrame.parseHeader($0, at: 0, verifyCRC: true) }
        }
    }

    @Test func topicNamesFollowKafka() {
        #expect((try? TopicName.validate("orders.v1_EU-2")) != nil)
        for bad in ["", ".", "..", "a/b", "with space", "é", String(repeating: "x", count: 250)] {
            #expect(throws: LogError.self) { try TopicName.validate(bad) }
        }
        #expect((try? TopicName.validate(String(repeating: "x", count: 249))) != nil)
    }

    @Test func configsAreValidated() throws {
        let c = try TopicConfig(["cleanup.policy": "compact", "retention.ms": "1000"])
        #expect(c.cleanupCompact && !c.cleanupDelete)
        #expect(c.retentionMs == 1000)
        #expect(c.all["segment.bytes"] == "1073741824")
        #expect(throws: LogError.invalidArgument("unknown topic config \"retention.hours\"; known configs: \(TopicConfig.keys.joined(separator: ", "))")) {
            try TopicConfig(["retention.hours": "1"])
        }
        #expect(throws: LogError.self) { try TopicConfig(["retention.ms": "soon"]) }
        #expect(throws: LogError.self) { try TopicConfig(["cleanup.policy": "shred"]) }
        #expect(throws: LogError.self) { try TopicConfig(["segment.bytes": "10"]) }
    }
}
