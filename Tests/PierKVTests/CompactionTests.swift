// Compaction: errors, what stays readable, tombstones dropped, HashKV determinism.
import Testing
@testable import PierKV

@Suite struct CompactionTests {
    @Test func compactErrorsAndEffects() async throws {
        let store = try memoryStore()
        try await store.put("a", "1")   // 2
        try await store.put("a", "2")   // 3
        try await store.put("b", "1")   // 4
        _ = try await store.deleteRange(DeleteRangeRequest(key: b("b")))  // 5
        try await store.put("a", "3")   // 6

        await #expect(throws: KVError.futureRevision) { try await store.compact(CompactionRequest(revision: 7)) }
        let c = try await store.compact(CompactionRequest(revision: 5))
        #expect(c.revision == 6)
        #expect(store.compactedRevision == 5)
        await #expect(throws: KVError.compacted) { try await store.compact(CompactionRequest(revision: 5)) }
        await #expect(throws: KVError.compacted) { try await store.compact(CompactionRequest(revision: 3)) }

        #expect(throws: KVError.compacted) { try store.range(RangeRequest(key: b("a"), revision: 4)) }
        #expect(try store.get("a", revision: 5)?.value == b("2"))
        #expect(try store.get("a")?.value == b("3"))
        #expect(try store.get("b", revision: 5) == nil)
        // Compaction itself does not make a revision.
        #expect(store.currentRevision == 6)
        // The deleted key is gone from the index and only a's versions from 3 on remain.
        #expect(store.state.index.count == 1)
        #expect(store.state.index.find(b("a"))?.versions.map(\.main) == [3, 6])
        #expect(store.state.history.map(\.main) == [5, 6])
        #expect(throws: KVError.compacted) { try store.hashKV(revision: 4) }
    }

    @Test func hashIsDeterministic() async throws {
        func build() async throws -> KVStore {
            let store = try memoryStore()
            for i in 0..<20 { try await store.put("k\(i % 7)", "v\(i)") }
            _ = try await store.deleteRange(DeleteRangeRequest(key: b("k3")))
            return store
        }
        let one = try await build()
        let two = try await build()
        #expect(try one.hashKV().hash == two.hashKV().hash)
        #expect(try one.hashKV(revision: 10).hash == two.hashKV(revision: 10).hash)
        #expect(try one.hashKV(revision: 10).hash != one.hashKV().hash)
        try await two.put("extra", "x")
        #expect(try one.hashKV().hash != two.hashKV().hash)
        #expect(try one.hashKV().hashRevision == 22)
    }
}
