// etcdserverpb.KV: Range, Put, DeleteRange, Txn and Compact over the KV engine.
import CProtobufC
import NIOCore
import PierGRPC
import PierKV
import PierProto

/// All methods are `.unary`: reads answer on the event loop at once; writes answer from the
/// storage writer's completion (after fsync), so no task is spent per call.
public struct EtcdKVService: GRPCService {
    public let serviceName = "etcdserverpb.KV"
    let context: EtcdContext

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let context = self.context
        let store = context.store
        let identity = context.identity
        return [
            "Range": .unary { _, bytes, responder in
                do {
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.RangeRequest",
                        unpack: etcdserverpb__range_request__unpack,
                        free: etcdserverpb__range_request__free_unpacked) { try EtcdDecode.range($0) }
                    let response = try store.range(request)
                    responder.succeed(EtcdEncode.range(response, identity))
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "Put": .unary { call, bytes, responder in
                do {
                    try context.checkProposalSize(bytes)
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.PutRequest",
                        unpack: etcdserverpb__put_request__unpack,
                        free: etcdserverpb__put_request__free_unpacked) { EtcdDecode.put($0) }
                    store.put(request) { result in
                        responder.complete(result, on: call.eventLoop) { EtcdEncode.put($0, identity) }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "DeleteRange": .unary { call, bytes, responder in
                do {
                    try context.checkProposalSize(bytes)
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.DeleteRangeRequest",
                        unpack: etcdserverpb__delete_range_request__unpack,
                        free: etcdserverpb__delete_range_request__free_unpacked) { EtcdDecode.deleteRange($0) }
                    store.deleteRange(request) { result in
                        responder.complete(result, on: call.eventLoop) { EtcdEncode.deleteRange($0, identity) }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "Txn": .unary { call, bytes, responder in
                do {
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.TxnRequest",
                        unpack: etcdserverpb__txn_request__unpack,
                        free: etcdserverpb__txn_request__free_unpacked) { try EtcdDecode.txn($0) }
                    // A read-only txn is served locally by etcd, not proposed, so only a
                    // txn that writes is held to the proposal size limit.
                    if !request.isReadOnly { try context.checkProposalSize(bytes) }
                    store.txn(request) { result in
                        responder.complete(result, on: call.eventLoop) { EtcdEncode.txn($0, identity) }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "Compact": .unary { call, bytes, responder in
                do {
                    try context.checkProposalSize(bytes)
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.CompactionRequest",
                        unpack: etcdserverpb__compaction_request__unpack,
                        free: etcdserverpb__compaction_request__free_unpacked) {
                            CompactionRequest(revision: $0.pointee.revision, physical: $0.pointee.physical != 0)
                        }
                    store.compact(request) { result in
                        responder.complete(result, on: call.eventLoop) {
                            EtcdEncode.headerOnly(revision: $0.revision, identity)
                        }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
        ]
    }
}

extension TxnRequest {
    /// True when no branch, at any depth, puts or deletes.
    var isReadOnly: Bool {
        func readOnly(_ ops: [RequestOp]) -> Bool {
            ops.allSatisfy { op in
                switch op {
                case .range: return true
                case .put, .deleteRange: return false
                case .txn(let inner): return inner.isReadOnly
                }
            }
        }
        return readOnly(success) && readOnly(failure)
    }
}
