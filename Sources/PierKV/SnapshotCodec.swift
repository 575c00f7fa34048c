// The snapshot format: the whole MVCC state (every revision since compaction, leases, alarms, applied index) as CRC-framed records.
//
// Layout: 8-byte magic, then RecordFrames: a header, batches of leases, batches of keys (in
// key order, each with all its stored versions), and an end record with the totals, so a
// truncated file is detected even when it ends on a frame boundary. Framing per batch lets the
// writer stream to disk without holding the whole snapshot in memory.
import PierStorage

enum SnapshotCodec {
    static let magic: [UInt8] = Array("PIERKVS1".utf8)
    static let batchBytes = 1 << 20

    private enum Kind: UInt8 {
        case header = 1, leases = 2, keys = 3, end = 4
    }

    /// Serializes `state`, handing out chunks of framed bytes in order.
    static func write(_ state: KVStateMachine, to sink: ([UInt8]) throws -> Void) throws {
        var out = magic
        func emit(_ payload: BinaryWriter) throws {
            RecordFrame.append(payload.bytes, to: &out)
            if out.count >= batchBytes {
                try sink(out)
                out.removeAll(keepingCapacity: true)
            }
        }

        var header = BinaryWriter()
        header.writeUInt8(Kind.header.rawValue)
        header.writeVarUInt(state.appliedIndex)
        header.writeVarInt(state.currentRevision)
        header.writeVarInt(state.compactMainRevision)
        header.writeVarUInt(UInt64(state.alarms.count))
        for a in state.alarms {
            header.writeVarUInt(a.memberID)
            header.writeVarInt(Int64(a.alarm.rawValue))
        }
        try emit(header)

        var batch = BinaryWriter(capacity: batchBytes + 4096)
        var inBatch = 0
        func startBatch(_ kind: Kind) {
            batch.bytes.removeAll(keepingCapacity: true)
            batch.writeUInt8(kind.rawValue)
            inBatch = 0
        }

        startBatch(.leases)
        let leases = state.leases.values.sorted { $0.id < $1.id }
        for lease in leases {
            batch.writeVarInt(lease.id)
            batch.writeVarInt(lease.ttl)
            inBatch += 1
            if batch.bytes.count >= batchBytes {
                try emit(batch)
                startBatch(.leases)
            }
        }
        if inBatch > 0 { try emit(batch) }

        startBatch(.keys)
        var keyCount: UInt64 = 0
        try state.index.forEachRecord { record in
            batch.writeBytes(record.key)
            batch.writeVarUInt(UInt64(record.versions.count))
            for v in record.versions {
                batch.writeVarInt(v.main)
                batch.writeVarInt(Int64(v.sub))
                batch.writeBool(v.tombstone)
                if !v.tombstone {
                    batch.writeVarInt(v.createRevision)
                    batch.writeVarInt(v.version)
                    batch.writeVarInt(v.lease)
                    batch.writeBytes(v.value)
                }
            }
            keyCount += 1
            inBatch += 1
            if batch.bytes.count >= batchBytes {
                try emit(batch)
                startBatch(.keys)
            }
        }
        if inBatch > 0 { try emit(batch) }

        var end = BinaryWriter()
        end.writeUInt8(Kind.end.rawValue)
        end.writeVarUInt(UInt64(leases.count))
        end.writeVarUInt(keyCount)
        RecordFrame.append(end.bytes, to: &out)
        try sink(out)
    }

    /// Loads a snapshot into a fresh state machine (which must be empty).
    static func read(_ bytes: [UInt8], into state: KVStateMachine) throws(KVError) {
        do {
            try decode(bytes, into: state)
        } catch let e as KVError {
            throw e
        } catch {
            throw KVError.corrupt("snapshot: \(error)")
        }
    }

    private static func decode(_ bytes: [UInt8], into state: KVStateMachine) throws {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw KVError.corrupt("snapshot: not a Pier KV snapshot")
        }
        var offset = magic.count
        var sawHeader = false
        var leaseCount: UInt64 = 0
        var keyCount: UInt64 = 0
        var lastKey: [UInt8]?
        var ended = false
        var history: [HistoryEntry] = []

        while !ended {
            let decoded = bytes.withUnsafeBytes { RecordFrame.decode($0, at: offset) }
            guard case .record(let range, let next) = decoded else {
                throw KVError.corrupt("snapshot: damaged or truncated at byte \(offset)")
            }
            offset = next
            var r = BinaryReader(Array(bytes[range]))
            guard let kind = Kind(rawValue: try r.readUInt8()) else { throw KVError.corrupt("snapshot: unknown record") }
            if kind != .header && !sawHeader { throw KVError.corrupt("snapshot: missing header") }
            switch kind {
            case .header:
                sawHeader = true
                state.appliedIndex = try r.readVarUInt()
                state.currentRevision = try r.readVarInt()
                state.compactMainRevision = try r.readVarInt()
                let alarms = try r.readVarUInt()
                for _ in 0..<alarms {
                    let member = try r.readVarUInt()
                    let type = AlarmType(rawValue: Int32(truncatingIfNeeded: try r.readVarInt())) ?? .none
                    state.alarms.append(AlarmMember(memberID: member, alarm: type))
                }
            case .leases:
                while !r.isAtEnd {
                    let id = try r.readVarInt()
                    let ttl = try r.readVarInt()
                    state.leases[id] = Lease(id: id, ttl: ttl, expiry: 0)
                    state.byteEstimate += KVStateMachine.leaseOverhead
                    leaseCount += 1
                }
            case .keys:
                while !r.isAtEnd {
                    let key = try r.readBytes()
                    if let lastKey, compareBytes(lastKey, key) >= 0 { throw KVError.corrupt("snapshot: keys out of order") }
                    lastKey = key
                    let n = try r.readVarUInt()
                    guard n <= UInt64(r.remaining) else { throw KVError.corrupt("snapshot: bad version count") }
                    var versions: [KeyVersion] = []
                    versions.reserveCapacity(Int(n))
                    for _ in 0..<n {
                        let main = try r.readVarInt()
                        let sub = Int32(truncatingIfNeeded: try r.readVarInt())
                        if try r.readBool() {
                            versions.append(KeyVersion(main: main, sub: sub, tombstone: true, createRevision: 0,
                                                       version: 0, lease: 0, value: []))
                            state.byteEstimate += Int64(key.count) + KVStateMachine.versionOverhead
                        } else {
                            let create = try r.readVarInt()
                            let version = try r.readVarInt()
                            let lease = try r.readVarInt()
                            let value = try r.readBytes()
                            versions.append(KeyVersion(main: main, sub: sub, tombstone: false, createRevision: create,
                                                       version: version, lease: lease, value: value))
                            state.byteEstimate += Int64(key.count + value.count) + KVStateMachine.versionOverhead
                        }
                    }
                    let record = KeyRecord(key: key, versions: versions)
                    state.index.appendSorted(record)
                    for v in versions { history.append(HistoryEntry(record: record, main: v.main, sub: v.sub)) }
                    if let last = versions.last, !last.tombstone {
                        state.liveKeyCount += 1
                        if last.lease != 0 { state.leases[last.lease]?.keys.insert(key) }
                    }
                    keyCount += 1
                }
            case .end:
                let leases = try r.readVarUInt()
                let keys = try r.readVarUInt()
                guard leases == leaseCount, keys == keyCount else {
                    throw KVError.corrupt("snapshot: totals do not match its contents")
                }
                ended = true
            }
        }
        history.sort { $0.main != $1.main ? $0.main < $1.main : $0.sub < $1.sub }
        state.history = history
    }
}
