// Topic administration: create, describe, alter, delete, and metadata that survives a restart.

import Foundation
import Testing
@testable import PierLog

@Suite struct TopicAdminTests {
    @Test func topicLifecycleAndDurableMetadata() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        do {
            let engine = try openEngine(dir)
            let d = try engine.createTopic("orders", partitions: 3, configs: ["retention.ms": "1000"])
            #expect(d.partitions.count == 3 && d.configs["retention.ms"] == "1000" && d.configs["cleanup.policy"] == "delete")
            #expect(throws: LogError.topicAlreadyExists("orders")) { try engine.createTopic("orders", partitions: 1) }
            #expect(throws: LogError.self) { try engine.createTopic("bad name", partitions: 1) }
            #expect(throws: LogError.self) { try engine.createTopic("zero", partitions: 0) }
            #expect(throws: LogError.self) { try engine.createTopic("cfg", partitions: 1, configs: ["retention.ms": "x"]) }
            try engine.createTopic("gone", partitions: 1)
            _ = try await engine.produceOK("gone", [rec("k", "v")])
            try engine.deleteTopic("gone")
            #expect(throws: LogError.topicNotFound("gone")) { try engine.describeTopic("gone") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/data/gone-0"))
            let altered = try engine.alterTopicConfig("orders", set: ["segment.bytes": "65536"], remove: ["retention.ms"])
            #expect(altered.configs["segment.bytes"] == "65536" && altered.configs["retention.ms"] == "604800000")
            _ = try await engine.produceOK("orders", [rec("k", "v")], partition: 2)
            engine.shutdown()
        }
        let engine = try openEngine(dir)
        defer { engine.shutdown() }
        #expect(engine.listTopics().map(\.name) == ["orders"])
        let d = try engine.describeTopic("orders")
        #expect(d.configs["segment.bytes"] == "65536")
        #expect(d.partitions.map(\.logEndOffset) == [0, 0, 1])
        // A recreated topic starts empty.
        try engine.createTopic("gone", partitions: 1)
        #expect(try engine.describeTopic("gone").partitions[0].logEndOffset == 0)
    }

    @Test func segmentMsRollsByWallClock() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let clock = ManualClock()
        let engine = try openEngine(dir, clock: clock)
        defer { engine.shutdown() }
        try engine.createTopic("t", partitions: 1, configs: ["segment.ms": "1000"])
        // Old record timestamps do not make every append roll.
        _ = try await engine.produceOK("t", [rec("k", "1", ts: 5)])
        _ = try await engine.produceOK("t", [rec("k", "2", ts: 5)])
        #expect(try engine.describeTopic("t").partitions[0].segments == 1)
        clock.advance(1500)
        _ = try await engine.produceOK("t", [rec("k", "3")])
        #expect(try engine.describeTopic("t").partitions[0].segments == 2)
        #expect(try engine.readAll("t").count == 3)
    }

    @Test func metadataStoreSurvivesTornTail() throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let path = dir + "/meta.log"
        do {
            let store = try FileLogMetadataStore(path: path)
            try store.putSync(bytes("a"), bytes("1"))
            try store.putSync(bytes("b"), bytes("2"))
            try store.deleteSync(bytes("a"))
        }
        let f = try LogFile(path: path, create: false)
        try f.write([1, 2, 3, 4, 5], at: try f.size())
        let store = try FileLogMetadataStore(path: path)
        #expect(try store.getSync(bytes("a")) == nil)
        #expect(try store.getSync(bytes("b")) == bytes("2"))
        try store.putSync(bytes("c"), bytes("3"))
        #expect(try store.listSync([]).map { $0.key } == [bytes("b"), bytes("c")])
    }
}
