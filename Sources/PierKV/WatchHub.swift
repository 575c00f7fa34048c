// The watch hub: synced watchers get events pushed as revisions are applied; a watcher that falls behind catches up from history.
//
// Like etcd's watchableStore, watchers are "synced" (receive each new revision as it is
// applied) or "unsynced" (behind; read old revisions from the history). Unlike etcd there is
// no background sync loop: an unsynced watcher catches up when its consumer drains it, so the
// work is paced by the consumer's own flow control and a slow consumer costs a bounded buffer.
//
// Locking: everything here is guarded by `mutex`. Methods that read the MVCC state (publish,
// compacted, fill) are called with the store's ReadWriteLock held, always taken before `mutex`.

final class WatchHub: @unchecked Sendable {  // all state guarded by `mutex`
    let mutex = Mutex()
    let bufferLimit: Int
    /// Bytes (keys and values, previous values included) a watcher may hold before it falls
    /// back to history: events share value storage with the store, but once a compaction
    /// drops a version only the watcher's buffer keeps it alive.
    let bufferByteLimit: Int
    /// Bound on history entries examined per drain, so one drain never holds the locks long.
    let scanLimit = 65_536

    private var nextID: Int64 = 1
    private var syncedByKey: [KeyBytes: [Watcher]] = [:]
    private var syncedRanges: [Watcher] = []
    private var unsynced: [Int64: Watcher] = [:]
    private var syncedCount = 0
    /// Callbacks to run once the store has released its locks.
    private var notifications: [@Sendable () -> Void] = []

    init(bufferLimit: Int, bufferByteLimit: Int = 16 << 20) {
        self.bufferLimit = max(1, bufferLimit)
        self.bufferByteLimit = max(1, bufferByteLimit)
    }

    /// Takes the callbacks due; the caller runs them outside every lock.
    func takeNotifications() -> [@Sendable () -> Void] {
        mutex.withLock {
            if notifications.isEmpty { return [] }
            defer { notifications.removeAll() }
            return notifications
        }
    }

    // MARK: Registration (store lock held, shared)

    func register(_ request: WatchRequest, store: KVStore, currentRevision: Int64,
                  onEventsAvailable: @escaping @Sendable () -> Void) -> Watcher {
        mutex.withLock {
            let id = nextID
            nextID += 1
            let start = request.startRevision
            let synced = start <= 0 || start > currentRevision
            let minRev = synced ? max(currentRevision + 1, start) : start
            let w = Watcher(id: id, request: request, minRevision: minRev, store: store,
                            onEventsAvailable: onEventsAvailable)
            if synced {
                addSynced(w)
            } else {
                w.synced = false
                w.nextRevision = start
                unsynced[id] = w
                w.signalled = true
                notifications.append(onEventsAvailable)
            }
            return w
        }
    }

    func cancel(_ w: Watcher) {
        mutex.withLock {
            guard !w.cancelled else { return }
            w.cancelled = true
            if w.synced { removeSynced(w) } else { unsynced[w.id] = nil }
            w.buffer.removeAll()
            w.head = 0
            w.pendingBytes = 0
        }
    }

    private func addSynced(_ w: Watcher) {
        w.synced = true
        syncedCount += 1
        if case .single = w.end {
            syncedByKey[KeyBytes(w.key), default: []].append(w)
        } else {
            syncedRanges.append(w)
        }
    }

    private func removeSynced(_ w: Watcher) {
        syncedCount -= 1
        if case .single = w.end {
            let k = KeyBytes(w.key)
            syncedByKey[k]?.removeAll { $0 === w }
            if syncedByKey[k]?.isEmpty == true { syncedByKey[k] = nil }
        } else {
            syncedRanges.removeAll { $0 === w }
        }
    }

    // MARK: Publishing (store lock held, exclusive)

    /// Delivers one revision's changes to the synced watchers that match.
    func publish(_ changes: [(record: KeyRecord, position: Int)], revision: Int64, state: KVStateMachine) {
        mutex.withLock {
            guard syncedCount > 0 else { return }
            for change in changes {
                if !syncedByKey.isEmpty, let exact = syncedByKey[KeyBytes(change.record.key)] {
                    for w in exact { deliver(change.record, change.position, revision: revision, to: w) }
                }
                for w in syncedRanges where w.end.contains(change.record.key, start: w.key) {
                    deliver(change.record, change.position, revision: revision, to: w)
                }
            }
        }
    }

    private func deliver(_ record: KeyRecord, _ position: Int, revision: Int64, to w: Watcher) {
        guard w.synced, !w.cancelled, revision >= w.minRevision else { return }
        guard let event = w.event(record, position) else { return }
        if isFull(w) {
            // Too far behind: drop this revision's partial events and read them (and what
            // follows) from history when the consumer drains again.
            while w.buffer.count > w.head, w.buffer[w.buffer.count - 1].kv.modRevision == revision {
                w.pendingBytes -= Watcher.size(w.buffer.removeLast())
            }
            removeSynced(w)
            w.synced = false
            w.nextRevision = revision
            unsynced[w.id] = w
            signal(w)
            return
        }
        w.append(event)
        signal(w)
    }

    private func isFull(_ w: Watcher) -> Bool {
        w.pendingCount >= bufferLimit || w.pendingBytes >= bufferByteLimit
    }

    private func signal(_ w: Watcher) {
        if !w.signalled {
            w.signalled = true
            notifications.append(w.onEventsAvailable)
        }
    }

    /// Wakes unsynced watchers whose history is gone, so their consumers see the cancellation.
    func compacted(at revision: Int64) {
        mutex.withLock {
            for w in unsynced.values where w.nextRevision < revision {
                signal(w)
            }
        }
    }

    // MARK: Draining (store lock held, shared)

    func drain(_ w: Watcher, maxEvents: Int, state: KVStateMachine) -> WatchBatch {
        mutex.withLock {
            let current = state.currentRevision
            if w.cancelled {
                return WatchBatch(events: [], revision: current, compactRevision: w.compactRevision)
            }
            if !w.synced && !isFull(w) { fill(w, state: state) }
            if w.cancelled {
                return WatchBatch(events: [], revision: current, compactRevision: w.compactRevision)
            }
            let limit = max(1, maxEvents)
            var end = w.head
            while end < w.buffer.count {
                let rev = w.buffer[end].kv.modRevision
                var next = end
                while next < w.buffer.count, w.buffer[next].kv.modRevision == rev { next += 1 }
                if next - w.head > limit && end > w.head { break }
                end = next
                if end - w.head >= limit { break }
            }
            let events = Array(w.buffer[w.head..<end])
            for e in events { w.pendingBytes -= Watcher.size(e) }
            w.head = end
            if w.head == w.buffer.count {
                w.buffer.removeAll(keepingCapacity: w.buffer.capacity <= 4 * bufferLimit)
                w.head = 0
            } else if w.head >= bufferLimit {
                w.buffer.removeSubrange(..<w.head)
                w.head = 0
            }
            let hasMore = w.pendingCount > 0 || !w.synced
            if !hasMore { w.signalled = false }
            return WatchBatch(events: events, revision: current, hasMore: hasMore)
        }
    }

    /// Reads the watcher's missed revisions from history into its buffer, whole revisions at
    /// a time; becomes synced again once it reaches the current revision.
    private func fill(_ w: Watcher, state: KVStateMachine) {
        if w.nextRevision < state.compactMainRevision {
            // etcd cancels a watcher whose start is below the compacted revision.
            w.cancelled = true
            w.compactRevision = state.compactMainRevision
            unsynced[w.id] = nil
            w.buffer.removeAll()
            w.head = 0
            w.pendingBytes = 0
            return
        }
        let history = state.history
        var lo = 0, hi = history.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if history[mid].main < w.nextRevision { lo = mid + 1 } else { hi = mid }
        }
        var i = lo
        var scanned = 0
        while i < history.count {
            let rev = history[i].main
            if isFull(w) || scanned >= scanLimit {
                w.nextRevision = rev
                return
            }
            while i < history.count, history[i].main == rev {
                let entry = history[i]
                if w.end.contains(entry.record.key, start: w.key),
                   let position = entry.record.versionIndex(main: rev, sub: entry.sub),
                   let event = w.event(entry.record, position) {
                    w.append(event)
                }
                i += 1
                scanned += 1
            }
        }
        unsynced[w.id] = nil
        w.nextRevision = state.currentRevision + 1
        addSynced(w)
    }
}

/// A registered watch. Pull-based: the hub buffers (a bounded number of) events and calls
/// `onEventsAvailable` when there is something to take; the consumer takes events with
/// `drain(maxEvents:)` as its flow control allows, and keeps draining while the batch says
/// `hasMore` (no further callback comes until a drain returns `hasMore == false`).
public final class Watcher: @unchecked Sendable {  // mutable state guarded by the WatchHub's mutex
    public let id: Int64
    let key: [UInt8]
    let end: KeyRangeEnd
    let noPut: Bool
    let noDelete: Bool
    let wantsPrevKV: Bool
    let minRevision: Int64
    let store: KVStore
    let onEventsAvailable: @Sendable () -> Void

    var buffer: [WatchEvent] = []
    var head = 0
    var synced = true
    var nextRevision: Int64 = 0
    var cancelled = false
    var compactRevision: Int64 = 0
    var signalled = false

    init(id: Int64, request: WatchRequest, minRevision: Int64, store: KVStore,
         onEventsAvailable: @escaping @Sendable () -> Void) {
        self.id = id
        self.key = request.key
        self.end = KeyRangeEnd(request.rangeEnd)
        self.noPut = request.noPut
        self.noDelete = request.noDelete
        self.wantsPrevKV = request.prevKV
        self.minRevision = minRevision
        self.store = store
        self.onEventsAvailable = onEventsAvailable
    }

    var pendingBytes = 0
    var pendingCount: Int { buffer.count - head }

    static func size(_ e: WatchEvent) -> Int {
        e.kv.key.count + e.kv.value.count + (e.prevKV.map { $0.key.count + $0.value.count } ?? 0) + 64
    }

    func append(_ event: WatchEvent) {
        buffer.append(event)
        pendingBytes += Self.size(event)
    }

    /// The event for a stored version, or nil when this watcher filters it out.
    func event(_ record: KeyRecord, _ position: Int) -> WatchEvent? {
        let v = record.versions[position]
        if v.tombstone ? noDelete : noPut { return nil }
        var prev: KeyValue?
        if wantsPrevKV, position > 0, !record.versions[position - 1].tombstone {
            prev = record.keyValue(position - 1)
        }
        return WatchEvent(kind: v.tombstone ? .delete : .put, kv: record.keyValue(position), prevKV: prev)
    }

    /// Takes up to `maxEvents` ready events, whole revisions (a single revision larger than
    /// `maxEvents` comes whole). Never blocks on writers beyond a brief shared lock.
    public func drain(maxEvents: Int) -> WatchBatch {
        store.drain(self, maxEvents: maxEvents)
    }

    /// True while the watcher receives new revisions as they happen (etcd sends progress
    /// notifications only to such watchers).
    public var isSynced: Bool { store.hub.mutex.withLock { synced && !cancelled } }

    /// Unregisters; later drains return nothing.
    public func cancel() {
        store.hub.cancel(self)
    }
}
