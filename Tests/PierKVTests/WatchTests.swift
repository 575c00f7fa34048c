// Watch hub: live events, filters, prev_kv, history replay, catch-up after overflow, compaction cancel.
import Foundation
import Testing
@testable import PierKV

final class Flag: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var count = 0
    func raise() { lock.lock(); count += 1; lock.unlock() }
    var raised: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// Drains until nothing more is ready.
func drainAll(_ w: Watcher, max: Int = 100) -> (events: [WatchEvent], compactRevision: Int64) {
    var events: [WatchEvent] = []
    while true {
        let batch = w.drain(maxEvents: max)
        events += batch.events
        if batch.compactRevision != 0 { return (events, batch.compactRevision) }
        if !batch.hasMore { return (events, 0) }
    }
}

@Suite struct WatchTests {
    @Test func liveEventsWithFiltersAndPrevKV() async throws {
        let store = try memoryStore()
        let flag = Flag()
        let w = try store.watch(WatchRequest(key: b("k"), prevKV: true)) { flag.raise() }
        let noPut = try store.watch(WatchRequest(key: b("k"), noPut: true)) {}
        let range = try store.watch(WatchRequest(key: b("a"), rangeEnd: b("m"))) {}
        #expect(flag.raised == 0)
        try await store.put("k", "1")
        try await store.put("k", "2")
        try await store.put("z", "outside")
        _ = try await store.deleteRange(DeleteRangeRequest(key: b("k")))
        #expect(flag.raised == 1)  // one wake-up until drained

        let got = drainAll(w).events
        #expect(got.map(\.kind) == [.put, .put, .delete])
        #expect(got.map(\.kv.modRevision) == [2, 3, 5])
        #expect(got[0].prevKV == nil)
        #expect(got[1].prevKV?.value == b("1"))
        #expect(got[2].prevKV?.value == b("2"))
        #expect(got[2].kv == KeyValue(key: b("k"), modRevision: 5))

        #expect(drainAll(noPut).events.map(\.kind) == [.delete])
        #expect(drainAll(range).events.map(\.kv.modRevision) == [2, 3, 5])

        try await store.put("k", "3")
        #expect(flag.raised == 2)
        w.cancel()
        try await store.put("k", "4")
        #expect(flag.raised == 2)
        #expect(w.drain(maxEvents: 10).events.isEmpty)
    }

    @Test func replayFromPastRevision() async throws {
        let store = try memoryStore()
        for i in 1...5 { try await store.put("k\(i)", "v") }  // revs 2...6
        let flag = Flag()
        let w = try store.watch(WatchRequest(key: b("k"), rangeEnd: b("l"), startRevision: 4)) { flag.raise() }
        #expect(flag.raised == 1)
        try await store.put("k6", "v")
        let got = drainAll(w).events
        #expect(got.map(\.kv.modRevision) == [4, 5, 6, 7])
        #expect(w.isSynced)
    }

    @Test func txnEventsShareARevisionAndStayTogether() async throws {
        let store = try memoryStore()
        let w = try store.watch(WatchRequest(key: [0], rangeEnd: [0])) {}
        _ = try await store.txn(TxnRequest(success: (0..<5).map {
            .put(PutRequest(key: b("t\($0)"), value: b("v")))
        }))
        try await store.put("after", "v")
        let first = w.drain(maxEvents: 2)
        // A revision is not split even when it exceeds the requested maximum.
        #expect(first.events.count == 5 && first.events.allSatisfy { $0.kv.modRevision == 2 })
        #expect(first.hasMore)
        #expect(w.drain(maxEvents: 2).events.map(\.kv.modRevision) == [3])
    }

    @Test func slowWatcherCatchesUpFromHistory() async throws {
        let store = try memoryStore { $0.watcherBufferLimit = 8 }
        let flag = Flag()
        let slow = try store.watch(WatchRequest(key: b("key"), rangeEnd: b("kez"), prevKV: true)) { flag.raise() }
        for i in 0..<200 { try await store.put("key\(i % 10)", "v\(i)") }
        // The buffer stayed bounded; the watcher fell back to history.
        #expect(!slow.isSynced)
        let got = drainAll(slow, max: 7).events
        #expect(got.count == 200)
        #expect(got.map(\.kv.modRevision) == Array(2...201))
        #expect(got.map { s($0.kv.value) } == (0..<200).map { "v\($0)" })
        #expect(got[15].prevKV?.value == b("v5"))
        #expect(slow.isSynced)
        try await store.put("key1", "live")
        #expect(drainAll(slow).events.map { s($0.kv.value) } == ["live"])
    }

    @Test func byteBoundAlsoTriggersCatchUp() async throws {
        let store = try memoryStore { $0.watcherBufferBytes = 10_000 }
        let w = try store.watch(WatchRequest(key: b("big"))) {}
        let value = String(repeating: "x", count: 3000)
        for _ in 0..<20 { try await store.put("big", value) }
        #expect(!w.isSynced)
        let got = drainAll(w, max: 3).events
        #expect(got.map(\.kv.modRevision) == Array(2...21))
        #expect(w.isSynced)
    }

    @Test func compactionCancelsWatcherThatNeedsGoneHistory() async throws {
        let store = try memoryStore()
        for i in 0..<10 { try await store.put("k", "\(i)") }  // revs 2...11
        _ = try await store.compact(CompactionRequest(revision: 8))
        let old = try store.watch(WatchRequest(key: b("k"), startRevision: 3)) {}
        let result = drainAll(old)
        #expect(result.events.isEmpty && result.compactRevision == 8)

        // Starting exactly at the compacted revision is allowed.
        let atCompact = try store.watch(WatchRequest(key: b("k"), startRevision: 8)) {}
        #expect(drainAll(atCompact).events.map(\.kv.modRevision) == [8, 9, 10, 11])

        // An unsynced watcher overtaken by compaction is woken and cancelled.
        let store2 = try memoryStore { $0.watcherBufferLimit = 2 }
        let flag = Flag()
        let lagging = try store2.watch(WatchRequest(key: b("k"))) { flag.raise() }
        for i in 0..<10 { try await store2.put("k", "\(i)") }
        _ = try await store2.compact(CompactionRequest(revision: 9))
        #expect(flag.raised >= 1)
        let r2 = drainAll(lagging)
        #expect(r2.compactRevision == 9)
    }

    @Test func futureStartRevision() async throws {
        let store = try memoryStore()
        let w = try store.watch(WatchRequest(key: b("k"), startRevision: 4)) {}
        try await store.put("k", "a")  // 2
        try await store.put("k", "b")  // 3
        try await store.put("k", "c")  // 4
        #expect(drainAll(w).events.map(\.kv.modRevision) == [4])
    }
}
