// Readers, writers, a slow watcher and snapshots all at once: nothing is lost, nothing is seen out of order.
import Foundation
import Testing
@testable import PierKV

@Suite struct ConcurrencyTests {
    @Test func mixedLoad() async throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let store = try KVStore(options: KVOptions(dataDirectory: dir, snapshotCount: 200, watcherBufferLimit: 16))
        let watcher = try store.watch(WatchRequest(key: b("m/"), rangeEnd: b("m0"), prevKV: true)) {}
        let writes = 600

        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    for i in 0..<(writes / 4) {
                        if i % 10 == 9 {
                            _ = try await store.deleteRange(DeleteRangeRequest(key: b("m/\(w)/\(i - 1)")))
                        } else {
                            try await store.put("m/\(w)/\(i)", "v\(i)")
                        }
                    }
                }
            }
            group.addTask {
                for _ in 0..<200 {
                    let r = try store.range(RangeRequest(key: b("m/"), rangeEnd: b("m0"), limit: 5))
                    #expect(r.kvs.count <= 5)
                    _ = store.status()
                }
            }
            group.addTask {
                for _ in 0..<3 { _ = try store.snapshot() }
            }
            try await group.waitForAll()
        }

        let events = drainAll(watcher, max: 5).events
        #expect(events.count == writes)
        let revisions = events.map(\.kv.modRevision)
        #expect(revisions == revisions.sorted())
        #expect(Set(revisions).count == writes)  // one revision per write, none missing or repeated
        #expect(events.filter { $0.kind == .delete }.allSatisfy { $0.prevKV != nil })
        let expected = try fingerprint(store)
        store.close()

        let reopened = try KVStore(options: KVOptions(dataDirectory: dir))
        #expect(try fingerprint(reopened) == expected)
        reopened.close()
    }

    func fingerprint(_ store: KVStore) throws -> [String] {
        ["rev=\(store.currentRevision)", "hash=\(try store.hashKV().hash)",
         "keys=" + (try store.all()).map { "\(s($0.key))=\(s($0.value))@\($0.modRevision)" }.joined(separator: ",")]
    }
}
