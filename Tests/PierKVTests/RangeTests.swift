// Range options: single, interval, prefix, from-key, all keys, limit/more/count, count_only, keys_only, sorting, filters, revisions.
import Testing
@testable import PierKV

@Suite struct RangeTests {
    /// a(rev 2) b(3) c(4) d(5) e(6), then b updated (7), c updated twice (8, 9).
    func seeded() async throws -> KVStore {
        let store = try memoryStore()
        for k in ["a", "b", "c", "d", "e"] { try await store.put(k, "v-" + k) }
        try await store.put("b", "z")
        try await store.put("c", "y")
        try await store.put("c", "x")
        return store
    }

    @Test func shapes() async throws {
        let store = try await seeded()
        #expect(try store.keys(RangeRequest(key: b("c"))) == ["c"])
        #expect(try store.keys(RangeRequest(key: b("b"), rangeEnd: b("d"))) == ["b", "c"])
        #expect(try store.keys(RangeRequest(key: b("c"), rangeEnd: [0])) == ["c", "d", "e"])
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0])) == ["a", "b", "c", "d", "e"])
        #expect(try store.keys(RangeRequest(key: b("d"), rangeEnd: b("b"))) == [])
        #expect(try store.keys(RangeRequest(key: b("zz"))) == [])
        #expect(throws: KVError.emptyKey) { try store.range(RangeRequest(key: [])) }
    }

    @Test func prefix() async throws {
        let store = try memoryStore()
        for k in ["foo", "foo/1", "foo/2", "fop", "fo"] { try await store.put(k, "x") }
        // etcd's prefix end: last byte + 1.
        #expect(try store.keys(RangeRequest(key: b("foo/"), rangeEnd: b("foo0"))) == ["foo/1", "foo/2"])
        #expect(try store.keys(RangeRequest(key: b("foo"), rangeEnd: b("fop"))) == ["foo", "foo/1", "foo/2"])
    }

    @Test func limitMoreCount() async throws {
        let store = try await seeded()
        let r = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 2))
        #expect(r.kvs.map { s($0.key) } == ["a", "b"])
        #expect(r.more && r.count == 5)
        let exact = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 5))
        #expect(!exact.more && exact.kvs.count == 5)
        let count = try store.range(RangeRequest(key: [0], rangeEnd: [0], countOnly: true))
        #expect(count.kvs.isEmpty && count.count == 5 && !count.more)
        let keysOnly = try store.range(RangeRequest(key: b("a"), keysOnly: true))
        #expect(keysOnly.kvs.first?.value == [] && keysOnly.kvs.first?.modRevision == 2)
        #expect(r.revision == 9)
    }

    @Test func sorting() async throws {
        let store = try await seeded()
        func sorted(_ order: SortOrder, _ target: SortTarget) throws -> [String] {
            try store.keys(RangeRequest(key: [0], rangeEnd: [0], sortOrder: order, sortTarget: target))
        }
        #expect(try sorted(.descend, .key) == ["e", "d", "c", "b", "a"])
        #expect(try sorted(.ascend, .key) == ["a", "b", "c", "d", "e"])
        #expect(try sorted(.descend, .mod) == ["c", "b", "e", "d", "a"])
        #expect(try sorted(.ascend, .create) == ["a", "b", "c", "d", "e"])
        #expect(try sorted(.descend, .version) == ["c", "b", "a", "d", "e"])
        // etcd quirk: order NONE with a non-KEY target sorts ascending by that target.
        #expect(try sorted(.none, .version) == ["a", "d", "e", "b", "c"])
        #expect(try sorted(.none, .value) == ["a", "d", "e", "c", "b"])
        // keys_only still sorts by the values, then leaves them out.
        let byValue = try store.range(RangeRequest(key: [0], rangeEnd: [0], sortOrder: .descend, sortTarget: .value,
                                                   keysOnly: true))
        #expect(byValue.kvs.map { s($0.key) } == ["b", "c", "e", "d", "a"])
        #expect(byValue.kvs.allSatisfy { $0.value.isEmpty })
        // Sorting happens before the limit is applied.
        let top = try store.range(RangeRequest(key: [0], rangeEnd: [0], limit: 1, sortOrder: .descend, sortTarget: .mod))
        #expect(top.kvs.map { s($0.key) } == ["c"] && top.more && top.count == 5)
    }

    @Test func revisionFilters() async throws {
        let store = try await seeded()
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], minModRevision: 6)) == ["b", "c", "e"])
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], maxModRevision: 5)) == ["a", "d"])
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], minCreateRevision: 4)) == ["c", "d", "e"])
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], maxCreateRevision: 3)) == ["a", "b"])
        // Count is taken before the filters, as etcd does.
        #expect(try store.range(RangeRequest(key: [0], rangeEnd: [0], maxCreateRevision: 3)).count == 5)
    }

    @Test func pastRevisionsAndErrors() async throws {
        let store = try await seeded()
        let old = try store.range(RangeRequest(key: [0], rangeEnd: [0], revision: 4))
        #expect(old.kvs.map { s($0.key) } == ["a", "b", "c"])
        #expect(old.revision == 9)  // the header carries the current revision
        #expect(try store.get("c", revision: 8)!.value == b("y"))
        #expect(throws: KVError.futureRevision) { try store.range(RangeRequest(key: b("a"), revision: 10)) }
        _ = try await store.compact(CompactionRequest(revision: 5))
        #expect(throws: KVError.compacted) { try store.range(RangeRequest(key: b("a"), revision: 4)) }
        // The compacted revision itself is still readable.
        #expect(try store.keys(RangeRequest(key: [0], rangeEnd: [0], revision: 5)) == ["a", "b", "c", "d"])
    }
}
