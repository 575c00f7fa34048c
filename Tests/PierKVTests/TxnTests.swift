// Txn: compares on every target, branches, nested txns, per-op responses, etcd's duplicate-key and op-count rules.
import Testing
@testable import PierKV

@Suite struct TxnTests {
    @Test func compareTargets() async throws {
        let store = try memoryStore()
        try await store.put("k", "v1")   // rev 2
        try await store.put("k", "v2")   // rev 3, version 2, create 2
        func holds(_ c: Compare) async throws -> Bool {
            try await store.txn(TxnRequest(compare: [c])).succeeded
        }
        #expect(try await holds(Compare(key: b("k"), target: .value(b("v2")), result: .equal)))
        #expect(try await holds(Compare(key: b("k"), target: .value(b("v1")), result: .greater)))
        #expect(try await holds(Compare(key: b("k"), target: .version(2), result: .equal)))
        #expect(try await holds(Compare(key: b("k"), target: .version(3), result: .less)))
        #expect(try await holds(Compare(key: b("k"), target: .create(2), result: .equal)))
        #expect(try await holds(Compare(key: b("k"), target: .mod(2), result: .greater)))
        #expect(try await holds(Compare(key: b("k"), target: .mod(3), result: .notEqual)) == false)
        #expect(try await holds(Compare(key: b("k"), target: .lease(0), result: .equal)))
        // Missing key: compared as the zero KeyValue, except VALUE which always fails.
        #expect(try await holds(Compare(key: b("missing"), target: .version(0), result: .equal)))
        #expect(try await holds(Compare(key: b("missing"), target: .create(0), result: .equal)))
        #expect(try await holds(Compare(key: b("missing"), target: .value([]), result: .equal)) == false)
        #expect(try await holds(Compare(key: b("missing"), target: .value([]), result: .notEqual)) == false)
    }

    @Test func compareOverRange() async throws {
        let store = try memoryStore()
        try await store.put("p/a", "1")
        try await store.put("p/b", "1")
        try await store.put("p/c", "2")
        let allOne = Compare(key: b("p/"), rangeEnd: b("p0"), target: .value(b("1")), result: .equal)
        #expect(try await store.txn(TxnRequest(compare: [allOne])).succeeded == false)
        let twoKeys = Compare(key: b("p/a"), rangeEnd: b("p/c"), target: .value(b("1")), result: .equal)
        #expect(try await store.txn(TxnRequest(compare: [twoKeys])).succeeded)
        let fromKey = Compare(key: b("p/b"), rangeEnd: [0], target: .create(3), result: .greater)
        #expect(try await store.txn(TxnRequest(compare: [fromKey])).succeeded == false)
    }

    @Test func branchesAndResponses() async throws {
        let store = try memoryStore()
        try await store.put("a", "1")
        let casOK = try await store.txn(TxnRequest(
            compare: [Compare(key: b("a"), target: .value(b("1")), result: .equal)],
            success: [.put(PutRequest(key: b("a"), value: b("2"), prevKV: true)),
                      .deleteRange(DeleteRangeRequest(key: b("zz"))),
                      .range(RangeRequest(key: b("a")))],
            failure: [.put(PutRequest(key: b("failed"), value: b("x")))]))
        #expect(casOK.succeeded && casOK.revision == 3 && casOK.responses.count == 3)
        #expect(casOK.responses[0] == .put(PutResponse(revision: 3, prevKV: KeyValue(
            key: b("a"), createRevision: 2, modRevision: 2, version: 1, value: b("1")))))
        #expect(casOK.responses[1] == .deleteRange(DeleteRangeResponse(revision: 3, deleted: 0)))
        guard case .range(let r) = casOK.responses[2] else { Issue.record("range expected"); return }
        #expect(r.kvs.first?.value == b("2") && r.revision == 3)

        let casFail = try await store.txn(TxnRequest(
            compare: [Compare(key: b("a"), target: .value(b("1")), result: .equal)],
            success: [.put(PutRequest(key: b("a"), value: b("3")))],
            failure: [.put(PutRequest(key: b("failed"), value: b("x")))]))
        #expect(!casFail.succeeded && casFail.revision == 4)
        #expect(try store.get("failed")?.value == b("x"))
        #expect(try store.get("a")?.value == b("2"))
    }

    @Test func nestedTxn() async throws {
        let store = try memoryStore()
        try await store.put("x", "1")
        let t = try await store.txn(TxnRequest(
            compare: [Compare(key: b("x"), target: .value(b("1")), result: .equal)],
            success: [
                .put(PutRequest(key: b("outer"), value: b("o"))),
                .txn(TxnRequest(
                    compare: [Compare(key: b("x"), target: .version(5), result: .equal)],
                    success: [.put(PutRequest(key: b("inner-then"), value: b("t")))],
                    failure: [.put(PutRequest(key: b("inner-else"), value: b("e")))])),
            ]))
        #expect(t.succeeded && t.revision == 3)
        guard case .txn(let inner) = t.responses[1] else { Issue.record("nested txn response expected"); return }
        #expect(!inner.succeeded && inner.responses.count == 1)
        #expect(try store.get("inner-else")?.modRevision == 3)
        #expect(try store.get("inner-then") == nil)
        #expect(try store.get("outer")?.modRevision == 3)
    }

    @Test func failedPreconditionsWriteNothing() async throws {
        let store = try memoryStore()
        try await store.put("a", "1")
        await #expect(throws: KVError.leaseNotFound) {
            try await store.txn(TxnRequest(success: [
                .put(PutRequest(key: b("b"), value: b("1"))),
                .put(PutRequest(key: b("c"), value: b("1"), lease: 99)),
            ]))
        }
        await #expect(throws: KVError.keyNotFound) {
            try await store.txn(TxnRequest(success: [.put(PutRequest(key: b("nope"), ignoreValue: true))]))
        }
        await #expect(throws: KVError.futureRevision) {
            try await store.txn(TxnRequest(success: [
                .put(PutRequest(key: b("b"), value: b("1"))), .range(RangeRequest(key: b("a"), revision: 50)),
            ]))
        }
        #expect(store.currentRevision == 2)
        #expect(try store.get("b") == nil)

        // Revision 0 in a txn's range means "current", even after a compaction.
        _ = try await store.compact(CompactionRequest(revision: 2))
        let t = try await store.txn(TxnRequest(success: [
            .put(PutRequest(key: b("b"), value: b("1"))), .range(RangeRequest(key: b("a"))),
        ]))
        guard case .range(let r) = t.responses[1] else { Issue.record("range expected"); return }
        #expect(r.kvs.first?.value == b("1"))
    }

    @Test func duplicateKeys() async throws {
        let store = try memoryStore()
        func rejected(_ t: TxnRequest) async -> Bool {
            do { _ = try await store.txn(t); return false } catch { return error == .duplicateKey }
        }
        let put = { (k: String) in RequestOp.put(PutRequest(key: b(k), value: b("v"))) }
        let del = { (k: String, e: String) in RequestOp.deleteRange(DeleteRangeRequest(key: b(k), rangeEnd: b(e))) }
        #expect(await rejected(TxnRequest(success: [put("a"), put("a")])))
        #expect(await rejected(TxnRequest(success: [put("b"), del("a", "c")])))
        #expect(await rejected(TxnRequest(success: [put("a"), .txn(TxnRequest(success: [put("a")]))])))
        // Different branches, overlapping deletes, and a nested then/else pair are fine.
        #expect(await !rejected(TxnRequest(success: [put("a")], failure: [put("a")])))
        #expect(await !rejected(TxnRequest(success: [del("a", "c"), del("b", "d")])))
        #expect(await !rejected(TxnRequest(success: [.txn(TxnRequest(success: [put("a")], failure: [put("a")]))])))
        #expect(await rejected(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: b("a"))), put("a")])))
    }

    @Test func tooManyOps() async throws {
        let store = try memoryStore { $0.maxTxnOps = 4 }
        let ops = (0..<5).map { RequestOp.put(PutRequest(key: b("k\($0)"), value: b("v"))) }
        await #expect(throws: KVError.tooManyOps) { try await store.txn(TxnRequest(success: ops)) }
        let ok = try await store.txn(TxnRequest(success: Array(ops.prefix(4))))
        #expect(ok.responses.count == 4)
        // Nested ops count against what the parent's widest list leaves.
        let nested = TxnRequest(success: [ops[0], ops[1], .txn(TxnRequest(success: [ops[2], ops[3], ops[4]]))])
        await #expect(throws: KVError.tooManyOps) { try await store.txn(nested) }
        await #expect(throws: KVError.emptyKey) {
            try await store.txn(TxnRequest(compare: [Compare(key: [], target: .version(0), result: .equal)]))
        }
    }
}
