// Durability: WAL replay, snapshot + replay equality, torn tail at restart, restore from snapshot bytes, quota and alarms.
import Foundation
import Testing
@testable import PierKV

@Suite struct DurabilityTests {
    func populate(_ store: KVStore, from: Int = 0, count: Int) async throws {
        for i in from..<(from + count) {
            try await store.put("key\(i % 37)", "value-\(i)")
            if i % 11 == 0 { _ = try await store.deleteRange(DeleteRangeRequest(key: b("key\((i + 5) % 37)"))) }
        }
    }

    func fingerprint(_ store: KVStore) throws -> [String] {
        var out: [String] = ["rev=\(store.currentRevision)", "compacted=\(store.compactedRevision)"]
        let status = store.status()
        out.append("keys=\(status.keyCount) index=\(status.raftIndex) leases=\(status.leaseCount)")
        for rev in stride(from: max(store.compactedRevision, 1), through: store.currentRevision, by: 7) {
            out.append("\(rev): " + (try store.all(revision: rev)).map {
                "\(s($0.key))=\(s($0.value))@\($0.createRevision)/\($0.modRevision)/\($0.version)/\($0.lease)"
            }.joined(separator: ","))
        }
        out.append("hash=\(try store.hashKV().hash)")
        out.append("leaseIDs=\(store.leaseLeases().leases)")
        return out
    }

    @Test func walReplayRestoresState() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        var expected: [String] = []
        do {
            let store = try KVStore(options: KVOptions(dataDirectory: dir))
            _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 100, id: 42))
            try await populate(store, count: 60)
            try await store.put("leased", "x", lease: 42)
            _ = try await store.compact(CompactionRequest(revision: 20))
            expected = try fingerprint(store)
            store.close()
        }
        let reopened = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try fingerprint(reopened) == expected)
        #expect(try reopened.leaseTimeToLive(id: 42, keys: true).keys == [b("leased")])
        // Writes continue from where the log left off.
        let next = try await reopened.put("after", "restart")
        #expect(next.revision == reopened.currentRevision)
        reopened.close()
    }

    @Test func snapshotPlusReplayEqualsReplayOnly() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        var expected: [String] = []
        do {
            let store = try KVStore(options: KVOptions(dataDirectory: dir, snapshotCount: 50, walSegmentBytes: 2048))
            _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 100, id: 7))
            try await populate(store, count: 150)
            try await store.put("leased", "x", lease: 7)
            _ = try await store.compact(CompactionRequest(revision: 30))
            try await populate(store, from: 150, count: 40)
            try store.writeSnapshotFile()
            try await populate(store, from: 190, count: 13)  // a WAL tail after the snapshot
            expected = try fingerprint(store)
            store.close()
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/kv.snap"))
        let walFiles = try FileManager.default.contentsOfDirectory(atPath: dir + "/wal")
        // Segments the snapshot covers were dropped.
        #expect(!walFiles.contains("00000000000000000001.wal"))
        let reopened = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try fingerprint(reopened) == expected)
        #expect(try reopened.leaseTimeToLive(id: 7, keys: true).keys == [b("leased")])
        reopened.close()
    }

    @Test func leasesAreRenewedAtRestart() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let clock = ManualClock()
        do {
            let store = try KVStore(options: KVOptions(dataDirectory: dir, clock: clock.function))
            _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 30, id: 9))
            try await store.put("eph", "1", lease: 9)
            clock.advance(seconds: 25)
            #expect(try store.leaseTimeToLive(id: 9, keys: false).ttl == 5)
            store.close()
        }
        // Restarted much later: the lease gets its full TTL again instead of expiring at once.
        clock.advance(seconds: 3600)
        let reopened = try KVStore(options: KVOptions(dataDirectory: dir, clock: clock.function))
        let ttl = try reopened.leaseTimeToLive(id: 9, keys: true)
        #expect(ttl.ttl == 30 && ttl.grantedTTL == 30 && ttl.keys == [b("eph")])
        #expect(reopened.expiredLeases().isEmpty)
        reopened.close()
    }

    @Test func tornTailIsCutAtRestart() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        var expected: [String] = []
        do {
            let store = try KVStore(options: KVOptions(dataDirectory: dir))
            try await populate(store, count: 20)
            expected = try fingerprint(store)
            store.close()
        }
        let walDir = dir + "/wal"
        let segment = walDir + "/" + (try FileManager.default.contentsOfDirectory(atPath: walDir).sorted().last!)
        let handle = FileHandle(forWritingAtPath: segment)!
        handle.seekToEndOfFile()
        handle.write(Data([0x20, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01, 1, 2, 3]))  // a half-written record
        handle.closeFile()
        let reopened = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try fingerprint(reopened) == expected)
        try await reopened.put("more", "data")
        reopened.close()
        let again = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try again.get("more")?.value == b("data"))
        again.close()
    }

    @Test func restoreFromSnapshotBytes() async throws {
        let source = try memoryStore()
        _ = try await source.leaseGrant(LeaseGrantRequest(ttl: 50, id: 3))
        try await populate(source, count: 80)
        try await source.put("l", "v", lease: 3)
        _ = try await source.compact(CompactionRequest(revision: 40))
        let bytes = try source.snapshot()
        let expected = try fingerprint(source)

        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        try KVStore.restore(snapshot: bytes, into: dir)
        let restored = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try fingerprint(restored) == expected)
        try await restored.put("new", "1")
        restored.close()
        let again = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try again.get("new")?.value == b("1"))
        again.close()

        var damaged = bytes
        damaged[damaged.count / 2] ^= 0xFF
        #expect(throws: KVError.self) { try KVStore.restore(snapshot: damaged, into: dir + "/other") }
        #expect(throws: KVError.self) { try KVStore.restore(snapshot: Array(bytes.prefix(bytes.count - 3)), into: dir + "/other") }
    }

    @Test func groupCommitCompletesConcurrentWriters() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let store = try KVStore(options: KVOptions(dataDirectory: dir))
        let revisions = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<300 {
                group.addTask { try await store.put("c\(i)", "v").revision }
            }
            var all: [Int64] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(revisions.sorted() == Array(2...301))
        store.close()
        let reopened = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(reopened.status().keyCount == 300)
        reopened.close()
    }

    @Test func quotaRaisesNoSpaceAlarm() async throws {
        let store = try memoryStore { $0.quotaBackendBytes = 2000 }
        for i in 0..<5 { try await store.put("k\(i)", String(repeating: "x", count: 100)) }
        await #expect(throws: KVError.noSpace) {
            try await store.put("big", String(repeating: "y", count: 2000))
        }
        #expect(store.alarms() == [AlarmMember(memberID: 1, alarm: .noSpace)])
        // With the alarm raised even a small put fails; deletes and compaction still work.
        await #expect(throws: KVError.noSpace) { try await store.put("small", "1") }
        await #expect(throws: KVError.noSpace) { try await store.leaseGrant(LeaseGrantRequest(ttl: 10)) }
        _ = try await store.deleteRange(DeleteRangeRequest(key: b("k"), rangeEnd: b("l")))
        _ = try await store.compact(CompactionRequest(revision: store.currentRevision))
        let disarmed = try await store.alarm(AlarmRequest(action: .deactivate, memberID: 1, alarm: .noSpace))
        #expect(disarmed.alarms == [AlarmMember(memberID: 1, alarm: .noSpace)])
        #expect(store.alarms().isEmpty)
        try await store.put("small", "1")
    }
}
