// The log engine's front door: topics, produce, fetch and offsets, with consumer groups and work queues beside.

import Foundation
import Synchronization

/// Pure Swift values in and out; the gRPC service maps them to and from the wire.
///
/// Appends are callback based and never block the caller: one writer thread group-commits
/// them (see LogWriter) and calls back once they are fsynced. Reads run on the caller's
/// thread (pread of stored bytes) or, when waiting for data, complete from a parked waiter.
/// Admin calls that must wait for the metadata store have blocking forms (for start-up and
/// tests) and callback/async forms that run them on a serial admin queue.
public final class LogEngine: Sendable {
    public struct Options: Sendable {
        /// Bytes of appends that may wait for the writer before producers get RESOURCE_EXHAUSTED.
        public var maxQueuedBytes = 256 << 20
        /// How often retention and compaction run (0: never on their own; call runMaintenance).
        public var maintenanceIntervalMs: Int64 = 30_000
        /// How often group sessions and work-queue leases are checked (0: never; call tick).
        public var tickIntervalMs: Int64 = 100
        /// Milliseconds since the epoch; replaceable for tests.
        public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

        public init() {}
    }

    public enum Partitioning: Sendable, Equatable {
        case explicit(Int32)
        /// Kafka's default: toPositive(murmur2(key)) % partitions; keyless records round-robin.
        case byKey
        case roundRobin
    }

    public enum StartPosition: Sendable, Equatable {
        case offset(Int64)
        case earliest
        case latest
        case timestamp(Int64)
    }

    public enum OffsetSpec: Sendable, Equatable {
        case earliest
        case latest
        case timestamp(Int64)
    }

    final class Topic: Sendable {
        let name: String
        let partitions: [PartitionLog]
        let roundRobin = Atomic<Int>(0)

        init(name: String, partitions: [PartitionLog]) {
            self.name = name
            self.partitions = partitions
        }

        var config: TopicConfig { partitions[0].config }

        func nextPartition() -> Int32 {
            Int32(roundRobin.wrappingAdd(1, ordering: .relaxed).oldValue % partitions.count)
        }
    }

    private struct TopicRecord: Codable {
        var partitions: Int32
        var configs: [String: String]
    }

    public let directory: String
    let metadata: any LogMetadataStore
    let options: Options
    let writer: LogWriter
    private let topics = Mutex<[String: Topic]>([:])
    private let adminQueue = DispatchQueue(label: "pier.log.admin")
    private let timerQueue = DispatchQueue(label: "pier.log.timers")
    /// Dispatch sources may be cancelled from any thread; the wrapper only carries them.
    private struct Timer: @unchecked Sendable { let source: DispatchSourceTimer }
    private let timers = Mutex<[Timer]>([])
    private let producerIds = Mutex<(next: Int64, blockEnd: Int64)>((0, 0))
    static let producerIdBlockSize: Int64 = 1000
    static let maxPartitions: Int32 = 10_000

    /// Consumer groups: membership, assignment, committed offsets.
    public let groups: GroupCoordinator
    /// Work queues: per-record leases over topics.
    public let queues: WorkQueues

    /// Opens the log in `directory`, recovering every partition of every topic the metadata
    /// store lists. Partition directories of unknown topics (left by a crash during create or
    /// delete) are removed.
    public init(directory: String, metadata: any LogMetadataStore, options: Options = Options()) throws {
        self.directory = directory
        self.metadata = metadata
        self.options = options
        try LogFS.makeDirectory(directory)
        writer = LogWriter(maxQueuedBytes: options.maxQueuedBytes, clock: options.clock)
        groups = GroupCoordinator(metadata: metadata, clock: options.clock)
        queues = WorkQueues(metadata: metadata, clock: options.clock)

        var loaded: [String: Topic] = [:]
        for (key, value) in try metadata.listSync(LogMetadataKeys.topics) {
            let name = String(decoding: key.dropFirst(LogMetadataKeys.topics.count), as: UTF8.self)
            guard let rec = try? JSONDecoder().decode(TopicRecord.self, from: Data(value)) else {
                throw LogError.storage("unreadable metadata for topic \"\(name)\"")
            }
            let config = try TopicConfig(rec.configs)
            var parts: [PartitionLog] = []
            for p in 0..<rec.partitions {
                parts.append(try PartitionLog.open(topic: name, partition: p,
                                                   directory: directory + "/" + PartitionLog.directoryName(topic: name, partition: p),
                                                   config: config))
            }
            loaded[name] = Topic(name: name, partitions: parts)
        }
        for entry in try LogFS.list(directory) {
            guard let dash = entry.lastIndex(of: "-"), Int32(entry[entry.index(after: dash)...]) != nil else { continue }
            let topic = String(entry[..<dash])
            if (try? TopicName.validate(topic)) != nil, loaded[topic] == nil {
                LogFS.removeTree(directory + "/" + entry)
            }
        }
        topics.withLock { $0 = loaded }
        if let block = try metadata.getSync(LogMetadataKeys.producerIdBlock),
           let end = Int64(String(decoding: block, as: UTF8.self)) {
            producerIds.withLock { $0 = (end, end) }
        } else {
            producerIds.withLock { $0 = (1, 1) }
        }
        try groups.load()
        groups.setPartitionCounts { [weak self] t in try? self?.partitionCount(t) }
        try queues.attach(self)
        startTimers()
    }

    deinit { shutdown() }

    /// Stops timers and the writer after it finishes what is queued.
    public func shutdown() {
        for t in timers.withLock({ t in defer { t = [] }; return t }) { t.source.cancel() }
        writer.shutdown()
    }

    private func startTimers() {
        func every(_ ms: Int64, _ body: @escaping @Sendable () -> Void) {
            guard ms > 0 else { return }
            let t = DispatchSource.makeTimerSource(queue: timerQueue)
            t.schedule(deadline: .now() + .milliseconds(Int(ms)), repeating: .milliseconds(Int(ms)))
            t.setEventHandler(handler: body)
            t.resume()
            let timer = Timer(source: t)
            timers.withLock { $0.append(timer) }
        }
        every(options.maintenanceIntervalMs) { [weak self] in
            guard let self else { return }
            self.writer.submit { [weak self] in self?.maintainOnWriter() }
        }
        every(options.tickIntervalMs) { [weak self] in self?.tick() }
    }

    /// Checks group sessions and work-queue leases against the clock.
    public func tick() {
        let now = options.clock()
        groups.expireSessions(nowMs: now)
        queues.expireLeases(nowMs: now)
    }

    /// Applies retention and compaction to every partition now, on the writer thread.
    public func runMaintenance() throws {
        try writer.sync { [self] in self.maintainOnWriter() }
    }

    private func maintainOnWriter() {
        let now = options.clock()
        for topic in topics.withLock({ Array($0.values) }) {
            for p in topic.partitions {
                p.enforceRetention(nowMs: now)
                _ = try? LogCleaner.clean(p, nowMs: now)
            }
        }
    }

    // MARK: topics

    func topic(_ name: String) throws -> Topic {
        guard let t = topics.withLock({ $0[name] }) else { throw LogError.topicNotFound(name) }
        return t
    }

    func partition(_ topic: String, _ partition: Int32) throws -> PartitionLog {
        let t = try self.topic(topic)
        guard partition >= 0, Int(partition) < t.partitions.count else {
            throw LogError.partitionNotFound(topic: topic, partition: partition, partitions: Int32(t.partitions.count))
        }
        return t.partitions[Int(partition)]
    }

    public func partitionCount(_ topic: String) throws -> Int32 { Int32(try self.topic(topic).partitions.count) }

    /// Creates a topic (blocking until its metadata is durable).
    @discardableResult
    public func createTopic(_ name: String, partitions: Int32, configs: [String: String] = [:]) throws -> TopicDescription {
        try TopicName.validate(name)
        guard partitions >= 1, partitions <= Self.maxPartitions else {
            throw LogError.invalidArgument("partitions must be between 1 and \(Self.maxPartitions), got \(partitions)")
        }
        let config = try TopicConfig(configs)
        return try adminQueue.sync {
            if topics.withLock({ $0[name] != nil }) { throw LogError.topicAlreadyExists(name) }
            var parts: [PartitionLog] = []
            for p in 0..<partitions {
                let dir = directory + "/" + PartitionLog.directoryName(topic: name, partition: p)
                LogFS.removeTree(dir)
                parts.append(try PartitionLog.open(topic: name, partition: p, directory: dir, config: config))
            }
            try LogFS.syncDirectory(directory)
            let rec = TopicRecord(partitions: partitions, configs: config.overrides)
            try metadata.putSync(LogMetadataKeys.topic(name), Array(try JSONEncoder().encode(rec)))
            topics.withLock { $0[name] = Topic(name: name, partitions: parts) }
            groups.topicsChanged([name])
            return try describeTopic(name)
        }
    }

    /// Deletes a topic and its data (blocking until done).
    public func deleteTopic(_ name: String) throws {
        try adminQueue.sync {
            let t = try topic(name)
            try metadata.deleteSync(LogMetadataKeys.topic(name))
            topics.withLock { $0[name] = nil }
            try writer.sync {
                for p in t.partitions {
                    for w in p.markDeleted() { w.fire() }
                    LogFS.removeTree(p.directory)
                }
            }
            groups.topicsChanged([name])
        }
    }

    public func listTopics() -> [(name: String, partitions: Int32)] {
        topics.withLock { $0.values.map { ($0.name, Int32($0.partitions.count)) } }.sorted { $0.name < $1.name }
    }

    public func describeTopic(_ name: String) throws -> TopicDescription {
        let t = try topic(name)
        return TopicDescription(name: name, configs: t.config.all, partitions: t.partitions.map { $0.info })
    }

    /// Sets and resets configs (blocking until durable); the new values apply at once.
    public func alterTopicConfig(_ name: String, set: [String: String], remove: [String] = []) throws -> TopicDescription {
        try adminQueue.sync {
            let t = try topic(name)
            var config = t.config
            for k in remove { try config.remove(k) }
            for (k, v) in set.sorted(by: { $0.key < $1.key }) { try config.set(k, v) }
            let rec = TopicRecord(partitions: Int32(t.partitions.count), configs: config.overrides)
            try metadata.putSync(LogMetadataKeys.topic(name), Array(try JSONEncoder().encode(rec)))
            for p in t.partitions { p.setConfig(config) }
            return try describeTopic(name)
        }
    }

    /// A new producer id for an idempotent producer. Ids come from blocks reserved durably in
    /// the metadata store, so ids are never reused across restarts.
    public func initProducerId() throws -> Int64 {
        try adminQueue.sync {
            let (next, end) = producerIds.withLock { $0 }
            if next >= end {
                let newEnd = next + Self.producerIdBlockSize
                try metadata.putSync(LogMetadataKeys.producerIdBlock, Array(String(newEnd).utf8))
                producerIds.withLock { $0 = (next, newEnd) }
            }
            return producerIds.withLock { ids in
                defer { ids.next += 1 }
                return ids.next
            }
        }
    }

    /// Runs a blocking call on the admin queue and reports on `completion`.
    public func admin<T: Sendable>(_ body: @escaping @Sendable (LogEngine) throws -> T,
                                   completion: @escaping @Sendable (Result<T, LogError>) -> Void) {
        DispatchQueue.global().async { [self] in
            do { completion(.success(try body(self))) } catch {
                completion(.failure(error as? LogError ?? .storage("\(error)")))
            }
        }
    }

    public func admin<T: Sendable>(_ body: @escaping @Sendable (LogEngine) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            admin(body) { cont.resume(with: $0) }
        }
    }

    // MARK: produce

    /// A builder for a batch stamped with the current time (for records without a timestamp).
    public func makeBatchBuilder(capacity: Int = 16 * 1024) -> RecordBatchBuilder {
        RecordBatchBuilder(appendTimeMs: options.clock(), capacity: capacity)
    }

    /// The partition a record with this key goes to (Kafka's default partitioner), or the
    /// next round-robin partition for an empty key.
    public func partition(forKey key: [UInt8], topic: String) throws -> Int32 {
        let t = try self.topic(topic)
        if key.isEmpty { return t.nextPartition() }
        return Murmur2.partition(forKey: key, partitions: Int32(t.partitions.count))
    }

    public func nextRoundRobinPartition(topic: String) throws -> Int32 { try self.topic(topic).nextPartition() }

    /// Appends one encoded batch to one partition; `completion` runs once it is durable.
    public func append(topic: String, partition: Int32, batch: EncodedBatch,
                       completion: @escaping @Sendable (Result<AppendResult, LogError>) -> Void) {
        let p: PartitionLog
        do { p = try self.partition(topic, partition) } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
            return
        }
        writer.append(batch, to: p, completion: completion)
    }

    public func append(topic: String, partition: Int32, batch: EncodedBatch) async throws -> AppendResult {
        try await withCheckedThrowingContinuation { cont in
            append(topic: topic, partition: partition, batch: batch) { cont.resume(with: $0) }
        }
    }

    /// Appends records, routed by `partitioning`. With a producer id (>= 0) the records form one
    /// batch with `baseSequence` and need an explicit partition. Calls back once with one result
    /// per partition written, in partition order of first appearance.
    public func produce(topic: String, records: [Record], partitioning: Partitioning,
                        producerId: Int64 = -1, baseSequence: Int32 = -1,
                        completion: @escaping @Sendable ([(partition: Int32, result: Result<AppendResult, LogError>)]) -> Void) {
        let routed: [(Int32, [Record])]
        do {
            guard !records.isEmpty else { throw LogError.invalidArgument("produce needs at least one record") }
            let t = try self.topic(topic)
            let n = Int32(t.partitions.count)
            switch partitioning {
            case .explicit(let p):
                guard p >= 0, p < n else { throw LogError.partitionNotFound(topic: topic, partition: p, partitions: n) }
                routed = [(p, records)]
            case .roundRobin:
                guard producerId < 0 else {
                    throw LogError.invalidArgument("an idempotent producer must name the partition (sequences are per partition)")
                }
                routed = [(t.nextPartition(), records)]
            case .byKey:
                guard producerId < 0 else {
                    throw LogError.invalidArgument("an idempotent producer must name the partition (sequences are per partition)")
                }
                var order: [Int32] = []
                var groups: [Int32: [Record]] = [:]
                // Keyless records of one request stay together, as Kafka's sticky partitioner does.
                var keyless: Int32?
                for r in records {
                    let p: Int32
                    if let k = r.key, !k.isEmpty { p = Murmur2.partition(forKey: k, partitions: n) } else {
                        if keyless == nil { keyless = t.nextPartition() }
                        p = keyless!
                    }
                    if groups[p] == nil { order.append(p) }
                    groups[p, default: []].append(r)
                }
                routed = order.map { ($0, groups[$0]!) }
            }
        } catch {
            completion([(-1, .failure(error as? LogError ?? .storage("\(error)")))])
            return
        }
        let collector = ResultCollector(count: routed.count, completion: completion)
        for (i, (p, recs)) in routed.enumerated() {
            var b = makeBatchBuilder(capacity: recs.reduce(0) { $0 + ($1.value?.count ?? 0) + ($1.key?.count ?? 0) + 16 })
            for r in recs { b.append(r) }
            append(topic: topic, partition: p, batch: b.build(producerId: producerId, baseSequence: baseSequence)) { r in
                collector.set(i, (p, r))
            }
        }
    }

    public func produce(topic: String, records: [Record], partitioning: Partitioning,
                        producerId: Int64 = -1, baseSequence: Int32 = -1) async -> [(partition: Int32, result: Result<AppendResult, LogError>)] {
        await withCheckedContinuation { cont in
            produce(topic: topic, records: records, partitioning: partitioning, producerId: producerId,
                    baseSequence: baseSequence) { cont.resume(returning: $0) }
        }
    }

    // MARK: read

    /// Reads stored batches from `offset` without waiting.
    public func read(topic: String, partition: Int32, offset: Int64, maxBytes: Int = 1 << 20) throws -> FetchResult {
        try self.partition(topic, partition).read(from: offset, maxBytes: maxBytes)
    }

    /// Reads from `offset`, waiting up to `maxWaitMs` for durable records when there are none yet.
    public func fetch(topic: String, partition: Int32, offset: Int64, maxBytes: Int = 1 << 20, maxWaitMs: Int64 = 0,
                      completion: @escaping @Sendable (Result<FetchResult, LogError>) -> Void) {
        let p: PartitionLog
        let first: FetchResult
        do {
            p = try self.partition(topic, partition)
            first = try p.read(from: offset, maxBytes: maxBytes)
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
            return
        }
        guard first.records.isEmpty, maxWaitMs > 0 else {
            completion(.success(first))
            return
        }
        let waiter = LogWaiter(offset: offset) {
            // Woken from the writer thread: read elsewhere so group commit is not held up.
            DispatchQueue.global().async {
                completion(Result { try p.read(from: offset, maxBytes: maxBytes) }.mapError { $0 as? LogError ?? .storage("\($0)") })
            }
        }
        do { try p.park(waiter) } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
            return
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(maxWaitMs))) { waiter.fire() }
    }

    public func fetch(topic: String, partition: Int32, offset: Int64, maxBytes: Int = 1 << 20,
                      maxWaitMs: Int64 = 0) async throws -> FetchResult {
        try await withCheckedThrowingContinuation { cont in
            fetch(topic: topic, partition: partition, offset: offset, maxBytes: maxBytes, maxWaitMs: maxWaitMs) {
                cont.resume(with: $0)
            }
        }
    }

    /// The offset a subscription starting at `position` reads first.
    public func resolve(_ position: StartPosition, topic: String, partition: Int32) throws -> Int64 {
        let p = try self.partition(topic, partition)
        switch position {
        case .offset(let o): return o
        case .earliest: return p.offsets.logStart
        case .latest: return p.offsets.highWatermark
        case .timestamp(let ts): return try p.offset(forTimestamp: ts)?.offset ?? p.offsets.highWatermark
        }
    }

    /// Earliest, latest (high watermark) or first-at-or-after-timestamp offsets per partition
    /// (every partition when `partitions` is empty).
    public func listOffsets(topic: String, partitions: [Int32] = [], spec: OffsetSpec) throws -> [OffsetAndTimestamp] {
        let t = try self.topic(topic)
        let wanted = partitions.isEmpty ? Array(0..<Int32(t.partitions.count)) : partitions
        return try wanted.map { n in
            let p = try self.partition(topic, n)
            switch spec {
            case .earliest: return OffsetAndTimestamp(partition: n, offset: p.offsets.logStart, timestampMs: -1)
            case .latest: return OffsetAndTimestamp(partition: n, offset: p.offsets.highWatermark, timestampMs: -1)
            case .timestamp(let ts):
                if let r = try p.offset(forTimestamp: ts) {
                    return OffsetAndTimestamp(partition: n, offset: r.offset, timestampMs: r.timestamp)
                }
                return OffsetAndTimestamp(partition: n, offset: p.offsets.highWatermark, timestampMs: -1)
            }
        }
    }

    // MARK: test and maintenance hooks

    /// Starts a new segment in every partition of `topic` (tests; operators rolling before retention).
    public func rollSegments(topic: String) throws {
        let t = try self.topic(topic)
        try writer.sync { for p in t.partitions { try p.rollNow() } }
    }

    /// Waits until everything appended so far is durable.
    public func barrier() throws { try writer.sync {} }
}

/// Gathers one result per sub-request and calls back once with all of them.
final class ResultCollector<T: Sendable>: Sendable {
    private let state: Mutex<(results: [T?], left: Int)>
    private let completion: @Sendable ([T]) -> Void

    init(count: Int, completion: @escaping @Sendable ([T]) -> Void) {
        state = Mutex((Array(repeating: nil, count: count), count))
        self.completion = completion
    }

    func set(_ i: Int, _ value: T) {
        let done: [T]? = state.withLock { st in
            st.results[i] = value
            st.left -= 1
            return st.left == 0 ? st.results.map { $0! } : nil
        }
        if let done { completion(done) }
    }
}
