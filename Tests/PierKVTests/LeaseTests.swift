// Leases: grant (min TTL, explicit id, errors), keep-alive, time-to-live, expiry as a command, revoke in one revision.
import Testing
@testable import PierKV

@Suite struct LeaseTests {
    @Test func grantRules() async throws {
        let store = try memoryStore()
        let short = try await store.leaseGrant(LeaseGrantRequest(ttl: 1, id: 10))
        #expect(short.id == 10 && short.ttl == 2)  // raised to the minimum TTL
        let chosen = try await store.leaseGrant(LeaseGrantRequest(ttl: 30))
        #expect(chosen.id > 0 && chosen.ttl == 30)
        await #expect(throws: KVError.leaseExists) { try await store.leaseGrant(LeaseGrantRequest(ttl: 5, id: 10)) }
        await #expect(throws: KVError.leaseTTLTooLarge) {
            try await store.leaseGrant(LeaseGrantRequest(ttl: 9_000_000_001))
        }
        #expect(store.leaseLeases().leases == [10, chosen.id].sorted())
        // Granting makes no revision.
        #expect(store.currentRevision == 1)
    }

    @Test func revokeDeletesKeysInOneRevision() async throws {
        let store = try memoryStore()
        let lease = try await store.leaseGrant(LeaseGrantRequest(ttl: 60, id: 1))
        try await store.put("x", "1", lease: lease.id)
        try await store.put("y", "1", lease: lease.id)
        try await store.put("z", "1", lease: lease.id)
        try await store.put("keep", "1")
        #expect(store.currentRevision == 5)
        let revoked = try await store.leaseRevoke(id: 1)
        #expect(revoked.revision == 6)
        #expect(try store.all().map { s($0.key) } == ["keep"])
        #expect(store.leaseLeases().leases.isEmpty)
        await #expect(throws: KVError.leaseNotFound) { try await store.leaseRevoke(id: 1) }
        #expect(throws: KVError.leaseNotFound) { try store.leaseTimeToLive(id: 1, keys: false) }

        // A lease with no keys: revoking makes no revision.
        _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 60, id: 2))
        #expect(try await store.leaseRevoke(id: 2).revision == 6)
    }

    @Test func keysMoveBetweenLeases() async throws {
        let store = try memoryStore()
        _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 60, id: 1))
        _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 60, id: 2))
        try await store.put("k", "1", lease: 1)
        try await store.put("k", "2", lease: 2)
        #expect(try store.leaseTimeToLive(id: 1, keys: true).keys.isEmpty)
        #expect(try store.leaseTimeToLive(id: 2, keys: true).keys == [b("k")])
        _ = try await store.leaseRevoke(id: 1)
        #expect(try store.get("k")?.value == b("2"))
        _ = try await store.deleteRange(DeleteRangeRequest(key: b("k")))
        #expect(try store.leaseTimeToLive(id: 2, keys: true).keys.isEmpty)
    }

    @Test func expiryKeepAliveAndTimeToLive() async throws {
        let clock = ManualClock()
        let store = try memoryStore { $0.clock = clock.function }
        _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 10, id: 5))
        _ = try await store.leaseGrant(LeaseGrantRequest(ttl: 100, id: 6))
        try await store.put("eph", "1", lease: 5)

        clock.advance(seconds: 3.5)
        let ttl = try store.leaseTimeToLive(id: 5, keys: true)
        #expect(ttl.ttl == 6 && ttl.grantedTTL == 10 && ttl.keys == [b("eph")])
        #expect(store.expiredLeases().isEmpty)

        let renewed = try store.leaseKeepAlive(id: 5)
        #expect(renewed.ttl == 10)
        #expect(try store.leaseTimeToLive(id: 5, keys: false).ttl == 10)

        clock.advance(seconds: 10.5)
        #expect(store.expiredLeases() == [5])
        #expect(throws: KVError.leaseNotFound) { try store.leaseKeepAlive(id: 5) }
        // The engine never expires on its own: the key is there until the revoke command.
        #expect(try store.get("eph") != nil)
        for id in store.expiredLeases() { _ = try await store.leaseRevoke(id: id) }
        #expect(try store.get("eph") == nil)
        #expect(store.leaseLeases().leases == [6])
    }
}
