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

    /// Keys serialized per hold of the shared lock.
    static let defaultKeysPerLock = 2048

    /// Serializes the state as of one applied index, handing out chunks of framed bytes in
    /// order, without stopping writers for the whole walk: the header (applied index I,
    /// revision R, leases, alarms) is taken under one shared hold of `lock`, then the keys a
    /// few thousand at a time, each under its own short hold, keeping only versions <= R.
    /// Writes applied in between only add versions above R (skipped); a compaction applied
    /// meanwhile defers removing versions until the walk ends, so the snapshot is exactly the
    /// state at I (the compaction, logged after I, is replayed from the log).
    @discardableResult
    static func write(_ state: KVStateMachine, lock: ReadWriteLock, keysPerLock: Int = defaultKeysPerLock,
                      to sink: ([UInt8]) throws -> Void) throws -> UInt64 {
        var out = magic
        func emit(_ payload: BinaryWriter) throws {
            RecordFrame.append(payload.bytes, to: &out)
            if out.count >= batchBytes {
                try sink(out)
                out.removeAll(keepingCapacity: true)
            }
        }

        var header = BinaryWriter()
        var leaseList: [(Int64, Int64)] = []
        var appliedIndex: UInt64 = 0
        // Exclusive only for this instant: registers the walk (see KVStateMachine.beginSnapshot).
        let revision: Int64 = lock.withWriteLock {
            state.beginSnapshot()
            appliedIndex = state.appliedIndex
            header.writeUInt8(Kind.header.rawValue)
            header.writeVarUInt(state.appliedIndex)
            header.writeVarInt(state.currentRevision)
            header.writeVarInt(state.compactMainRevision)
            header.writeVarUInt(UInt64(state.alarms.count))
            for a in state.alarms {
                header.writeVarUInt(a.memberID)
                header.writeVarInt(Int64(a.alarm.rawValue))
            }
            leaseList = state.leases.values.map { ($0.id, $0.ttl) }
            return state.currentRevision
        }
        defer { lock.withWriteLock { state.endSnapshot() } }
        try emit(header)

        var batch = BinaryWriter(capacity: batchBytes + 4096)
        var inBatch = 0
        func startBatch(_ kind: Kind) {
            batch.bytes.removeAll(keepingCapacity: true)
            batch.writeUInt8(kind.rawValue)
            inBatch = 0
        }

        startBatch(.leases)
        leaseList.sort { $0.0 < $1.0 }
        for (id, ttl) in leaseList {
            batch.writeVarInt(id)
            batch.writeVarInt(ttl)
            inBatch += 1
            if batch.bytes.count >= batchBytes {
                try emit(batch)
                startBatch(.leases)
            }
        }
        if inBatch > 0 { try emit(batch) }

        startBatch(.keys)
        var keyCount: UInt64 = 0
        var cursor: [UInt8] = []
        var done = false
        while !done {
            // One short shared hold: serialize the next keys into `batch`, emit outside the lock.
            var full: [BinaryWriter] = []
            lock.withReadLock {
                var visited = 0
                done = true
                state.index.forEach(from: cursor, to: .unbounded) { record in
                    if visited == keysPerLock {
                        done = false
                        return false
                    }
                    visited += 1
                    cursor = record.key
                    let versions = record.versions
                    var n = 0
                    while n < versions.count, versions[n].main <= revision { n += 1 }
                    if n == 0 { return true }
                    batch.writeBytes(record.key)
                    batch.writeVarUInt(UInt64(n))
                    for i in 0..<n {
                        let v = versions[i]
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
                        full.append(batch)
                        startBatch(.keys)
                    }
                    return true
                }
            }
            for b in full { try emit(b) }
            // Resume strictly after the last key visited.
            cursor.append(0)
        }
        if inBatch > 0 { try emit(batch) }

        var end = BinaryWriter()
        end.writeUInt8(Kind.end.rawValue)
        end.writeVarUInt(UInt64(leaseList.count))
        end.writeVarUInt(keyCount)
        RecordFrame.append(end.bytes, to: &out)
        try sink(out)
        return appliedIndex
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
                        if last.lease != 0 { state.leases[last.lease]?.keys.insert(KeyBytes(key)) }
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
