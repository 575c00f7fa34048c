// Conversions between the etcd v3 wire messages (protobuf-c structs) and the KV engine's Swift values.
import CProtobufC
import PierGRPC
import PierKV
import PierProto

/// Who answers: the ids and term every etcd ResponseHeader carries.
public struct EtcdIdentity: Sendable, Equatable {
    public var clusterID: UInt64
    public var memberID: UInt64
    /// A single member never holds an election, so the term stays at 1 (etcd's own single
    /// member reports 2: its first election moves the term from 1 to 2).
    public var raftTerm: UInt64 = 1

    public init(clusterID: UInt64, memberID: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
    }

    /// Stable, non-zero ids derived from the member name and its advertised peer URL, the
    /// inputs etcd hashes for its own ids (etcd adds the start time; a restarted Pier keeps
    /// its ids, which is what clients caching the member id expect).
    public static func derived(name: String = "default", peerURL: String = "http://localhost:2380",
                               clusterToken: String = "etcd-cluster") -> EtcdIdentity {
        let member = fnv1a64(Array("\(peerURL)\u{0}\(clusterToken)\u{0}\(name)".utf8)) | 1
        let cluster = fnv1a64(Array("\(clusterToken)\u{0}\(member)".utf8)) | 1
        return EtcdIdentity(clusterID: cluster, memberID: member)
    }

    private static func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

/// Maps the engine's errors to etcd's statuses (the engine already carries etcd's texts).
extension KVError {
    var grpcStatus: GRPCStatus {
        let code: GRPCStatus.Code
        switch self.code {
        case .invalidArgument: code = .invalidArgument
        case .outOfRange: code = .outOfRange
        case .notFound: code = .notFound
        case .failedPrecondition: code = .failedPrecondition
        case .resourceExhausted: code = .resourceExhausted
        case .unavailable: code = .unavailable
        case .dataLoss: code = .dataLoss
        }
        return GRPCStatus(code, message)
    }
}

/// Turns any thrown error into the status a handler should end with.
func etcdStatus(_ error: any Error) -> GRPCStatus {
    if let status = error as? GRPCStatus { return status }
    if let kvError = error as? KVError { return kvError.grpcStatus }
    return GRPCStatus(.internalError, "\(error)")
}

/// A C enum's raw value as the proto3 int32 it stands for.
@inline(__always)
func wireEnum<T: RawRepresentable>(_ value: T) -> Int32 where T.RawValue: BinaryInteger {
    Int32(truncatingIfNeeded: value.rawValue)
}

// MARK: - Decoding requests

enum EtcdDecode {
    static func range(_ request: UnsafePointer<Etcdserverpb__RangeRequest>) throws -> RangeRequest {
        let r = request.pointee
        guard let order = SortOrder(rawValue: wireEnum(r.sort_order)),
              let target = SortTarget(rawValue: wireEnum(r.sort_target)) else {
            throw KVError.invalidSortOption
        }
        return RangeRequest(key: r.key.bytes, rangeEnd: r.range_end.bytes, limit: r.limit,
                            revision: r.revision, sortOrder: order, sortTarget: target,
                            serializable: r.serializable != 0, keysOnly: r.keys_only != 0,
                            countOnly: r.count_only != 0,
                            minModRevision: r.min_mod_revision, maxModRevision: r.max_mod_revision,
                            minCreateRevision: r.min_create_revision, maxCreateRevision: r.max_create_revision)
    }

    static func put(_ request: UnsafePointer<Etcdserverpb__PutRequest>) -> PutRequest {
        let r = request.pointee
        return PutRequest(key: r.key.bytes, value: r.value.bytes, lease: r.lease, prevKV: r.prev_kv != 0,
                          ignoreValue: r.ignore_value != 0, ignoreLease: r.ignore_lease != 0)
    }

    static func deleteRange(_ request: UnsafePointer<Etcdserverpb__DeleteRangeRequest>) -> DeleteRangeRequest {
        let r = request.pointee
        return DeleteRangeRequest(key: r.key.bytes, rangeEnd: r.range_end.bytes, prevKV: r.prev_kv != 0)
    }

    static func compare(_ compare: UnsafePointer<Etcdserverpb__Compare>) -> Compare {
        let c = compare.pointee
        let unionCase = c.target_union_case
        // etcd reads the operand from the union by the declared target; a mismatched or
        // missing union compares against the target type's zero value.
        let target: Compare.Target
        switch wireEnum(c.target) {
        case 0:
            target = .version(unionCase == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION ? c.version : 0)
        case 1:
            target = .create(unionCase == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION ? c.create_revision : 0)
        case 2:
            target = .mod(unionCase == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION ? c.mod_revision : 0)
        case 3:
            target = .value(unionCase == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE ? c.value.bytes : [])
        default:
            target = .lease(unionCase == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE ? c.lease : 0)
        }
        let result = Compare.Result(rawValue: wireEnum(c.result)) ?? .equal
        return Compare(key: c.key.bytes, rangeEnd: c.range_end.bytes, target: target, result: result)
    }

    static func requestOp(_ op: UnsafePointer<Etcdserverpb__RequestOp>) throws -> RequestOp? {
        let o = op.pointee
        switch o.request_case {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            return .range(try range(o.request_range))
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            return .put(put(o.request_put))
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            return .deleteRange(deleteRange(o.request_delete_range))
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            return .txn(try txn(o.request_txn))
        default:
            // etcd skips an op with no request set (its apply loop has no case for it).
            return nil
        }
    }

    static func txn(_ request: UnsafePointer<Etcdserverpb__TxnRequest>) throws -> TxnRequest {
        let t = request.pointee
        var result = TxnRequest()
        result.compare.reserveCapacity(t.n_compare)
        for i in 0..<t.n_compare { result.compare.append(compare(t.compare[i]!)) }
        for i in 0..<t.n_success { if let op = try requestOp(t.success[i]!) { result.success.append(op) } }
        for i in 0..<t.n_failure { if let op = try requestOp(t.failure[i]!) { result.failure.append(op) } }
        return result
    }

    static func watchCreate(_ request: UnsafePointer<Etcdserverpb__WatchCreateRequest>) -> WatchRequest {
        let r = request.pointee
        var watch = WatchRequest(key: r.key.bytes, rangeEnd: r.range_end.bytes,
                                 startRevision: r.start_revision, prevKV: r.prev_kv != 0)
        for i in 0..<r.n_filters {
            switch wireEnum(r.filters[i]) {
            case 0: watch.noPut = true
            case 1: watch.noDelete = true
            default: break
            }
        }
        return watch
    }
}

// MARK: - Encoding responses

/// Builds protobuf-c response trees in an arena and packs them.
struct EtcdEncoder {
    let arena: WireArena
    let identity: EtcdIdentity

    /// The full header of a top-level response.
    func header(revision: Int64) -> UnsafeMutablePointer<Etcdserverpb__ResponseHeader> {
        let h = arena.message(Etcdserverpb__ResponseHeader.self, etcdserverpb__response_header__init)
        h.pointee.cluster_id = identity.clusterID
        h.pointee.member_id = identity.memberID
        h.pointee.revision = revision
        h.pointee.raft_term = identity.raftTerm
        return h
    }

    /// The header etcd puts on responses nested in a txn: the revision only.
    func nestedHeader(revision: Int64) -> UnsafeMutablePointer<Etcdserverpb__ResponseHeader> {
        let h = arena.message(Etcdserverpb__ResponseHeader.self, etcdserverpb__response_header__init)
        h.pointee.revision = revision
        return h
    }

    func keyValue(_ kv: KeyValue) -> UnsafeMutablePointer<Mvccpb__KeyValue> {
        let m = arena.message(Mvccpb__KeyValue.self, mvccpb__key_value__init)
        m.pointee.key = arena.bytes(kv.key)
        m.pointee.create_revision = kv.createRevision
        m.pointee.mod_revision = kv.modRevision
        m.pointee.version = kv.version
        m.pointee.value = arena.bytes(kv.value)
        m.pointee.lease = kv.lease
        return m
    }

    func keyValues(_ kvs: [KeyValue]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Mvccpb__KeyValue>?>?) {
        guard !kvs.isEmpty else { return (0, nil) }
        let array = arena.pointers(Mvccpb__KeyValue.self, count: kvs.count)
        for (i, kv) in kvs.enumerated() { array[i] = keyValue(kv) }
        return (kvs.count, array)
    }

    func event(_ event: WatchEvent) -> UnsafeMutablePointer<Mvccpb__Event> {
        let m = arena.message(Mvccpb__Event.self, mvccpb__event__init)
        m.pointee.type = event.kind == .put ? MVCCPB__EVENT__EVENT_TYPE__PUT : MVCCPB__EVENT__EVENT_TYPE__DELETE
        m.pointee.kv = keyValue(event.kv)
        if let prev = event.prevKV { m.pointee.prev_kv = keyValue(prev) }
        return m
    }

    func rangeResponse(_ r: RangeResponse, nested: Bool) -> UnsafeMutablePointer<Etcdserverpb__RangeResponse> {
        let m = arena.message(Etcdserverpb__RangeResponse.self, etcdserverpb__range_response__init)
        m.pointee.header = nested ? nestedHeader(revision: r.revision) : header(revision: r.revision)
        (m.pointee.n_kvs, m.pointee.kvs) = keyValues(r.kvs)
        m.pointee.more = r.more ? 1 : 0
        m.pointee.count = r.count
        return m
    }

    func putResponse(_ r: PutResponse, nested: Bool) -> UnsafeMutablePointer<Etcdserverpb__PutResponse> {
        let m = arena.message(Etcdserverpb__PutResponse.self, etcdserverpb__put_response__init)
        m.pointee.header = nested ? nestedHeader(revision: r.revision) : header(revision: r.revision)
        if let prev = r.prevKV { m.pointee.prev_kv = keyValue(prev) }
        return m
    }

    func deleteRangeResponse(_ r: DeleteRangeResponse, nested: Bool) -> UnsafeMutablePointer<Etcdserverpb__DeleteRangeResponse> {
        let m = arena.message(Etcdserverpb__DeleteRangeResponse.self, etcdserverpb__delete_range_response__init)
        m.pointee.header = nested ? nestedHeader(revision: r.revision) : header(revision: r.revision)
        m.pointee.deleted = r.deleted
        (m.pointee.n_prev_kvs, m.pointee.prev_kvs) = keyValues(r.prevKVs)
        return m
    }

    func txnResponse(_ r: TxnResponse, nested: Bool) -> UnsafeMutablePointer<Etcdserverpb__TxnResponse> {
        let m = arena.message(Etcdserverpb__TxnResponse.self, etcdserverpb__txn_response__init)
        // etcd leaves a nested txn's header empty (its nested puts and ranges do carry a revision).
        m.pointee.header = nested ? nestedHeader(revision: 0) : header(revision: r.revision)
        m.pointee.succeeded = r.succeeded ? 1 : 0
        if !r.responses.isEmpty {
            let array = arena.pointers(Etcdserverpb__ResponseOp.self, count: r.responses.count)
            for (i, response) in r.responses.enumerated() {
                let op = arena.message(Etcdserverpb__ResponseOp.self, etcdserverpb__response_op__init)
                switch response {
                case .range(let inner):
                    op.pointee.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE
                    op.pointee.response_range = rangeResponse(inner, nested: true)
                case .put(let inner):
                    op.pointee.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT
                    op.pointee.response_put = putResponse(inner, nested: true)
                case .deleteRange(let inner):
                    op.pointee.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE
                    op.pointee.response_delete_range = deleteRangeResponse(inner, nested: true)
                case .txn(let inner):
                    op.pointee.response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN
                    op.pointee.response_txn = txnResponse(inner, nested: true)
                }
                array[i] = op
            }
            m.pointee.n_responses = r.responses.count
            m.pointee.responses = array
        }
        return m
    }
}

/// One-call encoders for the responses the services send.
enum EtcdEncode {
    static func range(_ r: RangeResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            let m = EtcdEncoder(arena: arena, identity: identity).rangeResponse(r, nested: false)
            return WireMessage.encode(m, size: etcdserverpb__range_response__get_packed_size,
                                      pack: etcdserverpb__range_response__pack)
        }
    }

    static func put(_ r: PutResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            let m = EtcdEncoder(arena: arena, identity: identity).putResponse(r, nested: false)
            return WireMessage.encode(m, size: etcdserverpb__put_response__get_packed_size,
                                      pack: etcdserverpb__put_response__pack)
        }
    }

    static func deleteRange(_ r: DeleteRangeResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            let m = EtcdEncoder(arena: arena, identity: identity).deleteRangeResponse(r, nested: false)
            return WireMessage.encode(m, size: etcdserverpb__delete_range_response__get_packed_size,
                                      pack: etcdserverpb__delete_range_response__pack)
        }
    }

    static func txn(_ r: TxnResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            let m = EtcdEncoder(arena: arena, identity: identity).txnResponse(r, nested: false)
            return WireMessage.encode(m, size: etcdserverpb__txn_response__get_packed_size,
                                      pack: etcdserverpb__txn_response__pack)
        }
    }

    /// Responses whose only field is the header (Compaction, LeaseRevoke, Defragment, ...):
    /// they share one wire shape, `header = 1`, so one encoder serves them all.
    static func headerOnly(revision: Int64, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__CompactionResponse()
            etcdserverpb__compaction_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: revision)
            return WireMessage.encode(&m, size: etcdserverpb__compaction_response__get_packed_size,
                                      pack: etcdserverpb__compaction_response__pack)
        }
    }
}
