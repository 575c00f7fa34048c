// MVCC revision numbering as etcd does it: one main revision per changing request, versions and create revisions.
import Testing
@testable import PierKV

@Suite struct RevisionTests {
    @Test func freshStoreIsAtRevisionOne() throws {
        let store = try memoryStore()
        #expect(store.currentRevision == 1)
        #expect(try store.range(RangeRequest(key: b("a"))).revision == 1)
        #expect(store.status().compactRevision == 0)
    }

    @Test func putsDeletesAndRecreation() async throws {
        let store = try memoryStore()
        #expect(try await store.put("foo", "1").revision == 2)
        var kv = try store.get("foo")!
        #expect(kv.createRevision == 2 && kv.modRevision == 2 && kv.version == 1 && kv.value == b("1"))

        #expect(try await store.put("foo", "2").revision == 3)
        kv = try store.get("foo")!
        #expect(kv.createRevision == 2 && kv.modRevision == 3 && kv.version == 2)

        // Putting the same value again still bumps the revision (etcd always does).
        #expect(try await store.put("foo", "2").revision == 4)
        #expect(try store.get("foo")!.version == 3)

        let del = try await store.deleteRange(DeleteRangeRequest(key: b("foo")))
        #expect(del.revision == 5 && del.deleted == 1)
        #expect(try store.get("foo") == nil)

        // Deleting nothing does not bump.
        let none = try await store.deleteRange(DeleteRangeRequest(key: b("foo")))
        #expect(none.revision == 5 && none.deleted == 0)
        #expect(store.currentRevision == 5)

        // Re-created: version 1, new create revision.
        #expect(try await store.put("foo", "3").revision == 6)
        kv = try store.get("foo")!
        #expect(kv.createRevision == 6 && kv.modRevision == 6 && kv.version == 1)

        // History is still readable.
        #expect(try store.get("foo", revision: 3)!.value == b("2"))
        #expect(try store.get("foo", revision: 5) == nil)
        #expect(try store.get("foo", revision: 1) == nil)
    }

    @Test func deleteRangeIsOneRevision() async throws {
        let store = try memoryStore()
        for k in ["a", "b", "c", "d"] { try await store.put(k, k) }
        #expect(store.currentRevision == 5)
        let del = try await store.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("c"), prevKV: true))
        #expect(del.deleted == 2 && del.revision == 6)
        #expect(del.prevKVs.map { s($0.key) } == ["a", "b"])
        #expect(del.prevKVs[0].modRevision == 2)
        #expect(try store.all().map { s($0.key) } == ["c", "d"])
    }

    @Test func txnRevisions() async throws {
        let store = try memoryStore()
        // A txn with no writes does not bump.
        let readOnly = try await store.txn(TxnRequest(success: [.range(RangeRequest(key: b("x")))]))
        #expect(readOnly.revision == 1 && readOnly.succeeded)

        // Several writes: one main revision, sub-revisions in order.
        let t = try await store.txn(TxnRequest(success: [
            .put(PutRequest(key: b("k1"), value: b("v1"))),
            .put(PutRequest(key: b("k2"), value: b("v2"))),
            .range(RangeRequest(key: b("k1"))),
        ]))
        #expect(t.revision == 2)
        #expect(store.currentRevision == 2)
        #expect(try store.get("k1")!.modRevision == 2 && store.get("k2")!.modRevision == 2)
        // The range inside the txn saw the txn's own put.
        guard case .range(let r) = t.responses[2] else { Issue.record("expected a range response"); return }
        #expect(r.kvs.first?.value == b("v1"))

        // A txn whose taken branch writes nothing (delete of a missing key) does not bump.
        let t2 = try await store.txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: b("missing")))]))
        #expect(t2.revision == 2 && store.currentRevision == 2)
    }

    @Test func putPrevKVAndLeaseErrors() async throws {
        let store = try memoryStore()
        let first = try await store.put(PutRequest(key: b("a"), value: b("1"), prevKV: true))
        #expect(first.prevKV == nil)
        let second = try await store.put(PutRequest(key: b("a"), value: b("2"), prevKV: true))
        #expect(second.prevKV?.value == b("1"))

        await #expect(throws: KVError.leaseNotFound) {
            try await store.put(PutRequest(key: b("a"), value: b("x"), lease: 12345))
        }
        await #expect(throws: KVError.emptyKey) { try await store.put(PutRequest(key: [], value: b("x"))) }
        await #expect(throws: KVError.valueProvided) {
            try await store.put(PutRequest(key: b("a"), value: b("x"), ignoreValue: true))
        }
        await #expect(throws: KVError.leaseProvided) {
            try await store.put(PutRequest(key: b("a"), lease: 5, ignoreLease: true))
        }
        await #expect(throws: KVError.keyNotFound) {
            try await store.put(PutRequest(key: b("nope"), ignoreValue: true))
        }
        // Failed requests made no revision.
        #expect(store.currentRevision == 3)

        let grant = try await store.leaseGrant(LeaseGrantRequest(ttl: 60, id: 7))
        try await store.put("a", "3", lease: grant.id)
        // ignore_value keeps the value; the lease is the request's (0 here), as in etcd.
        let kept = try await store.put(PutRequest(key: b("a"), ignoreValue: true))
        #expect(kept.revision == 5)
        #expect(try store.get("a")!.value == b("3") && store.get("a")!.lease == 0)
        // ignore_lease keeps the lease.
        try await store.put("a", "3", lease: grant.id)
        _ = try await store.put(PutRequest(key: b("a"), value: b("4"), ignoreLease: true))
        #expect(try store.get("a")!.lease == 7 && store.get("a")!.value == b("4"))
        #expect(try store.leaseTimeToLive(id: 7, keys: true).keys == [b("a")])
    }

    @Test func errorTextsAndCodes() {
        #expect(KVError.compacted.message == "etcdserver: mvcc: required revision has been compacted")
        #expect(KVError.futureRevision.message == "etcdserver: mvcc: required revision is a future revision")
        #expect(KVError.emptyKey.message == "etcdserver: key is not provided")
        #expect(KVError.leaseNotFound.code == .notFound)
        #expect(KVError.leaseExists.code == .failedPrecondition)
        #expect(KVError.noSpace.code == .resourceExhausted)
        #expect(KVError.compacted.code == .outOfRange)
        #expect(KVError.duplicateKey.code == .invalidArgument)
    }
}
