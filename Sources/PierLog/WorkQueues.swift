// Work queues over topics: records leased one at a time, acked individually, redelivered, then dead-lettered.

import Foundation
import Synchronization

/// A queue is a named reader of a topic. Receiving leases records for a visibility timeout;
/// until then no other receiver gets them. Ack finishes a record; Nack or an expired lease
/// makes it deliverable again; after queue.max.attempts deliveries the record is appended to
/// the dead-letter topic (created on demand with one partition) and counts as done.
///
/// Per partition the queue keeps a durable floor (every offset below it is done, persisted
/// in the metadata store) and, in memory, the records delivered but not done. After a
/// restart delivery resumes at the floor, so unfinished records come again (at-least-once)
/// and attempt counts start over.
public final class WorkQueues: Sendable {
    public struct LeasedRecord: Sendable, Equatable {
        public var partition: Int32
        public var offset: Int64
        public var record: Record
        /// 1 on the first delivery.
        public var attempt: Int32
        public var leaseExpiresMs: Int64
        public var leaseId: UInt64
    }

    public struct LeaseRef: Sendable, Hashable {
        public var partition: Int32
        public var offset: Int64
        public var leaseId: UInt64

        public init(partition: Int32, offset: Int64, leaseId: UInt64) {
            self.partition = partition
            self.offset = offset
            self.leaseId = leaseId
        }
    }

    enum PendingState: Sendable, Equatable {
        case leased(id: UInt64, expiresMs: Int64)
        case ready(atMs: Int64)
        case deadLettering
    }

    struct Pending: Sendable {
        var record: Record
        var attempts: Int32
        var state: PendingState
    }

    struct PartitionState: Sendable {
        var floor: Int64
        var next: Int64
        var persistedFloor: Int64
        var pending: [Int64: Pending] = [:]
        /// How many pending records are in the ready state, so receives skip the scan when none are.
        var readyCount = 0
    }

    struct Queue: Sendable {
        var topic: String
        var name: String
        var partitions: [PartitionState]
        var receivers: [LogWaiter] = []
        var cursor = 0
    }

    struct DeadLetter: Sendable {
        var key: String
        var topic: String
        var queue: String
        var partition: Int32
        var offset: Int64
        var record: Record
        var attempts: Int32
        var deadLetterTopic: String
    }

    private struct EngineRef: @unchecked Sendable {
        // Written once in attach, before any other use; read under the Mutex that holds it.
        weak var engine: LogEngine?
    }

    /// One lock per queue, so receivers of different queues never wait on each other.
    final class QueueBox: Sendable {
        let state: Mutex<Queue>
        init(_ q: Queue) { state = Mutex(q) }
    }

    private let queues = Mutex<[String: QueueBox]>([:])
    private let engineRef = Mutex(EngineRef())
    private let metadata: any LogMetadataStore
    private let clock: @Sendable () -> Int64
    private let nextLease = Atomic<UInt64>(1)
    static let maxPendingPerQueue = 100_000
    public static let defaultVisibilityTimeoutMs: Int64 = 30_000

    init(metadata: any LogMetadataStore, clock: @escaping @Sendable () -> Int64) {
        self.metadata = metadata
        self.clock = clock
    }

    func attach(_ engine: LogEngine) throws { engineRef.withLock { $0.engine = engine } }

    private var engine: LogEngine {
        get throws {
            guard let e = engineRef.withLock({ $0.engine }) else { throw LogError.closed }
            return e
        }
    }

    private static func key(_ topic: String, _ queue: String) -> String { topic + "/" + queue }

    /// Makes sure the queue's state is loaded (floors from the metadata store).
    private func ensureQueue(topic: String, queue: String) throws {
        guard !queue.isEmpty else { throw LogError.invalidArgument("queue name is empty") }
        let k = Self.key(topic, queue)
        if box(k) != nil { return }
        let engine = try self.engine
        let n = try engine.partitionCount(topic)
        var floors: [Int32: Int64] = [:]
        for (key, value) in try metadata.listSync(LogMetadataKeys.queue(topic, queue)) where value.count == 8 {
            let suffix = String(decoding: key.dropFirst(LogMetadataKeys.queue(topic, queue).count), as: UTF8.self)
            if let p = Int32(suffix) { floors[p] = value.withUnsafeBytes { WireBytes.loadLE($0, 0, as: Int64.self) } }
        }
        var parts: [PartitionState] = []
        for p in 0..<n {
            let start = try engine.listOffsets(topic: topic, partitions: [p], spec: .earliest)[0].offset
            let f = max(floors[p] ?? start, start)
            parts.append(PartitionState(floor: f, next: f, persistedFloor: floors[p] ?? -1))
        }
        queues.withLock { qs in
            if qs[k] == nil { qs[k] = QueueBox(Queue(topic: topic, name: queue, partitions: parts)) }
        }
    }

    private func box(_ key: String) -> QueueBox? { queues.withLock { $0[key] } }

    // MARK: receive

    /// Leases up to `maxRecords`, waiting up to `maxWaitMs` when none is available.
    public func receive(topic: String, queue: String, maxRecords: Int, visibilityTimeoutMs: Int64 = WorkQueues.defaultVisibilityTimeoutMs,
                        maxWaitMs: Int64 = 0, completion: @escaping @Sendable (Result<[LeasedRecord], LogError>) -> Void) {
        guard maxRecords > 0, visibilityTimeoutMs > 0 else {
            completion(.failure(.invalidArgument("max records and visibility timeout must be positive")))
            return
        }
        let deadline = clock() + max(0, maxWaitMs)
        attemptReceive(topic: topic, queue: queue, maxRecords: maxRecords, visibilityTimeoutMs: visibilityTimeoutMs,
                       deadline: deadline, realDeadline: DispatchTime.now() + .milliseconds(Int(max(0, maxWaitMs))),
                       completion: completion)
    }

    public func receive(topic: String, queue: String, maxRecords: Int, visibilityTimeoutMs: Int64 = WorkQueues.defaultVisibilityTimeoutMs,
                        maxWaitMs: Int64 = 0) async throws -> [LeasedRecord] {
        try await withCheckedThrowingContinuation { cont in
            receive(topic: topic, queue: queue, maxRecords: maxRecords, visibilityTimeoutMs: visibilityTimeoutMs,
                    maxWaitMs: maxWaitMs) { cont.resume(with: $0) }
        }
    }

    private func attemptReceive(topic: String, queue: String, maxRecords: Int, visibilityTimeoutMs: Int64,
                                deadline: Int64, realDeadline: DispatchTime,
                                completion: @escaping @Sendable (Result<[LeasedRecord], LogError>) -> Void) {
        let got: [LeasedRecord]
        do {
            got = try receiveNow(topic: topic, queue: queue, maxRecords: maxRecords, visibilityTimeoutMs: visibilityTimeoutMs)
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
            return
        }
        if !got.isEmpty || DispatchTime.now() >= realDeadline {
            completion(.success(got))
            return
        }
        // Wait for new records in any partition, a record becoming ready again, or the deadline.
        let gate = LogWaiter(offset: 0) { [self] in
            DispatchQueue.global().async {
                self.attemptReceive(topic: topic, queue: queue, maxRecords: maxRecords, visibilityTimeoutMs: visibilityTimeoutMs,
                                    deadline: deadline, realDeadline: realDeadline, completion: completion)
            }
        }
        let k = Self.key(topic, queue)
        let nexts = box(k)?.state.withLock { q -> [Int64] in
            q.receivers.removeAll { $0.isDone }
            q.receivers.append(gate)
            return q.partitions.map { $0.next }
        } ?? []
        if let engine = try? self.engine {
            for (p, next) in nexts.enumerated() {
                if let log = try? engine.partition(topic, Int32(p)) {
                    try? log.park(LogWaiter(offset: next) { gate.fire() })
                }
            }
        }
        DispatchQueue.global().asyncAfter(deadline: realDeadline) { gate.fire() }
    }

    /// Leases what is available right now.
    func receiveNow(topic: String, queue: String, maxRecords: Int, visibilityTimeoutMs: Int64) throws -> [LeasedRecord] {
        try ensureQueue(topic: topic, queue: queue)
        let engine = try self.engine
        let k = Self.key(topic, queue)
        let now = clock()
        guard let box = box(k) else { return [] }
        return try box.state.withLock { q in
            var out: [LeasedRecord] = []
            let n = q.partitions.count
            func lease(_ p: Int, _ offset: Int64) {
                var pend = q.partitions[p].pending[offset]!
                if case .ready = pend.state { q.partitions[p].readyCount -= 1 }
                pend.attempts += 1
                let id = nextLease.wrappingAdd(1, ordering: .relaxed).oldValue
                pend.state = .leased(id: id, expiresMs: now + visibilityTimeoutMs)
                q.partitions[p].pending[offset] = pend
                out.append(LeasedRecord(partition: Int32(p), offset: offset, record: pend.record, attempt: pend.attempts,
                                        leaseExpiresMs: now + visibilityTimeoutMs, leaseId: id))
            }
            // Redeliveries first, oldest offsets first.
            for i in 0..<n where out.count < maxRecords {
                let p = (q.cursor + i) % n
                guard q.partitions[p].readyCount > 0 else { continue }
                let ready = q.partitions[p].pending.filter {
                    if case .ready(let at) = $0.value.state { return at <= now } else { return false }
                }.keys.sorted()
                for o in ready.prefix(maxRecords - out.count) { lease(p, o) }
            }
            // Then records never delivered, taking partitions in turn.
            var progress = true
            while out.count < maxRecords && progress {
                progress = false
                for i in 0..<n where out.count < maxRecords {
                    let p = (q.cursor + i) % n
                    guard q.partitions.reduce(0, { $0 + $1.pending.count }) < Self.maxPendingPerQueue else { break }
                    let next = q.partitions[p].next
                    let fetched: FetchResult
                    do {
                        fetched = try engine.read(topic: topic, partition: Int32(p), offset: next, maxBytes: 256 * 1024)
                    } catch LogError.offsetOutOfRange(_, _, _, let start, _) where next < start {
                        // Retention removed records never delivered: skip to what remains.
                        q.partitions[p].next = start
                        q.partitions[p].floor = max(q.partitions[p].floor, start)
                        progress = true
                        continue
                    }
                    guard !fetched.records.isEmpty else { continue }
                    var taken = 0
                    var lastTaken = next - 1
                    let want = maxRecords - out.count
                    var records: [(Int64, Record)] = []
                    try Array(fetched.records).withUnsafeBytes { b in
                        try RecordBatchReader.forEachRecord(in: b) { r in
                            if r.offset >= next && records.count < want { records.append((r.offset, r.toRecord())) }
                        }
                    }
                    for (o, rec) in records {
                        q.partitions[p].pending[o] = Pending(record: rec, attempts: 0, state: .ready(atMs: now))
                        q.partitions[p].readyCount += 1
                        lease(p, o)
                        taken += 1
                        lastTaken = o
                    }
                    q.partitions[p].next = records.count < want ? fetched.nextOffset : lastTaken + 1
                    if taken > 0 || q.partitions[p].next > next { progress = true }
                }
            }
            q.cursor = (q.cursor + 1) % max(n, 1)
            return out
        }
    }

    // MARK: ack and nack

    /// Finishes leased records. Leases that expired or were replaced are returned as stale.
    public func ack(topic: String, queue: String, leases: [LeaseRef]) throws -> (acked: Int, stale: [LeaseRef]) {
        try ensureQueue(topic: topic, queue: queue)
        let now = clock()
        let k = Self.key(topic, queue)
        var stale: [LeaseRef] = []
        var acked = 0
        let floors: [(Int32, Int64)] = box(k)?.state.withLock { q in
            var touched = Set<Int>()
            for ref in leases {
                let p = Int(ref.partition)
                guard p >= 0, p < q.partitions.count, let pend = q.partitions[p].pending[ref.offset],
                      case .leased(let id, let expires) = pend.state, id == ref.leaseId, expires >= now else {
                    stale.append(ref)
                    continue
                }
                q.partitions[p].pending[ref.offset] = nil
                touched.insert(p)
                acked += 1
            }
            return touched.compactMap { p in Self.advanceFloor(&q.partitions[p]).map { (Int32(p), $0) } }
        } ?? []
        persist(topic: topic, queue: queue, floors)
        return (acked, stale)
    }

    /// Returns leased records for redelivery after `redeliverAfterMs` (or dead-letters them
    /// when they have used their attempts).
    public func nack(topic: String, queue: String, leases: [LeaseRef], redeliverAfterMs: Int64 = 0) throws -> (nacked: Int, stale: [LeaseRef]) {
        try ensureQueue(topic: topic, queue: queue)
        let engine = try self.engine
        let maxAttempts = Int32(clamping: try engine.topic(topic).config.queueMaxAttempts)
        let dlq = try engine.topic(topic).config.deadLetterTopic(for: topic)
        let now = clock()
        let k = Self.key(topic, queue)
        var stale: [LeaseRef] = []
        var nacked = 0
        var dead: [DeadLetter] = []
        let wake: [LogWaiter] = box(k)?.state.withLock { q in
            for ref in leases {
                let p = Int(ref.partition)
                guard p >= 0, p < q.partitions.count, var pend = q.partitions[p].pending[ref.offset],
                      case .leased(let id, _) = pend.state, id == ref.leaseId else {
                    stale.append(ref)
                    continue
                }
                nacked += 1
                if pend.attempts >= maxAttempts {
                    pend.state = .deadLettering
                    dead.append(DeadLetter(key: k, topic: topic, queue: queue, partition: ref.partition, offset: ref.offset,
                                           record: pend.record, attempts: pend.attempts, deadLetterTopic: dlq))
                } else {
                    pend.state = .ready(atMs: now + max(0, redeliverAfterMs))
                    q.partitions[p].readyCount += 1
                }
                q.partitions[p].pending[ref.offset] = pend
            }
            defer { q.receivers = [] }
            return q.receivers
        } ?? []
        for w in wake { w.fire() }
        deadLetter(dead)
        return (nacked, stale)
    }

    /// Expired leases become deliverable again, or go to the dead-letter topic (engine tick).
    func expireLeases(nowMs: Int64) {
        guard let engine = try? self.engine else { return }
        var dead: [DeadLetter] = []
        var wake: [LogWaiter] = []
        let boxes = queues.withLock { $0 }
        var limits: [String: (Int32, String)] = [:]
        for topic in boxes.values.map({ $0.state.withLock { $0.topic } }) where limits[topic] == nil {
            if let c = try? engine.topic(topic).config {
                limits[topic] = (Int32(clamping: c.queueMaxAttempts), c.deadLetterTopic(for: topic))
            }
        }
        for (k, box) in boxes {
            box.state.withLock { q in
                guard let (maxAttempts, dlq) = limits[q.topic] else { return }
                var readied = false
                for p in q.partitions.indices {
                    for (o, var pend) in q.partitions[p].pending {
                        guard case .leased(_, let expires) = pend.state, expires < nowMs else { continue }
                        if pend.attempts >= maxAttempts {
                            pend.state = .deadLettering
                            dead.append(DeadLetter(key: k, topic: q.topic, queue: q.name, partition: Int32(p), offset: o,
                                                   record: pend.record, attempts: pend.attempts, deadLetterTopic: dlq))
                        } else {
                            pend.state = .ready(atMs: nowMs)
                            q.partitions[p].readyCount += 1
                            readied = true
                        }
                        q.partitions[p].pending[o] = pend
                    }
                }
                // Also wake waiting receivers while nacked records wait out their delay.
                if readied || q.partitions.contains(where: { $0.readyCount > 0 }) {
                    wake += q.receivers
                    q.receivers = []
                }
            }
        }
        for w in wake { w.fire() }
        deadLetter(dead)
    }

    /// Appends records to their dead-letter topics; each is done once its append is durable.
    private func deadLetter(_ dead: [DeadLetter]) {
        guard !dead.isEmpty, let engine = try? self.engine else { return }
        DispatchQueue.global().async { [self] in
            for d in dead {
                do {
                    if (try? engine.topic(d.deadLetterTopic)) == nil {
                        do { try engine.createTopic(d.deadLetterTopic, partitions: 1) } catch LogError.topicAlreadyExists(_) {}
                    }
                } catch {
                    self.finishDeadLetter(d, ok: false)
                    continue
                }
                var rec = d.record
                rec.headers += [
                    RecordHeader(key: Array("pier.dlq.topic".utf8), value: Array(d.topic.utf8)),
                    RecordHeader(key: Array("pier.dlq.queue".utf8), value: Array(d.queue.utf8)),
                    RecordHeader(key: Array("pier.dlq.partition".utf8), value: Array(String(d.partition).utf8)),
                    RecordHeader(key: Array("pier.dlq.offset".utf8), value: Array(String(d.offset).utf8)),
                    RecordHeader(key: Array("pier.dlq.attempts".utf8), value: Array(String(d.attempts).utf8)),
                ]
                engine.produce(topic: d.deadLetterTopic, records: [rec], partitioning: .byKey) { results in
                    let ok = results.allSatisfy { if case .success = $0.result { return true } else { return false } }
                    self.finishDeadLetter(d, ok: ok)
                }
            }
        }
    }

    private func finishDeadLetter(_ d: DeadLetter, ok: Bool) {
        let now = clock()
        let floors: [(Int32, Int64)] = box(d.key)?.state.withLock { q in
            guard Int(d.partition) < q.partitions.count else { return [] }
            let p = Int(d.partition)
            if ok {
                q.partitions[p].pending[d.offset] = nil
                return Self.advanceFloor(&q.partitions[p]).map { [(d.partition, $0)] } ?? []
            }
            // The dead-letter append failed: try again on a later expiry.
            q.partitions[p].pending[d.offset]?.state = .leased(id: 0, expiresMs: now + 1000)
            return []
        } ?? []
        persist(topic: d.topic, queue: d.queue, floors)
    }

    /// Recomputes the floor: the lowest offset still pending, or the next undelivered one.
    private static func advanceFloor(_ p: inout PartitionState) -> Int64? {
        let floor = p.pending.keys.min() ?? p.next
        guard floor > p.persistedFloor else { return nil }
        p.floor = floor
        p.persistedFloor = floor
        return floor
    }

    private func persist(topic: String, queue: String, _ floors: [(Int32, Int64)]) {
        for (p, f) in floors {
            var value = [UInt8]()
            withUnsafeBytes(of: f.littleEndian) { value.append(contentsOf: $0) }
            // A lost floor update only means some records are delivered again after a restart.
            metadata.put(key: LogMetadataKeys.queueFloor(topic, queue, p), value: value) { _ in }
        }
    }

    /// Records a queue has delivered but not finished, per state (for tests and operators).
    public func pendingCount(topic: String, queue: String) -> Int {
        box(Self.key(topic, queue))?.state.withLock { $0.partitions.reduce(0) { $0 + $1.pending.count } } ?? 0
    }
}
