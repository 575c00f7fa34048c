// The KV engine's public face: validates requests, logs mutations as commands (group commit), applies them, serves reads.
import Dispatch
import PierStorage

/// etcd-compatible MVCC store.
///
/// Threads: reads (`range`, `status`, lease queries, `Watcher.drain`) run on the caller's
/// thread and take a shared lock briefly; they never wait for an fsync. Writes are
/// callback-based: a request is validated on the caller's thread (a validation error, a full
/// queue or a quota refusal completes immediately, ON THE CALLER'S THREAD); otherwise it is
/// encoded as a `Command`, appended to the write-ahead log by the single writer thread,
/// fsynced together with every other pending write (group commit), applied in log order, and
/// only then completed, ON THE WRITER THREAD. Completions must be quick and must not block
/// (hop to your event loop and return). A success means the change is on disk.
///
/// Without a data directory the store is memory-only: writes apply and complete on the
/// caller's thread.
public final class KVStore: @unchecked Sendable {  // `state` guarded by `lock`; `hub` by its own mutex; `closed`/`memoryIndex`/snapshot bookkeeping by `control`
    public let options: KVOptions
    let lock = ReadWriteLock()
    let state: KVStateMachine
    let hub: WatchHub

    struct WriteContext: Sendable {
        let command: Command
        let complete: @Sendable (Result<CommandResult, KVError>) -> Void
    }

    /// Set once at the end of init (a `var` only because its closures capture `self`).
    private var committer: GroupCommitter<WriteContext>?
    private let snapshotPath: String?
    private let control = Mutex()
    private var closed = false
    private var memoryIndex: UInt64 = 0
    /// Applied index covered by the snapshot file on disk, and that file's size.
    private var snapshotIndex: UInt64 = 0
    private var snapshotBytes: Int64 = 0
    /// Snapshot index whose older WAL segments may go (taken by the writer thread).
    private var pendingTruncation: UInt64?
    /// Serializes snapshot writers (automatic and requested) so they never share the temp file.
    private let snapshotMutex = Mutex()
    /// Automatic snapshots run here, off the writer thread, so writes keep flowing.
    private let snapshotQueue = DispatchQueue(label: "pier-kv-snapshot", qos: .utility)
    private var snapshotRunning = false

    /// Opens the store: loads the snapshot, replays the WAL after it (cutting a torn tail),
    /// renews every lease's deadline, then starts the writer thread.
    public init(options: KVOptions = KVOptions()) throws(KVError) {
        self.options = options
        hub = WatchHub(bufferLimit: options.watcherBufferLimit, bufferByteLimit: options.watcherBufferBytes)
        state = KVStateMachine(hub: hub, minLeaseTTL: options.minLeaseTTL, clock: options.clock)
        guard let dir = options.dataDirectory else {
            snapshotPath = nil
            state.renewAllLeases()
            return
        }
        let snap = dir + "/kv.snap"
        snapshotPath = snap
        let wal: WriteAheadLog
        do {
            try FileIO.createDirectory(dir)
            if FileIO.fileExists(snap) {
                try SnapshotCodec.read(try FileIO.readAll(snap), into: state)
            }
            let s = state.appliedIndex
            snapshotIndex = s
            snapshotBytes = FileIO.fileSize(snap)
            wal = try WriteAheadLog(directory: dir + "/wal", firstIndex: s + 1,
                                    options: .init(segmentBytes: options.walSegmentBytes,
                                                   fsync: !options.unsafeNoFsync))
            if wal.lastIndex < s {
                // The snapshot is newer than the whole log (restored from a snapshot): start after it.
                try wal.reset(nextIndex: s + 1)
            } else if wal.firstIndex > s + 1 {
                throw KVError.corrupt("log starts at \(wal.firstIndex) but the snapshot ends at \(s)")
            }
            let machine = state
            try wal.forEach(from: s + 1) { index, payload in
                _ = machine.apply(try Command.decode(payload), index: index)
            }
        } catch {
            throw Self.kvError(error)
        }
        state.renewAllLeases()
        committer = GroupCommitter<WriteContext>(
            log: wal, maxPending: options.maxPendingWrites, name: "pier-kv-writer",
            committed: { [weak self] batch in self?.applyBatch(batch) },
            failed: { contexts, error in
                let e = Self.kvError(error)
                for c in contexts { c.complete(.failure(e)) }
            },
            afterBatch: { [weak self] log in self?.afterBatch(log) })
    }

    deinit {
        // Dropped without close(): stop the writer without waiting here, since the last
        // reference may go away on the writer thread itself (inside a completion).
        if let committer { DispatchQueue.global().async { committer.close() } }
    }

    /// Completes what is queued, stops the writer; later writes fail with `.stopped`.
    public func close() {
        control.withLock { closed = true }
        committer?.close()
        // Let a background snapshot finish so the files are quiet once close returns.
        snapshotQueue.sync {}
    }

    static func kvError(_ error: any Error) -> KVError {
        if let e = error as? KVError { return e }
        if let e = error as? StorageError {
            switch e {
            case .closed: return .stopped
            case .overloaded: return .tooManyRequests
            case .corrupt(let detail): return .corrupt(detail)
            case .io: return .io(e.description)
            }
        }
        return .io("\(error)")
    }

    // MARK: - Reads

    public var currentRevision: Int64 { lock.withReadLock { state.currentRevision } }
    public var compactedRevision: Int64 { lock.withReadLock { state.compactedRevision } }

    public func range(_ request: RangeRequest) throws(KVError) -> RangeResponse {
        try RequestChecks.check(request)
        return try lock.withReadLock { () throws(KVError) -> RangeResponse in
            try state.range(request, current: state.currentRevision)
        }
    }

    public func status() -> KVStatus {
        lock.withReadLock {
            KVStatus(revision: state.currentRevision, compactRevision: state.compactedRevision,
                     raftIndex: state.appliedIndex, dbSize: state.byteEstimate, dbSizeInUse: state.byteEstimate,
                     keyCount: state.liveKeyCount, leaseCount: Int64(state.leases.count), alarms: state.alarms)
        }
    }

    /// Hash of the MVCC state up to `revision` (0: current), for HashKV.
    public func hashKV(revision: Int64 = 0) throws(KVError) -> HashKVResponse {
        try lock.withReadLock { () throws(KVError) -> HashKVResponse in
            let current = state.currentRevision
            let rev = revision == 0 ? current : revision
            if rev > current { throw .futureRevision }
            if rev < state.compactMainRevision { throw .compacted }
            return HashKVResponse(revision: current, hash: state.hash(upTo: rev),
                                  compactRevision: state.compactedRevision, hashRevision: rev)
        }
    }

    /// Throws `.leaseNotFound` (etcd's server answers that with TTL -1 rather than an error).
    public func leaseTimeToLive(id: Int64, keys: Bool) throws(KVError) -> LeaseTimeToLiveResponse {
        try lock.withReadLock { () throws(KVError) -> LeaseTimeToLiveResponse in
            guard let lease = state.leases[id] else { throw .leaseNotFound }
            let now = options.clock()
            let remaining = lease.expiry > now ? Int64((lease.expiry - now) / 1_000_000_000) : 0
            let list = keys ? lease.keys.map(\.bytes).sorted { compareBytes($0, $1) < 0 } : []
            return LeaseTimeToLiveResponse(revision: state.currentRevision, id: id, ttl: remaining,
                                           grantedTTL: lease.ttl, keys: list)
        }
    }

    public func leaseLeases() -> LeaseLeasesResponse {
        lock.withReadLock {
            LeaseLeasesResponse(revision: state.currentRevision, leases: state.leases.keys.sorted())
        }
    }

    /// Renews a lease on this node's clock (not a command: etcd does not replicate renewals
    /// either). Throws `.leaseNotFound` for an unknown or already expired lease (etcd's server
    /// answers a keep-alive for it with TTL 0 rather than an error).
    public func leaseKeepAlive(id: Int64) throws(KVError) -> LeaseKeepAliveResponse {
        try lock.withWriteLock { () throws(KVError) -> LeaseKeepAliveResponse in
            guard let lease = state.leases[id], lease.expiry > options.clock() else { throw .leaseNotFound }
            lease.expiry = state.deadline(ttl: lease.ttl)
            return LeaseKeepAliveResponse(revision: state.currentRevision, id: id, ttl: lease.ttl)
        }
    }

    /// Leases whose TTL ran out on this node's monotonic clock, soonest first. The server
    /// proposes `leaseRevoke` for each (expiry is a command so replicas never expire leases
    /// on their own clocks).
    public func expiredLeases(limit: Int = 1000) -> [Int64] {
        lock.withReadLock {
            let now = options.clock()
            let expired = state.leases.values.filter { $0.expiry <= now }
            return expired.sorted { ($0.expiry, $0.id) < ($1.expiry, $1.id) }.prefix(limit).map(\.id)
        }
    }

    public func alarms() -> [AlarmMember] {
        lock.withReadLock { state.alarms }
    }

    // MARK: - Writes

    public func put(_ request: PutRequest, completion: @escaping @Sendable (Result<PutResponse, KVError>) -> Void) {
        do { try RequestChecks.check(request) } catch { return completion(.failure(error)) }
        propose(.put(request)) { completion($0.flatMap { r in
            if case .put(let p) = r { return .success(p) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    public func deleteRange(_ request: DeleteRangeRequest,
                            completion: @escaping @Sendable (Result<DeleteRangeResponse, KVError>) -> Void) {
        do { try RequestChecks.check(request) } catch { return completion(.failure(error)) }
        propose(.deleteRange(request)) { completion($0.flatMap { r in
            if case .deleteRange(let d) = r { return .success(d) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    /// A txn with only ranges is answered at once on the caller's thread, without the log
    /// and without a new revision (as etcd serves read-only txns).
    public func txn(_ request: TxnRequest, completion: @escaping @Sendable (Result<TxnResponse, KVError>) -> Void) {
        do { try RequestChecks.check(request, maxTxnOps: options.maxTxnOps) } catch { return completion(.failure(error)) }
        if RequestChecks.isReadOnly(request) {
            let result = Result { () throws(KVError) -> TxnResponse in
                try lock.withReadLock { () throws(KVError) -> TxnResponse in try state.readOnlyTxn(request) }
            }
            return completion(result)
        }
        propose(.txn(request)) { completion($0.flatMap { r in
            if case .txn(let t) = r { return .success(t) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    public func compact(_ request: CompactionRequest,
                        completion: @escaping @Sendable (Result<CompactionResponse, KVError>) -> Void) {
        propose(.compact(request)) { completion($0.flatMap { r in
            if case .compact(let c) = r { return .success(c) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    /// `id == 0` picks a fresh positive id (before logging, so every replica applies the same one).
    public func leaseGrant(_ request: LeaseGrantRequest,
                           completion: @escaping @Sendable (Result<LeaseGrantResponse, KVError>) -> Void) {
        if request.ttl > maxLeaseTTL { return completion(.failure(.leaseTTLTooLarge)) }
        var id = request.id
        if id == 0 {
            id = lock.withReadLock {
                var candidate: Int64
                repeat { candidate = Int64.random(in: 1...Int64.max) } while state.leases[candidate] != nil
                return candidate
            }
        }
        propose(.leaseGrant(id: id, ttl: request.ttl)) { completion($0.flatMap { r in
            if case .leaseGrant(let g) = r { return .success(g) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    /// Deletes the lease's keys in one revision. Also how the server applies lease expiry.
    public func leaseRevoke(id: Int64, completion: @escaping @Sendable (Result<LeaseRevokeResponse, KVError>) -> Void) {
        propose(.leaseRevoke(id: id)) { completion($0.flatMap { r in
            if case .leaseRevoke(let l) = r { return .success(l) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    /// `.get` completes at once on the caller's thread; activate/deactivate are commands.
    public func alarm(_ request: AlarmRequest, completion: @escaping @Sendable (Result<AlarmResponse, KVError>) -> Void) {
        if request.action == .get {
            let response = lock.withReadLock {
                AlarmResponse(revision: state.currentRevision,
                              alarms: state.alarms.filter { KVStateMachine.matches($0, request) })
            }
            return completion(.success(response))
        }
        propose(.alarm(request)) { completion($0.flatMap { r in
            if case .alarm(let a) = r { return .success(a) }
            return .failure(.corrupt("unexpected result"))
        }) }
    }

    /// Logs a command and applies it once durable; the general entry for replicated mutations.
    public func propose(_ command: Command, completion: @escaping @Sendable (Result<CommandResult, KVError>) -> Void) {
        if control.withLock({ closed }) { return completion(.failure(.stopped)) }
        if options.quotaBackendBytes > 0 {
            let cost = RequestChecks.cost(command)
            if cost > 0 {
                let (over, alarmed) = lock.withReadLock {
                    (state.byteEstimate + cost > options.quotaBackendBytes, state.hasNoSpaceAlarm)
                }
                if over {
                    // etcd raises NOSPACE (itself a replicated change) and refuses the write.
                    if !alarmed {
                        propose(.alarm(AlarmRequest(action: .activate, memberID: options.memberID, alarm: .noSpace))) { _ in }
                    }
                    return completion(.failure(.noSpace))
                }
            }
        }
        guard let committer else {
            let result = lock.withWriteLock { () -> Result<CommandResult, KVError> in
                let index = control.withLock { memoryIndex += 1; return memoryIndex }
                return state.apply(command, index: index)
            }
            fireNotifications()
            return completion(result)
        }
        do {
            try committer.submit(command.encoded(), context: WriteContext(command: command, complete: completion))
        } catch {
            completion(.failure(Self.kvError(error)))
        }
    }

    /// Writer thread: the batch is on disk; apply it in order, a slice at a time under the
    /// exclusive lock (so readers wait at most one slice, not a whole large batch), waking
    /// watchers and completing that slice's callers with no lock held.
    private func applyBatch(_ batch: [(index: UInt64, context: WriteContext)]) {
        let slice = 128
        var results: [Result<CommandResult, KVError>] = []
        results.reserveCapacity(min(batch.count, slice))
        var start = 0
        while start < batch.count {
            let end = min(start + slice, batch.count)
            results.removeAll(keepingCapacity: true)
            lock.withWriteLock {
                for entry in batch[start..<end] {
                    results.append(state.apply(entry.context.command, index: entry.index))
                }
            }
            fireNotifications()
            for (entry, result) in zip(batch[start..<end], results) { entry.context.complete(result) }
            start = end
        }
    }

    private func fireNotifications() {
        for notify in hub.takeNotifications() { notify() }
    }

    /// Writer thread, after each batch: start a snapshot when due (in the background), and
    /// drop WAL segments a finished snapshot covers. Due means `snapshotCount` commands since
    /// the last one (etcd's rule) and a log at least half the last snapshot's size, so a large
    /// state is not rewritten over and over for a little new data: snapshot work stays within
    /// about twice the bytes written, and replay at start-up within about half the state.
    private func afterBatch(_ log: WriteAheadLog) {
        let applied = lock.withReadLock { state.appliedIndex }
        let logBytes = log.totalBytes
        let start = control.withLock { () -> Bool in
            guard !closed, !snapshotRunning, applied >= snapshotIndex + options.snapshotCount,
                  logBytes >= snapshotBytes / 2 else { return false }
            snapshotRunning = true
            return true
        }
        if start {
            snapshotQueue.async { [weak self] in
                guard let self else { return }
                _ = try? self.writeSnapshotFile()
                self.control.withLock { self.snapshotRunning = false }
            }
        }
        if let upTo = control.withLock({ () -> UInt64? in defer { pendingTruncation = nil }; return pendingTruncation }) {
            try? log.removeSegments(before: upTo + 1)
        }
    }

    /// Writes the state to the data directory's snapshot file now (atomically, without
    /// stopping writers for long; see SnapshotCodec.write). The WAL it covers is dropped after
    /// the next write batch. Returns the applied index it covers.
    @discardableResult
    public func writeSnapshotFile() throws(KVError) -> UInt64 {
        guard let snapshotPath else { return lock.withReadLock { state.appliedIndex } }
        do {
            return try snapshotMutex.withLock { () throws -> UInt64 in
                var covered: UInt64 = 0
                var written: Int64 = 0
                try FileIO.atomicReplace(snapshotPath) { sink in
                    covered = try SnapshotCodec.write(state, lock: lock) { chunk in
                        written += Int64(chunk.count)
                        try chunk.withUnsafeBytes { try sink($0) }
                    }
                }
                control.withLock {
                    snapshotIndex = covered
                    snapshotBytes = written
                    pendingTruncation = covered
                }
                return covered
            }
        } catch {
            throw Self.kvError(error)
        }
    }

    // MARK: - Snapshots

    /// A consistent full snapshot of the state (what Maintenance.Snapshot streams). Built
    /// without stopping writers for long (see SnapshotCodec.write).
    public func snapshot() throws(KVError) -> [UInt8] {
        try snapshot(keysPerLock: SnapshotCodec.defaultKeysPerLock)
    }

    func snapshot(keysPerLock: Int) throws(KVError) -> [UInt8] {
        do {
            var out: [UInt8] = []
            try SnapshotCodec.write(state, lock: lock, keysPerLock: keysPerLock) { out.append(contentsOf: $0) }
            return out
        } catch {
            throw Self.kvError(error)
        }
    }

    /// Installs snapshot bytes as the whole state of `dataDirectory` (its WAL is discarded),
    /// so a store opened there starts from the snapshot.
    public static func restore(snapshot: [UInt8], into dataDirectory: String) throws(KVError) {
        // Check the bytes decode before replacing anything.
        let probe = KVStateMachine(hub: WatchHub(bufferLimit: 1), minLeaseTTL: 0, clock: { 0 })
        try SnapshotCodec.read(snapshot, into: probe)
        do {
            try FileIO.createDirectory(dataDirectory)
            let walDir = dataDirectory + "/wal"
            if FileIO.fileExists(walDir) {
                for name in try FileIO.listDirectory(walDir) where name.hasSuffix(".wal") {
                    try FileIO.remove(walDir + "/" + name)
                }
                try FileIO.syncDirectory(walDir)
            }
            try FileIO.atomicReplace(dataDirectory + "/kv.snap", contents: snapshot)
        } catch {
            throw kvError(error)
        }
    }

    // MARK: - Watch

    /// Registers a watcher. `onEventsAvailable` is called (from any thread, never under the
    /// store's locks) when the watcher goes from nothing-to-drain to something-to-drain; the
    /// consumer then calls `drain(maxEvents:)` as its flow control allows, and again while
    /// `hasMore` is true. A start revision at or below the current one replays history first;
    /// below the compacted revision the first drain reports the cancellation.
    public func watch(_ request: WatchRequest,
                      onEventsAvailable: @escaping @Sendable () -> Void) throws(KVError) -> Watcher {
        if control.withLock({ closed }) { throw .stopped }
        let w = lock.withReadLock {
            hub.register(request, store: self, currentRevision: state.currentRevision,
                         onEventsAvailable: onEventsAvailable)
        }
        fireNotifications()
        return w
    }

    func drain(_ w: Watcher, maxEvents: Int) -> WatchBatch {
        lock.withReadLock { hub.drain(w, maxEvents: maxEvents, state: state) }
    }
}

// MARK: - async conveniences

extension KVStore {
    public func put(_ request: PutRequest) async throws(KVError) -> PutResponse {
        try await Self.await { put(request, completion: $0) }
    }

    public func deleteRange(_ request: DeleteRangeRequest) async throws(KVError) -> DeleteRangeResponse {
        try await Self.await { deleteRange(request, completion: $0) }
    }

    public func txn(_ request: TxnRequest) async throws(KVError) -> TxnResponse {
        try await Self.await { txn(request, completion: $0) }
    }

    public func compact(_ request: CompactionRequest) async throws(KVError) -> CompactionResponse {
        try await Self.await { compact(request, completion: $0) }
    }

    public func leaseGrant(_ request: LeaseGrantRequest) async throws(KVError) -> LeaseGrantResponse {
        try await Self.await { leaseGrant(request, completion: $0) }
    }

    public func leaseRevoke(id: Int64) async throws(KVError) -> LeaseRevokeResponse {
        try await Self.await { leaseRevoke(id: id, completion: $0) }
    }

    public func alarm(_ request: AlarmRequest) async throws(KVError) -> AlarmResponse {
        try await Self.await { alarm(request, completion: $0) }
    }

    private static func await<T: Sendable>(
        _ start: (@escaping @Sendable (Result<T, KVError>) -> Void) -> Void
    ) async throws(KVError) -> T {
        let result: Result<T, KVError> = await withCheckedContinuation { continuation in
            start { continuation.resume(returning: $0) }
        }
        return try result.get()
    }
}
