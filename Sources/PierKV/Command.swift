// Commands: every KV mutation as a value with a compact binary encoding, the unit the log stores and the state machine applies.
import PierStorage

/// One mutation, in the form it is logged (today the local WAL, later the Raft log) and then
/// applied in log order. Lease expiry is a `leaseRevoke` proposed by the server.
public enum Command: Sendable, Equatable {
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
    case compact(CompactionRequest)
    /// The id is chosen before proposing (never 0) so every replica applies the same one.
    case leaseGrant(id: Int64, ttl: Int64)
    case leaseRevoke(id: Int64)
    /// Activate or deactivate only.
    case alarm(AlarmRequest)

    static let formatVersion: UInt8 = 1

    private enum Tag: UInt8 {
        case put = 1, deleteRange, txn, compact, leaseGrant, leaseRevoke, alarm
    }

    public func encoded() -> [UInt8] {
        var w = BinaryWriter(capacity: 32)
        w.writeUInt8(Self.formatVersion)
        switch self {
        case .put(let r):
            w.writeUInt8(Tag.put.rawValue)
            Self.encodePut(r, &w)
        case .deleteRange(let r):
            w.writeUInt8(Tag.deleteRange.rawValue)
            Self.encodeDelete(r, &w)
        case .txn(let r):
            w.writeUInt8(Tag.txn.rawValue)
            Self.encodeTxn(r, &w)
        case .compact(let r):
            w.writeUInt8(Tag.compact.rawValue)
            w.writeVarInt(r.revision)
            w.writeBool(r.physical)
        case .leaseGrant(let id, let ttl):
            w.writeUInt8(Tag.leaseGrant.rawValue)
            w.writeVarInt(id)
            w.writeVarInt(ttl)
        case .leaseRevoke(let id):
            w.writeUInt8(Tag.leaseRevoke.rawValue)
            w.writeVarInt(id)
        case .alarm(let r):
            w.writeUInt8(Tag.alarm.rawValue)
            w.writeVarInt(Int64(r.action.rawValue))
            w.writeVarUInt(r.memberID)
            w.writeVarInt(Int64(r.alarm.rawValue))
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(KVError) -> Command {
        do {
            var r = BinaryReader(bytes)
            let version = try r.readUInt8()
            guard version == formatVersion else { throw KVError.corrupt("unknown command format \(version)") }
            guard let tag = Tag(rawValue: try r.readUInt8()) else { throw KVError.corrupt("unknown command tag") }
            switch tag {
            case .put: return .put(try decodePut(&r))
            case .deleteRange: return .deleteRange(try decodeDelete(&r))
            case .txn: return .txn(try decodeTxn(&r, depth: 0))
            case .compact:
                return .compact(CompactionRequest(revision: try r.readVarInt(), physical: try r.readBool()))
            case .leaseGrant:
                return .leaseGrant(id: try r.readVarInt(), ttl: try r.readVarInt())
            case .leaseRevoke:
                return .leaseRevoke(id: try r.readVarInt())
            case .alarm:
                guard let action = AlarmAction(rawValue: Int32(truncatingIfNeeded: try r.readVarInt())) else {
                    throw KVError.corrupt("bad alarm action")
                }
                let member = try r.readVarUInt()
                guard let alarm = AlarmType(rawValue: Int32(truncatingIfNeeded: try r.readVarInt())) else {
                    throw KVError.corrupt("bad alarm type")
                }
                return .alarm(AlarmRequest(action: action, memberID: member, alarm: alarm))
            }
        } catch let e as KVError {
            throw e
        } catch {
            throw KVError.corrupt("undecodable command: \(error)")
        }
    }

    // MARK: Pieces

    private static func encodePut(_ r: PutRequest, _ w: inout BinaryWriter) {
        w.writeBytes(r.key)
        w.writeBytes(r.value)
        w.writeVarInt(r.lease)
        w.writeUInt8((r.prevKV ? 1 : 0) | (r.ignoreValue ? 2 : 0) | (r.ignoreLease ? 4 : 0))
    }

    private static func decodePut(_ r: inout BinaryReader) throws -> PutRequest {
        let key = try r.readBytes()
        let value = try r.readBytes()
        let lease = try r.readVarInt()
        let flags = try r.readUInt8()
        return PutRequest(key: key, value: value, lease: lease, prevKV: flags & 1 != 0,
                          ignoreValue: flags & 2 != 0, ignoreLease: flags & 4 != 0)
    }

    private static func encodeDelete(_ r: DeleteRangeRequest, _ w: inout BinaryWriter) {
        w.writeBytes(r.key)
        w.writeBytes(r.rangeEnd)
        w.writeBool(r.prevKV)
    }

    private static func decodeDelete(_ r: inout BinaryReader) throws -> DeleteRangeRequest {
        DeleteRangeRequest(key: try r.readBytes(), rangeEnd: try r.readBytes(), prevKV: try r.readBool())
    }

    private static func encodeRange(_ q: RangeRequest, _ w: inout BinaryWriter) {
        w.writeBytes(q.key)
        w.writeBytes(q.rangeEnd)
        w.writeVarInt(q.limit)
        w.writeVarInt(q.revision)
        w.writeUInt8(UInt8(q.sortOrder.rawValue))
        w.writeUInt8(UInt8(q.sortTarget.rawValue))
        w.writeUInt8((q.serializable ? 1 : 0) | (q.keysOnly ? 2 : 0) | (q.countOnly ? 4 : 0))
        w.writeVarInt(q.minModRevision)
        w.writeVarInt(q.maxModRevision)
        w.writeVarInt(q.minCreateRevision)
        w.writeVarInt(q.maxCreateRevision)
    }

    private static func decodeRange(_ r: inout BinaryReader) throws -> RangeRequest {
        let key = try r.readBytes()
        let end = try r.readBytes()
        let limit = try r.readVarInt()
        let revision = try r.readVarInt()
        guard let order = SortOrder(rawValue: Int32(try r.readUInt8())),
              let target = SortTarget(rawValue: Int32(try r.readUInt8())) else {
            throw StorageError.corrupt("bad sort option")
        }
        let flags = try r.readUInt8()
        return RangeRequest(key: key, rangeEnd: end, limit: limit, revision: revision,
                            sortOrder: order, sortTarget: target, serializable: flags & 1 != 0,
                            keysOnly: flags & 2 != 0, countOnly: flags & 4 != 0,
                            minModRevision: try r.readVarInt(), maxModRevision: try r.readVarInt(),
                            minCreateRevision: try r.readVarInt(), maxCreateRevision: try r.readVarInt())
    }

    private static func encodeCompare(_ c: Compare, _ w: inout BinaryWriter) {
        w.writeBytes(c.key)
        w.writeBytes(c.rangeEnd)
        w.writeUInt8(UInt8(c.result.rawValue))
        switch c.target {
        case .version(let v): w.writeUInt8(0); w.writeVarInt(v)
        case .create(let v): w.writeUInt8(1); w.writeVarInt(v)
        case .mod(let v): w.writeUInt8(2); w.writeVarInt(v)
        case .value(let v): w.writeUInt8(3); w.writeBytes(v)
        case .lease(let v): w.writeUInt8(4); w.writeVarInt(v)
        }
    }

    private static func decodeCompare(_ r: inout BinaryReader) throws -> Compare {
        let key = try r.readBytes()
        let end = try r.readBytes()
        guard let result = Compare.Result(rawValue: Int32(try r.readUInt8())) else {
            throw StorageError.corrupt("bad compare result")
        }
        let target: Compare.Target
        switch try r.readUInt8() {
        case 0: target = .version(try r.readVarInt())
        case 1: target = .create(try r.readVarInt())
        case 2: target = .mod(try r.readVarInt())
        case 3: target = .value(try r.readBytes())
        case 4: target = .lease(try r.readVarInt())
        default: throw StorageError.corrupt("bad compare target")
        }
        return Compare(key: key, rangeEnd: end, target: target, result: result)
    }

    private static func encodeOps(_ ops: [RequestOp], _ w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(ops.count))
        for op in ops {
            switch op {
            case .range(let q): w.writeUInt8(0); encodeRange(q, &w)
            case .put(let p): w.writeUInt8(1); encodePut(p, &w)
            case .deleteRange(let d): w.writeUInt8(2); encodeDelete(d, &w)
            case .txn(let t): w.writeUInt8(3); encodeTxn(t, &w)
            }
        }
    }

    private static func decodeOps(_ r: inout BinaryReader, depth: Int) throws -> [RequestOp] {
        let n = try r.readVarUInt()
        guard n <= UInt64(r.remaining) else { throw StorageError.corrupt("bad op count") }
        var ops: [RequestOp] = []
        ops.reserveCapacity(Int(n))
        for _ in 0..<n {
            switch try r.readUInt8() {
            case 0: ops.append(.range(try decodeRange(&r)))
            case 1: ops.append(.put(try decodePut(&r)))
            case 2: ops.append(.deleteRange(try decodeDelete(&r)))
            case 3: ops.append(.txn(try decodeTxn(&r, depth: depth + 1)))
            default: throw StorageError.corrupt("bad op kind")
            }
        }
        return ops
    }

    private static func encodeTxn(_ t: TxnRequest, _ w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(t.compare.count))
        for c in t.compare { encodeCompare(c, &w) }
        encodeOps(t.success, &w)
        encodeOps(t.failure, &w)
    }

    private static func decodeTxn(_ r: inout BinaryReader, depth: Int) throws -> TxnRequest {
        guard depth < 64 else { throw StorageError.corrupt("txn nested too deep") }
        let n = try r.readVarUInt()
        guard n <= UInt64(r.remaining) else { throw StorageError.corrupt("bad compare count") }
        var compares: [Compare] = []
        for _ in 0..<n { compares.append(try decodeCompare(&r)) }
        let success = try decodeOps(&r, depth: depth)
        let failure = try decodeOps(&r, depth: depth)
        return TxnRequest(compare: compares, success: success, failure: failure)
    }
}

/// What applying a command produced.
public enum CommandResult: Sendable, Equatable {
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
    case compact(CompactionResponse)
    case leaseGrant(LeaseGrantResponse)
    case leaseRevoke(LeaseRevokeResponse)
    case alarm(AlarmResponse)
}
