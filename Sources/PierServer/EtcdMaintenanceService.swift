// etcdserverpb.Maintenance: status, hashes, alarms, defragment and snapshot streaming.
import CProtobufC
import PierGRPC
import PierKV
import PierProto

/// The etcd API version Pier reports in Status; etcdctl and clients read it to pick
/// features, so it names the etcd release whose API Pier serves.
public let etcdAPIVersion = "3.4.23"

public struct EtcdMaintenanceService: GRPCService {
    public let serviceName = "etcdserverpb.Maintenance"
    let context: EtcdContext

    /// etcd streams snapshots in 32 KiB pieces.
    static let snapshotChunkBytes = 32 * 1024

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let context = self.context
        let store = context.store
        let identity = context.identity
        return [
            "Status": .unary { _, _, responder in
                responder.succeed(Self.encodeStatus(store.status(), identity))
            },
            "Hash": .unary { _, _, responder in
                do {
                    let hash = try store.hashKV(revision: 0)
                    let bytes = WireArena.with { arena in
                        var m = Etcdserverpb__HashResponse()
                        etcdserverpb__hash_response__init(&m)
                        m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: hash.revision)
                        m.hash = hash.hash
                        return WireMessage.encode(&m, size: etcdserverpb__hash_response__get_packed_size,
                                                  pack: etcdserverpb__hash_response__pack)
                    }
                    responder.succeed(bytes)
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "HashKV": .unary { _, bytes, responder in
                do {
                    let revision = try WireMessage.decode(
                        bytes, as: "etcdserverpb.HashKVRequest",
                        unpack: etcdserverpb__hash_kvrequest__unpack,
                        free: etcdserverpb__hash_kvrequest__free_unpacked) { $0.pointee.revision }
                    let hash = try store.hashKV(revision: revision)
                    let response = WireArena.with { arena in
                        var m = Etcdserverpb__HashKVResponse()
                        etcdserverpb__hash_kvresponse__init(&m)
                        m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: hash.revision)
                        m.hash = hash.hash
                        m.compact_revision = hash.compactRevision
                        return WireMessage.encode(&m, size: etcdserverpb__hash_kvresponse__get_packed_size,
                                                  pack: etcdserverpb__hash_kvresponse__pack)
                    }
                    responder.succeed(response)
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "Alarm": .unary { call, bytes, responder in
                do {
                    let request = try WireMessage.decode(
                        bytes, as: "etcdserverpb.AlarmRequest",
                        unpack: etcdserverpb__alarm_request__unpack,
                        free: etcdserverpb__alarm_request__free_unpacked) { r -> AlarmRequest in
                            AlarmRequest(action: AlarmAction(rawValue: wireEnum(r.pointee.action)) ?? .get,
                                         memberID: r.pointee.memberid,
                                         alarm: AlarmType(rawValue: wireEnum(r.pointee.alarm)) ?? .none)
                        }
                    store.alarm(request) { result in
                        responder.complete(result, on: call.eventLoop) { Self.encodeAlarms($0, identity) }
                    }
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            // The engine keeps no free pages to give back: its state is rewritten compactly by
            // every snapshot, so defragmenting has nothing to do. etcd's reply has no header.
            "Defragment": .unary { _, _, responder in
                responder.succeed([])
            },
            // etcd's stream: the database in chunks, then a SHA-256 of everything sent as the
            // last message; etcdctl checks that (size mod 512) is the digest's 32 bytes, as for
            // a bolt file of 512-byte pages. The engine's snapshot is zero-padded to a multiple
            // of 512 to match; its format ends with its own end record, so a reader stops
            // before the padding (strip the last 32 bytes, then read the snapshot as usual).
            "Snapshot": .streaming { _, requests, writer in
                _ = try await requests.single()
                let revision = store.currentRevision
                var payload: [UInt8]
                do {
                    payload = try store.snapshot()
                } catch {
                    throw etcdStatus(error)
                }
                let padding = (512 - payload.count % 512) % 512
                payload.append(contentsOf: repeatElement(0, count: padding))
                var digest = SHA256()
                var offset = 0
                repeat {
                    let end = min(payload.count, offset + Self.snapshotChunkBytes)
                    let chunk = payload[offset..<end]
                    digest.update(chunk)
                    try await writer.send(Self.encodeSnapshotChunk(Array(chunk), remaining: payload.count - end,
                                                                   header: offset == 0 ? revision : nil, identity))
                    offset = end
                } while offset < payload.count
                try await writer.send(Self.encodeSnapshotChunk(digest.finalize(), remaining: 0, header: nil, identity))
            },
            "MoveLeader": .unary { _, bytes, responder in
                do {
                    let target = try WireMessage.decode(
                        bytes, as: "etcdserverpb.MoveLeaderRequest",
                        unpack: etcdserverpb__move_leader_request__unpack,
                        free: etcdserverpb__move_leader_request__free_unpacked) { $0.pointee.targetid }
                    // The only member already leads: moving leadership to it is done at once.
                    guard target == identity.memberID else { throw EtcdError.badLeaderTransferee }
                    responder.succeed(EtcdEncode.headerOnly(revision: store.currentRevision, identity))
                } catch {
                    responder.fail(etcdStatus(error))
                }
            },
            "Downgrade": .unary { _, _, responder in
                responder.fail(EtcdError.unsupported("cluster downgrade"))
            },
        ]
    }

    static func encodeSnapshotChunk(_ blob: [UInt8], remaining: Int, header revision: Int64?,
                                    _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__SnapshotResponse()
            etcdserverpb__snapshot_response__init(&m)
            if let revision {
                m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: revision)
            }
            m.remaining_bytes = UInt64(remaining)
            m.blob = arena.bytes(blob)
            return WireMessage.encode(&m, size: etcdserverpb__snapshot_response__get_packed_size,
                                      pack: etcdserverpb__snapshot_response__pack)
        }
    }

    static func encodeStatus(_ status: KVStatus, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__StatusResponse()
            etcdserverpb__status_response__init(&m)
            m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: status.revision)
            m.version = arena.cString(etcdAPIVersion)
            m.dbsize = status.dbSize
            m.leader = identity.memberID
            m.raftindex = status.raftIndex
            m.raftterm = identity.raftTerm
            m.raftappliedindex = status.raftIndex
            m.dbsizeinuse = status.dbSizeInUse
            // etcd lists each raised alarm in its text form.
            if !status.alarms.isEmpty {
                let errors = arena.allocate(UnsafeMutablePointer<CChar>?.self, count: status.alarms.count)
                for (i, alarm) in status.alarms.enumerated() {
                    errors[i] = arena.cString("memberID:\(alarm.memberID) alarm:\(alarmName(alarm.alarm)) ")
                }
                m.n_errors = status.alarms.count
                m.errors = errors
            }
            return WireMessage.encode(&m, size: etcdserverpb__status_response__get_packed_size,
                                      pack: etcdserverpb__status_response__pack)
        }
    }

    static func encodeAlarms(_ r: AlarmResponse, _ identity: EtcdIdentity) -> [UInt8] {
        WireArena.with { arena in
            var m = Etcdserverpb__AlarmResponse()
            etcdserverpb__alarm_response__init(&m)
            // etcd's alarm replies carry no header.
            if !r.alarms.isEmpty {
                let array = arena.pointers(Etcdserverpb__AlarmMember.self, count: r.alarms.count)
                for (i, alarm) in r.alarms.enumerated() {
                    let member = arena.message(Etcdserverpb__AlarmMember.self, etcdserverpb__alarm_member__init)
                    member.pointee.memberid = alarm.memberID
                    member.pointee.alarm = Etcdserverpb__AlarmType(rawValue: numericCast(alarm.alarm.rawValue))
                    array[i] = member
                }
                m.n_alarms = r.alarms.count
                m.alarms = array
            }
            return WireMessage.encode(&m, size: etcdserverpb__alarm_response__get_packed_size,
                                      pack: etcdserverpb__alarm_response__pack)
        }
    }

    static func alarmName(_ alarm: AlarmType) -> String {
        switch alarm {
        case .none: return "NONE"
        case .noSpace: return "NOSPACE"
        case .corrupt: return "CORRUPT"
        }
    }
}
