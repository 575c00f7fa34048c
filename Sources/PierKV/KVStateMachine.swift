// The deterministic MVCC state machine: applies commands in log order and answers reads, following etcd's mvcc and apply semantics.
//
// Not thread-safe by itself: KVStore calls every method with its ReadWriteLock held (writes
// and `apply` exclusively, reads shared). Lease expiry deadlines are node-local, never part of
// the replicated state: only `apply` changes what every replica must agree on.
import PierStorage

/// A lease: granted TTL, attached keys, and (node-local) expiry deadline.
final class Lease {
    let id: Int64
    var ttl: Int64
    var keys: Set<KeyBytes> = []
    /// Monotonic nanoseconds; guarded by the store's lock like the rest.
    var expiry: UInt64

    init(id: Int64, ttl: Int64, expiry: UInt64) {
        self.id = id
        self.ttl = ttl
        self.expiry = expiry
    }
}

/// One revision in the order it happened, for watchers catching up from history.
struct HistoryEntry {
    let record: KeyRecord
    let main: Int64
    let sub: Int32
}

final class KVStateMachine {
    /// Rough bytes per stored revision beyond key and value (index entry, history entry, headers);
    /// used for the size estimate and quota.
    static let versionOverhead: Int64 = 96
    static let leaseOverhead: Int64 = 64

    var index = KeyIndex()
    /// Every revision since the compacted one, in (main, sub) order.
    var history: [HistoryEntry] = []
    var currentRevision: Int64 = 1
    /// etcd starts at -1 ("never compacted"), which lets Compact(0) succeed on a fresh store.
    var compactMainRevision: Int64 = -1
    var appliedIndex: UInt64 = 0
    var leases: [Int64: Lease] = [:]
    var alarms: [AlarmMember] = []
    var liveKeyCount: Int64 = 0
    var byteEstimate: Int64 = 0

    let hub: WatchHub
    let minLeaseTTL: Int64
    let clock: @Sendable () -> UInt64

    // The write in progress (one command, or one lease revoke): sub-revision counter and the
    // versions it wrote, for the watch hub.
    private var writeSub: Int32 = 0
    private var changes: [(record: KeyRecord, position: Int)] = []

    init(hub: WatchHub, minLeaseTTL: Int64, clock: @escaping @Sendable () -> UInt64) {
        self.hub = hub
        self.minLeaseTTL = minLeaseTTL
        self.clock = clock
    }

    var compactedRevision: Int64 { max(0, compactMainRevision) }

    var hasNoSpaceAlarm: Bool { alarms.contains { $0.alarm == .noSpace } }

    // MARK: - Apply

    /// Applies one logged command. Deterministic: the same commands in the same order give
    /// the same state and results on every replica and on replay.
    func apply(_ command: Command, index: UInt64) -> Result<CommandResult, KVError> {
        appliedIndex = index
        switch command {
        case .put(let r):
            if hasNoSpaceAlarm { return .failure(.noSpace) }
            return applyPut(r).map { .put($0) }
        case .deleteRange(let r):
            return .success(.deleteRange(applyDeleteRange(r)))
        case .txn(let r):
            if hasNoSpaceAlarm && RequestChecks.cost(command) > 0 { return .failure(.noSpace) }
            return applyTxn(r).map { .txn($0) }
        case .compact(let r):
            return applyCompact(r).map { .compact($0) }
        case .leaseGrant(let id, let ttl):
            if hasNoSpaceAlarm { return .failure(.noSpace) }
            return applyLeaseGrant(id: id, ttl: ttl).map { .leaseGrant($0) }
        case .leaseRevoke(let id):
            return applyLeaseRevoke(id: id).map { .leaseRevoke($0) }
        case .alarm(let r):
            return .success(.alarm(applyAlarm(r)))
        }
    }

    // MARK: Write primitives (inside beginWrite/endWrite)

    private func beginWrite() {
        writeSub = 0
        changes.removeAll(keepingCapacity: true)
    }

    /// Revision the current write's changes carry.
    private var writeRevision: Int64 { currentRevision + 1 }

    /// Revision a read inside the current write sees (etcd: begin + 1 once something changed).
    private var writeReadRevision: Int64 { writeSub > 0 ? currentRevision + 1 : currentRevision }

    /// Commits the write: one new main revision if anything changed, and its events go to the watch hub.
    private func endWrite() {
        guard writeSub > 0 else { return }
        currentRevision += 1
        hub.publish(changes, revision: currentRevision, state: self)
        changes.removeAll(keepingCapacity: true)
    }

    private func writePut(key: [UInt8], value: [UInt8], lease: Int64) {
        let record = index.findOrInsert(key)
        let rev = writeRevision
        var create = rev
        var version: Int64 = 1
        var oldLease: Int64 = 0
        if let last = record.versions.last, !last.tombstone {
            create = last.createRevision
            version = last.version + 1
            oldLease = last.lease
        } else {
            liveKeyCount += 1
        }
        if oldLease != 0 && oldLease != lease { leases[oldLease]?.keys.remove(KeyBytes(key)) }
        if lease != 0 && oldLease != lease { leases[lease]?.keys.insert(KeyBytes(key)) }
        record.versions.append(KeyVersion(main: rev, sub: writeSub, tombstone: false, createRevision: create,
                                          version: version, lease: lease, value: value))
        noteChange(record)
        byteEstimate += Int64(key.count + value.count) + Self.versionOverhead
    }

    private func writeDelete(_ record: KeyRecord) {
        guard let last = record.versions.last, !last.tombstone else { return }
        if last.lease != 0 { leases[last.lease]?.keys.remove(KeyBytes(record.key)) }
        record.versions.append(KeyVersion(main: writeRevision, sub: writeSub, tombstone: true, createRevision: 0,
                                          version: 0, lease: 0, value: []))
        liveKeyCount -= 1
        noteChange(record)
        byteEstimate += Int64(record.key.count) + Self.versionOverhead
    }

    private func noteChange(_ record: KeyRecord) {
        history.append(HistoryEntry(record: record, main: writeRevision, sub: writeSub))
        changes.append((record, record.versions.count - 1))
        writeSub += 1
    }

    /// Live records in the range at `revision`.
    private func liveRecords(_ key: [UInt8], _ end: KeyRangeEnd, at revision: Int64) -> [KeyRecord] {
        var out: [KeyRecord] = []
        index.forEach(from: key, to: end) { record in
            if record.live(at: revision) != nil { out.append(record) }
            return true
        }
        return out
    }

    // MARK: Put / Delete

    /// A top-level put (etcd's applierV3backend.Put with no enclosing txn).
    private func applyPut(_ r: PutRequest) -> Result<PutResponse, KVError> {
        if r.lease != 0 && leases[r.lease] == nil { return .failure(.leaseNotFound) }
        beginWrite()
        let result = putOp(r)
        endWrite()
        return result.map { var resp = $0; resp.revision = currentRevision; return resp }
    }

    /// The put itself; lease and ignore_* preconditions already hold or fail here.
    private func putOp(_ r: PutRequest) -> Result<PutResponse, KVError> {
        var previous: KeyValue?
        if r.ignoreValue || r.ignoreLease || r.prevKV {
            if let record = index.find(r.key), let i = record.live(at: writeReadRevision) {
                previous = record.keyValue(i)
            }
        }
        if (r.ignoreValue || r.ignoreLease) && previous == nil { return .failure(.keyNotFound) }
        let value = r.ignoreValue ? previous!.value : r.value
        let lease = r.ignoreLease ? previous!.lease : r.lease
        writePut(key: r.key, value: value, lease: lease)
        return .success(PutResponse(revision: writeRevision, prevKV: r.prevKV ? previous : nil))
    }

    private func applyDeleteRange(_ r: DeleteRangeRequest) -> DeleteRangeResponse {
        beginWrite()
        var resp = deleteOp(r)
        endWrite()
        resp.revision = currentRevision
        return resp
    }

    private func deleteOp(_ r: DeleteRangeRequest) -> DeleteRangeResponse {
        let records = liveRecords(r.key, KeyRangeEnd(r.rangeEnd), at: writeReadRevision)
        var prev: [KeyValue] = []
        if r.prevKV {
            prev.reserveCapacity(records.count)
            for record in records { prev.append(record.keyValue(record.versions.count - 1)) }
        }
        for record in records { writeDelete(record) }
        return DeleteRangeResponse(revision: writeReadRevision, deleted: Int64(records.count), prevKVs: prev)
    }

    // MARK: Range

    /// etcd's Range semantics (applierV3backend.Range + mvcc rangeKeys). `current` is the
    /// revision reads default to and the header reports.
    func range(_ r: RangeRequest, current: Int64) throws(KVError) -> RangeResponse {
        var rev = r.revision
        if rev > current { throw .futureRevision }
        if rev <= 0 { rev = current }
        if rev < compactMainRevision { throw .compacted }

        let end = KeyRangeEnd(r.rangeEnd)
        if r.countOnly {
            var count: Int64 = 0
            index.forEach(from: r.key, to: end) { record in
                if record.live(at: rev) != nil { count += 1 }
                return true
            }
            return RangeResponse(revision: current, kvs: [], more: false, count: count)
        }

        // Sorting and revision filters need every match; otherwise fetch one extra for `more`.
        var limit = r.limit
        let keyOrder = r.sortOrder == .none || (r.sortTarget == .key && r.sortOrder == .ascend)
        if !keyOrder || r.minModRevision != 0 || r.maxModRevision != 0
            || r.minCreateRevision != 0 || r.maxCreateRevision != 0 {
            limit = 0
        }
        if limit > 0 { limit += 1 }

        var kvs: [KeyValue] = []
        var count: Int64 = 0
        // Values are needed to sort by value even when the answer is keys only (etcd strips them last).
        let withValue = !r.keysOnly || r.sortTarget == .value
        index.forEach(from: r.key, to: end) { record in
            if let i = record.live(at: rev) {
                count += 1
                if limit <= 0 || Int64(kvs.count) < limit { kvs.append(record.keyValue(i, withValue: withValue)) }
            }
            return true
        }

        if r.maxModRevision != 0 { kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < r.minCreateRevision } }

        // etcd: results come out in key order, so NONE with a non-KEY target means ASCEND and
        // ASCEND by KEY needs no sort.
        var order = r.sortOrder
        if r.sortTarget != .key && order == .none {
            order = .ascend
        } else if r.sortTarget == .key && order == .ascend {
            order = .none
        }
        if order != .none { Self.sort(&kvs, by: r.sortTarget, descending: order == .descend) }

        var more = false
        if r.limit > 0 && kvs.count > Int(r.limit) {
            kvs.removeSubrange(Int(r.limit)...)
            more = true
        }
        if r.keysOnly && withValue {
            for i in kvs.indices { kvs[i].value = [] }
        }
        return RangeResponse(revision: current, kvs: kvs, more: more, count: count)
    }

    /// Stable sort on the target; equal targets keep key order (etcd's sort is unstable, any
    /// order of ties is valid, this one is deterministic).
    private static func sort(_ kvs: inout [KeyValue], by target: SortTarget, descending: Bool) {
        func less(_ a: KeyValue, _ b: KeyValue) -> Bool {
            switch target {
            case .key: return compareBytes(a.key, b.key) < 0
            case .version: return a.version < b.version
            case .create: return a.createRevision < b.createRevision
            case .mod: return a.modRevision < b.modRevision
            case .value: return compareBytes(a.value, b.value) < 0
            }
        }
        // Pair with the original position to make the sort stable.
        var indexed = Array(kvs.enumerated())
        indexed.sort { x, y in
            if descending {
                if less(y.element, x.element) { return true }
                if less(x.element, y.element) { return false }
            } else {
                if less(x.element, y.element) { return true }
                if less(y.element, x.element) { return false }
            }
            return x.offset < y.offset
        }
        kvs = indexed.map(\.element)
    }

    // MARK: Txn

    /// etcd's applyCompare: every key in the range must satisfy the compare; an empty range
    /// compares the zero KeyValue, except a VALUE compare, which then always fails.
    private func compareHolds(_ c: Compare, at revision: Int64) -> Bool {
        var any = false
        var holds = true
        index.forEach(from: c.key, to: KeyRangeEnd(c.rangeEnd)) { record in
            guard let i = record.live(at: revision) else { return true }
            any = true
            if !Self.compare(c, record.versions[i]) {
                holds = false
                return false
            }
            return true
        }
        if !any {
            if case .value = c.target { return false }
            return Self.compare(c, KeyVersion(main: 0, sub: 0, tombstone: false, createRevision: 0, version: 0,
                                              lease: 0, value: []))
        }
        return holds
    }

    private static func compare(_ c: Compare, _ v: KeyVersion) -> Bool {
        let result: Int
        switch c.target {
        case .value(let x): result = compareBytes(v.value, x)
        case .create(let x): result = v.createRevision == x ? 0 : (v.createRevision < x ? -1 : 1)
        case .mod(let x): result = v.main == x ? 0 : (v.main < x ? -1 : 1)
        case .version(let x): result = v.version == x ? 0 : (v.version < x ? -1 : 1)
        case .lease(let x): result = v.lease == x ? 0 : (v.lease < x ? -1 : 1)
        }
        switch c.result {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .greater: return result > 0
        case .less: return result < 0
        }
    }

    /// etcd's compareToPath: the branch taken at this txn and at every nested txn on the
    /// path, in visiting order. All compares see the state before the txn.
    private func path(_ t: TxnRequest, at revision: Int64, into out: inout [Bool]) {
        let ok = t.compare.allSatisfy { compareHolds($0, at: revision) }
        out.append(ok)
        for op in ok ? t.success : t.failure {
            if case .txn(let nested) = op { path(nested, at: revision, into: &out) }
        }
    }

    /// etcd's checkRequests on the chosen path: puts need their lease and (for ignore_*) their
    /// key; ranges need a readable revision. Any failure rejects the whole txn before it writes.
    private func checkPath(_ t: TxnRequest, _ path: [Bool], _ at: inout Int, revision: Int64) throws(KVError) {
        let ok = path[at]
        at += 1
        for op in ok ? t.success : t.failure {
            switch op {
            case .put(let p):
                if p.ignoreValue || p.ignoreLease {
                    guard let record = index.find(p.key), record.live(at: revision) != nil else { throw .keyNotFound }
                }
                if p.lease != 0 && leases[p.lease] == nil { throw .leaseNotFound }
            case .range(let q):
                // etcd's checkRange: revision 0 means "current" and always passes.
                if q.revision != 0 {
                    if q.revision > revision { throw .futureRevision }
                    if q.revision < compactMainRevision { throw .compacted }
                }
            case .deleteRange:
                break
            case .txn(let nested):
                try checkPath(nested, path, &at, revision: revision)
            }
        }
    }

    private func executePath(_ t: TxnRequest, _ path: [Bool], _ at: inout Int) -> TxnResponse {
        let ok = path[at]
        at += 1
        let ops = ok ? t.success : t.failure
        var responses: [ResponseOp] = []
        responses.reserveCapacity(ops.count)
        for op in ops {
            switch op {
            case .range(let q):
                // Checked above, so this cannot throw; a failure would be a bug, answer empty.
                let r = (try? range(q, current: writeReadRevision))
                    ?? RangeResponse(revision: writeReadRevision, kvs: [], more: false, count: 0)
                responses.append(.range(r))
            case .put(let p):
                switch putOp(p) {
                case .success(let r): responses.append(.put(r))
                case .failure: responses.append(.put(PutResponse(revision: writeReadRevision)))
                }
            case .deleteRange(let d):
                responses.append(.deleteRange(deleteOp(d)))
            case .txn(let nested):
                var inner = executePath(nested, path, &at)
                inner.revision = 0  // etcd leaves a nested txn's header empty
                responses.append(.txn(inner))
            }
        }
        return TxnResponse(revision: writeReadRevision, succeeded: ok, responses: responses)
    }

    private func applyTxn(_ t: TxnRequest) -> Result<TxnResponse, KVError> {
        var p: [Bool] = []
        path(t, at: currentRevision, into: &p)
        var at = 0
        do { try checkPath(t, p, &at, revision: currentRevision) } catch { return .failure(error) }
        beginWrite()
        at = 0
        var resp = executePath(t, p, &at)
        endWrite()
        resp.revision = currentRevision
        return .success(resp)
    }

    /// A txn with ranges only: served as a read, no log entry, no revision.
    func readOnlyTxn(_ t: TxnRequest) throws(KVError) -> TxnResponse {
        var p: [Bool] = []
        path(t, at: currentRevision, into: &p)
        var at = 0
        try checkPath(t, p, &at, revision: currentRevision)
        at = 0
        return try readOnlyExecute(t, p, &at)
    }

    private func readOnlyExecute(_ t: TxnRequest, _ path: [Bool], _ at: inout Int) throws(KVError) -> TxnResponse {
        let ok = path[at]
        at += 1
        var responses: [ResponseOp] = []
        for op in ok ? t.success : t.failure {
            switch op {
            case .range(let q): responses.append(.range(try range(q, current: currentRevision)))
            case .txn(let nested):
                var inner = try readOnlyExecute(nested, path, &at)
                inner.revision = 0  // etcd leaves a nested txn's header empty
                responses.append(.txn(inner))
            case .put, .deleteRange: break
            }
        }
        return TxnResponse(revision: currentRevision, succeeded: ok, responses: responses)
    }

    // MARK: Compaction

    private func applyCompact(_ r: CompactionRequest) -> Result<CompactionResponse, KVError> {
        if r.revision <= compactMainRevision { return .failure(.compacted) }
        if r.revision > currentRevision { return .failure(.futureRevision) }
        compact(at: r.revision)
        return .success(CompactionResponse(revision: currentRevision))
    }

    /// Snapshot walks in progress; while any runs, compaction only moves the compacted
    /// revision and leaves removing old versions for later (`endSnapshot`), so the walk sees
    /// every version it needs. Reads cannot tell: below the compacted revision they are
    /// refused, at or above it the removable versions are never the answer.
    private var snapshotsInProgress = 0
    private var deferredCompaction: Int64?

    func beginSnapshot() { snapshotsInProgress += 1 }

    func endSnapshot() {
        snapshotsInProgress -= 1
        if snapshotsInProgress == 0, let rev = deferredCompaction {
            deferredCompaction = nil
            removeCompacted(at: rev)
        }
    }

    /// Compacts at `revision` (etcd's store.Compact, applied at once rather than in the background).
    func compact(at revision: Int64) {
        compactMainRevision = revision
        hub.compacted(at: revision)
        if snapshotsInProgress > 0 {
            deferredCompaction = revision
        } else {
            removeCompacted(at: revision)
        }
    }

    /// etcd's keyIndex.compact for every key: keep the newest version at or below `revision`
    /// (unless it is a tombstone, which goes with everything before it) and everything after.
    /// Only keys written below `revision` since the previous compaction can have anything to
    /// drop, and the history lists exactly those, so the work is proportional to the revisions
    /// compacted, not to the number of keys.
    private func removeCompacted(at revision: Int64) {
        var lo = 0, hi = history.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if history[mid].main < revision { lo = mid + 1 } else { hi = mid }
        }
        var freed: Int64 = 0
        var seen = Set<ObjectIdentifier>()
        for entry in history[..<lo] {
            let record = entry.record
            guard seen.insert(ObjectIdentifier(record)).inserted,
                  let i = record.versionIndex(atOrBefore: revision) else { continue }
            let cut = record.versions[i].tombstone ? i + 1 : i
            if cut > 0 {
                for v in record.versions[..<cut] {
                    freed += Int64(record.key.count + v.value.count) + Self.versionOverhead
                }
                record.versions.removeFirst(cut)
            }
            if record.versions.isEmpty, index.find(record.key) === record { index.remove(record) }
        }
        byteEstimate -= freed
        // History older than the compacted revision can never be asked for again.
        if lo > 0 { history.removeSubrange(..<lo) }
    }

    // MARK: Leases

    private func applyLeaseGrant(id: Int64, ttl: Int64) -> Result<LeaseGrantResponse, KVError> {
        if id == 0 { return .failure(.leaseNotFound) }
        if ttl > maxLeaseTTL { return .failure(.leaseTTLTooLarge) }
        if leases[id] != nil { return .failure(.leaseExists) }
        let granted = max(ttl, minLeaseTTL)
        leases[id] = Lease(id: id, ttl: granted, expiry: deadline(ttl: granted))
        byteEstimate += Self.leaseOverhead
        return .success(LeaseGrantResponse(revision: currentRevision, id: id, ttl: granted))
    }

    /// Deletes every attached key in ONE revision (sorted, as etcd does), then the lease.
    private func applyLeaseRevoke(id: Int64) -> Result<LeaseRevokeResponse, KVError> {
        guard let lease = leases[id] else { return .failure(.leaseNotFound) }
        let keys = lease.keys.map(\.bytes).sorted { compareBytes($0, $1) < 0 }
        beginWrite()
        for key in keys {
            if let record = index.find(key) { writeDelete(record) }
        }
        endWrite()
        leases[id] = nil
        byteEstimate -= Self.leaseOverhead
        return .success(LeaseRevokeResponse(revision: currentRevision))
    }

    func deadline(ttl: Int64) -> UInt64 {
        clock() &+ UInt64(clamping: ttl) &* 1_000_000_000
    }

    /// Node-local: pushes every lease's deadline to now + TTL (after start-up, as etcd's
    /// lessor does when it is promoted).
    func renewAllLeases() {
        let now = clock()
        for lease in leases.values { lease.expiry = now &+ UInt64(clamping: lease.ttl) &* 1_000_000_000 }
    }

    // MARK: Alarms

    private func applyAlarm(_ r: AlarmRequest) -> AlarmResponse {
        switch r.action {
        case .get:
            break
        case .activate:
            if r.alarm != .none {
                let member = AlarmMember(memberID: r.memberID, alarm: r.alarm)
                if !alarms.contains(member) { alarms.append(member) }
                return AlarmResponse(revision: currentRevision, alarms: [member])
            }
        case .deactivate:
            let removed = alarms.filter { Self.matches($0, r) }
            alarms.removeAll { Self.matches($0, r) }
            return AlarmResponse(revision: currentRevision, alarms: removed)
        }
        return AlarmResponse(revision: currentRevision, alarms: alarms)
    }

    static func matches(_ a: AlarmMember, _ r: AlarmRequest) -> Bool {
        (r.memberID == 0 || a.memberID == r.memberID) && (r.alarm == .none || a.alarm == r.alarm)
    }

    // MARK: Hash

    /// Deterministic CRC-32C over the versions visible up to `revision` (what survives
    /// compaction, whether or not old versions were physically removed yet), in key order:
    /// equal states give equal hashes, which is what HashKV is for.
    func hash(upTo revision: Int64) -> UInt32 {
        var crc: UInt32 = 0
        var scratch = [UInt8]()
        scratch.reserveCapacity(64)
        index.forEachRecord { record in
            let versions = record.versions
            var start = 0
            if compactMainRevision > 0, let i = record.versionIndex(atOrBefore: compactMainRevision) {
                start = versions[i].tombstone ? i + 1 : i
            }
            var j = start
            while j < versions.count, versions[j].main <= revision {
                let v = versions[j]
                scratch.removeAll(keepingCapacity: true)
                withUnsafeBytes(of: v.main.littleEndian) { scratch.append(contentsOf: $0) }
                withUnsafeBytes(of: v.sub.littleEndian) { scratch.append(contentsOf: $0) }
                scratch.append(v.tombstone ? 1 : 0)
                crc = CRC32C.update(crc, scratch)
                crc = CRC32C.update(crc, record.key)
                crc = CRC32C.update(crc, v.value)
                j += 1
            }
        }
        return crc
    }
}
