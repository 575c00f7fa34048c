// etcdserverpb.Lease: grant, revoke, keep-alive stream, time-to-live and listing of leases.
import CProtobufC
import PierGRPC
import PierKV
import PierProto
import Synchronization

public struct EtcdLeaseService: GRPCService {
    public let serviceName = "etcdserverpb.Lease"
    let context: EtcdContext

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let context = self.context
        let store = context.store
        let identity = context.identity
        return [
            "LeaseGrant": .unary { call, bytes, responder in
                do {
                    try context.checkProposalSize(bytes)
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.LeaseGrantRequest",
                        unpack: etcdserverpb__lease_grant_request__unpack,
                        free: etcdserverpb__lease_grant_request__free_unpacked) {
                            LeaseGrantRequest(ttl: $0.pointee.ttl, id: $0.pointee.id)
                        }
                    // etcd checks the TTL bound before proposing.
                    if request.ttl > maxLeaseTTL { throw KVError.leaseTTLTooLarge }
                    store.leaseGrant(request) { result in
                        responder.complete(result, on: call.eventLoop) { Self.encodeGrant($0, identity) }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "LeaseRevoke": .unary { call, bytes, responder in
                do {
                    try context.checkProposalSize(bytes)
                    let id = try WireMessage.decode(
                        bytes, as: "etcdserverpb.LeaseRevokeRequest",
                        unpack: etcdserverpb__lease_revoke_request__unpack,
                        free: etcdserverpb__lease_revoke_request__free_unpacked) { $0.pointee.id }
                    store.leaseRevoke(id: id) { result in
                        responder.complete(result, on: call.eventLoop) {
                            EtcdEncode.headerOnly(revision: $0.revision, identity)
                        }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "LeaseKeepAlive": .streaming { _, requests, writer in
                for try await bytes in requests {
                    let id = try WireMessage.decode(
                        bytes, as: "etcdserverpb.LeaseKeepAliveRequest",
                        unpack: etcdserverpb__lease_keep_alive_request__unpack,
                        free: etcdserverpb__lease_keep_alive_request__free_unpacked) { $0.pointee.id }
                    let response: LeaseKeepAliveResponse
                    do {
                        response = try store.leaseKeepAlive(id: id)
                    } catch KVError.leaseNotFound {
                        // etcd answers an unknown or expired lease with TTL 0, not an error.
                        response = LeaseKeepAliveResponse(revision: store.currentRevision, id: id, ttl: 0)
                    } catch {
                        throw etcdStatus(error)
                    }
                    try await writer.send(Self.encodeKeepAlive(response, identity))
                }
            },
            "LeaseTimeToLive": .unary { _, bytes, responder in
                do {
                    let (id, keys) = try WireMessage.decode(
                        bytes, as: "etcdserverpb.LeaseTimeToLiveRequest",
                        unpack: etcdserverpb__lease_time_to_live_request__unpack,
                        free: etcdserverpb__lease_time_to_live_request__free_unpacked) {
                            ($0.pointee.id, $0.pointee.keys != 0)
                        }
                    let response: LeaseTimeToLiveResponse
                    do {
                        response = try store.leaseTimeToLive(id: id, keys: keys)
                    } catch KVError.leaseNotFound {
                        // etcd reports a missing lease as TTL -1 rather than an error.
                        response = LeaseTimeToLiveResponse(revision: store.currentRevision, id: id, ttl: -1,
                                                           grantedTTL: 0, keys: [])
                    }
                    responder.succeed(Self.encodeTimeToLive(response, identity))
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "LeaseLeases": .unary { _, _, responder in
                responder.succeed(Self.encodeLeases(store.leaseLeases(), identity))
            },
        ]
    }

    static func encodeGrant(_ r: LeaseGrantResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__LeaseGrantResponse()
            etcdserverpb__lease_grant_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: r.revision)
            m.id = r.id
            m.ttl = r.ttl
            return WireMessage.encode(&m, size: etcdserverpb__lease_grant_response__get_packed_size,
                                      pack: etcdserverpb__lease_grant_response__pack)
        }
    }

    static func encodeKeepAlive(_ r: LeaseKeepAliveResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__LeaseKeepAliveResponse()
            etcdserverpb__lease_keep_alive_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: r.revision)
            m.id = r.id
            m.ttl = r.ttl
            return WireMessage.encode(&m, size: etcdserverpb__lease_keep_alive_response__get_packed_size,
                                      pack: etcdserverpb__lease_keep_alive_response__pack)
        }
    }

    static func encodeTimeToLive(_ r: LeaseTimeToLiveResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__LeaseTimeToLiveResponse()
            etcdserverpb__lease_time_to_live_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: r.revision)
            m.id = r.id
            m.ttl = r.ttl
            m.grantedttl = r.grantedTTL
            if !r.keys.isEmpty {
                let keys = arena.allocate(ProtobufCBinaryData.self, count: r.keys.count)
                for (i, key) in r.keys.enumerated() { keys[i] = arena.bytes(key) }
                m.n_keys = r.keys.count
                m.keys = keys
            }
            return WireMessage.encode(&m, size: etcdserverpb__lease_time_to_live_response__get_packed_size,
                                      pack: etcdserverpb__lease_time_to_live_response__pack)
        }
    }

    static func encodeLeases(_ r: LeaseLeasesResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__LeaseLeasesResponse()
            etcdserverpb__lease_leases_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: r.revision)
            if !r.leases.isEmpty {
                let array = arena.pointers(Etcdserverpb__LeaseStatus.self, count: r.leases.count)
                for (i, id) in r.leases.enumerated() {
                    let status = arena.message(Etcdserverpb__LeaseStatus.self, etcdserverpb__lease_status__init)
                    status.pointee.id = id
                    array[i] = status
                }
                m.n_leases = r.leases.count
                m.leases = array
            }
            return WireMessage.encode(&m, size: etcdserverpb__lease_leases_response__get_packed_size,
                                      pack: etcdserverpb__lease_leases_response__pack)
        }
    }
}

/// Proposes a revoke for every lease whose TTL ran out, as etcd's leader does: expiry is a
/// command in the log, so replicas never expire leases on their own clocks.
public final class LeaseExpiryLoop: Sendable {
    private let store: KVStore
    private let interval: Duration
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    public init(store: KVStore, interval: Duration = .milliseconds(500)) {
        self.store = store
        self.interval = interval
    }

    public func start() {
        let store = self.store
        let interval = self.interval
        let newTask = Task {
            // Leases with a revoke in flight, so a slow writer does not get duplicates.
            let inFlight = Mutex(Set<Int64>())
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                let expired = store.expiredLeases(limit: 1000)
                for id in expired {
                    let fresh = inFlight.withLock { $0.insert(id).inserted }
                    guard fresh else { continue }
                    store.leaseRevoke(id: id) { _ in
                        // Not found means a client revoked it first: nothing left to do.
                        _ = inFlight.withLock { $0.remove(id) }
                    }
                }
            }
        }
        task.withLock { $0 = newTask }
    }

    public func stop() {
        task.withLock { $0?.cancel(); $0 = nil }
    }
}
