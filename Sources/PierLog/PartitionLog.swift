// One partition's log: its segments, offsets, high watermark, retention and parked readers.

import Synchronization

/// Writes come only from the log writer thread (append, flush, roll, retention, cleaning);
/// reads come from any thread and see only durable data (below the high watermark).
final class PartitionLog: Sendable {
    let topic: String
    let partition: Int32
    let directory: String

    struct State: Sendable {
        var segments: [Segment]
        var logStartOffset: Int64
        /// Offset the next batch gets (includes appends not yet synced).
        var logEndOffset: Int64
        /// Durable end: what readers may see and what has been acknowledged.
        var highWatermark: Int64
        var config: TopicConfig
        var waiters: [LogWaiter] = []
        /// Set after a failed write or sync; the partition refuses appends until restart.
        var failure: LogError?
        var deleted = false
    }

    /// State only the writer thread uses; behind its own lock so the type stays Sendable.
    struct WriterState: Sendable {
        var producers = ProducerStateTable()
        /// Segments written since the last flush, and sealed segments awaiting index files.
        var dirty: [Segment] = []
        var sealed: [Segment] = []
        var directoryDirty = false
        /// Compaction bookkeeping: the active segment's base at the last clean, and when it ran.
        var cleanedBelow: Int64 = -1
        var lastCleanMs = Int64.min
    }

    private let state: Mutex<State>
    private let writer: Mutex<WriterState>
    static let maxWaiters = 10_000

    private init(topic: String, partition: Int32, directory: String, state: State, writer: WriterState) {
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.state = Mutex(state)
        self.writer = Mutex(writer)
    }

    static func directoryName(topic: String, partition: Int32) -> String { "\(topic)-\(partition)" }

    // MARK: opening and recovery

    /// Opens (or creates) the partition in `directory`, recovering from a crash: the last
    /// segment (and any without valid index files) is checked batch by batch and a torn tail
    /// cut off; segments after a cut hold only unacknowledged data and are removed.
    static func open(topic: String, partition: Int32, directory: String, config: TopicConfig) throws -> PartitionLog {
        try LogFS.makeDirectory(directory)
        var bases: [Int64] = []
        var snapshots: [Int64] = []
        for name in try LogFS.list(directory) {
            if name.hasSuffix(".tmp") || name.hasSuffix(".cleaned") {
                LogFS.remove(directory + "/" + name)
            } else if name.hasSuffix(".log"), let b = Int64(name.dropLast(4)) {
                bases.append(b)
            } else if name.hasSuffix(".snapshot"), let b = Int64(name.dropLast(9)) {
                snapshots.append(b)
            }
        }
        bases.sort()
        let interval = Int(config.indexIntervalBytes)
        var segments: [Segment] = []
        var cut = false
        for (i, base) in bases.enumerated() {
            if cut {
                for ext in ["log", "index", "timeindex"] { LogFS.remove(Segment.path(directory, base, ext)) }
                continue
            }
            let (seg, truncated) = try Segment.open(directory: directory, baseOffset: base,
                                                    validate: i == bases.count - 1, indexIntervalBytes: interval)
            segments.append(seg)
            if truncated && i < bases.count - 1 { cut = true }
        }
        if segments.isEmpty {
            segments.append(try Segment.create(directory: directory, baseOffset: 0))
            try LogFS.syncDirectory(directory)
        }
        // Data recovered from the page cache after a process crash may not be on disk yet.
        try segments.last!.sync()
        let end = segments.last!.nextOffset
        let start = segments.first!.baseOffset

        // Producer state: newest usable snapshot, then replay batch headers after it.
        var table = ProducerStateTable()
        var from: Int64 = start
        for snap in snapshots.sorted(by: >) {
            let path = Segment.path(directory, snap, "snapshot")
            if snap <= end, let f = try? LogFile(path: path, create: false),
               let bytes = try? f.read(count: f.size(), at: 0), let t = ProducerStateTable.decode(bytes) {
                table = t
                from = snap
                break
            }
            LogFS.remove(path)
        }
        for seg in segments where seg.nextOffset > from {
            try BatchScanner.scan(seg.file, from: 0, to: seg.size, verifyCRC: false) { h, _, _ in
                if h.baseOffset >= from { table.record(header: h) }
                return true
            }
        }
        let st = State(segments: segments, logStartOffset: start, logEndOffset: end, highWatermark: end, config: config)
        var ws = WriterState()
        ws.producers = table
        return PartitionLog(topic: topic, partition: partition, directory: directory, state: st, writer: ws)
    }

    // MARK: writer side

    enum AppendOutcome {
        case appended(AppendResult)
        case duplicate(AppendResult)
    }

    /// Appends a batch (writer thread). The result is acknowledged only after `flush`.
    func append(_ batch: inout EncodedBatch, nowMs: Int64) throws -> AppendResult {
        let (config, failure, deleted, end, logStart) = state.withLock {
            ($0.config, $0.failure, $0.deleted, $0.logEndOffset, $0.logStartOffset)
        }
        if deleted { throw LogError.topicNotFound(topic) }
        if let failure { throw failure }
        if Int64(batch.frameSize) > config.maxMessageBytes {
            throw LogError.recordTooLarge(size: batch.frameSize, max: Int(config.maxMessageBytes))
        }
        if config.cleanupCompact && batch.hasKeylessRecord {
            throw LogError.invalidArgument("topic \"\(topic)\" is compacted (cleanup.policy=\(config.cleanupPolicy)): every record needs a key")
        }
        if batch.recordCount <= 0 { throw LogError.invalidArgument("a batch needs at least one record") }
        return try writer.withLock { ws in
            if batch.producerId >= 0 {
                let last = batch.baseSequence &+ batch.lastOffsetDelta
                switch ws.producers.check(producerId: batch.producerId, baseSequence: batch.baseSequence, lastSequence: last) {
                case .duplicate(let b):
                    return AppendResult(partition: partition, baseOffset: b.baseOffset, lastOffset: b.lastOffset,
                                        recordCount: batch.recordCount, duplicate: true, logStartOffset: logStart)
                case .outOfOrder(let expected):
                    throw LogError.outOfOrderSequence(producerId: batch.producerId, partition: partition,
                                                      expected: expected, received: batch.baseSequence)
                case .append:
                    break
                }
            }
            var active = state.withLock { $0.segments.last! }
            let snap = active.summary
            let tooBig = snap.size > 0 && Int64(snap.size + batch.frameSize) > config.segmentBytes
            let tooOld = snap.firstAppendMs.map { nowMs - $0 > config.segmentMs } ?? false
            if tooBig || tooOld {
                active = try roll(&ws, at: end)
            }
            batch.setBaseOffset(end)
            let header = BatchHeader(baseOffset: end, leaderEpoch: BatchLayout.currentLeaderEpoch, crc: 0,
                                     producerId: batch.producerId, baseSequence: batch.baseSequence,
                                     recordCount: batch.recordCount, lastOffsetDelta: batch.lastOffsetDelta,
                                     firstTimestampMs: batch.firstTimestampMs, maxTimestampMs: batch.maxTimestampMs,
                                     attributes: 0, frameSize: batch.frameSize, prefixSize: 0)
            do {
                try batch.storage.withUnsafeBytes { b in
                    try active.append(frame: UnsafeRawBufferPointer(rebasing: b[batch.frameStart...]), header: header,
                                      indexIntervalBytes: Int(config.indexIntervalBytes), nowMs: nowMs)
                }
            } catch {
                let e = error as? LogError ?? .storage("\(error)")
                state.withLock { $0.failure = e }
                throw e
            }
            if !ws.dirty.contains(where: { $0 === active }) { ws.dirty.append(active) }
            if batch.producerId >= 0 { ws.producers.record(header: header) }
            state.withLock { $0.logEndOffset = header.nextOffset }
            return AppendResult(partition: partition, baseOffset: end, lastOffset: header.lastOffset,
                                recordCount: batch.recordCount, duplicate: false, logStartOffset: logStart)
        }
    }

    /// Starts a new active segment at `offset`; the old one is synced and indexed at the next flush.
    private func roll(_ ws: inout WriterState, at offset: Int64) throws -> Segment {
        let old = state.withLock { $0.segments.last! }
        if !ws.dirty.contains(where: { $0 === old }) { ws.dirty.append(old) }
        ws.sealed.append(old)
        // The producer snapshot lets recovery skip replaying every older segment.
        try LogFS.writeAtomically(ws.producers.encoded(), to: Segment.path(directory, offset, "snapshot"), directory: directory)
        // Only the newest snapshots are ever used; older ones would pile up one per segment.
        let snapshots = ((try? LogFS.list(directory)) ?? []).compactMap { n -> Int64? in
            n.hasSuffix(".snapshot") ? Int64(n.dropLast(9)) : nil
        }.sorted()
        for old in snapshots.dropLast(2) { LogFS.remove(Segment.path(directory, old, "snapshot")) }
        let seg = try Segment.create(directory: directory, baseOffset: offset)
        ws.directoryDirty = true
        state.withLock { $0.segments.append(seg) }
        return seg
    }

    /// Forces a roll (used by tests and by retention when the active segment has expired).
    func rollNow() throws {
        try writer.withLock { ws in
            let (end, empty) = state.withLock { ($0.logEndOffset, $0.segments.last!.size == 0) }
            if !empty { _ = try roll(&ws, at: end) }
        }
    }

    /// Makes every append since the last flush durable, then publishes it to readers
    /// (writer thread). Returns the parked readers to wake.
    func flush() throws -> [LogWaiter] {
        let (dirty, sealed, dirDirty) = writer.withLock { ws in
            defer { ws.dirty = []; ws.sealed = []; ws.directoryDirty = false }
            return (ws.dirty, ws.sealed, ws.directoryDirty)
        }
        do {
            for seg in dirty { try seg.sync() }
            if dirDirty { try LogFS.syncDirectory(directory) }
        } catch {
            let e = error as? LogError ?? .storage("\(error)")
            state.withLock { $0.failure = e }
            throw e
        }
        for seg in dirty { seg.markDurable() }
        // An index file that fails to write is rebuilt at the next start; not worth failing appends.
        for seg in sealed { try? seg.writeIndexFiles() }
        return state.withLock { st in
            st.highWatermark = st.logEndOffset
            let hw = st.highWatermark
            var wake: [LogWaiter] = []
            st.waiters.removeAll { w in
                if w.isDone { return true }
                if w.offset < hw { wake.append(w); return true }
                return false
            }
            return wake
        }
    }

    // MARK: readers

    var info: PartitionInfo {
        state.withLock { st in
            PartitionInfo(partition: partition, logStartOffset: st.logStartOffset, logEndOffset: st.highWatermark,
                          sizeBytes: Int64(st.segments.reduce(0) { $0 + $1.size }), segments: Int32(st.segments.count))
        }
    }

    var config: TopicConfig {
        get { state.withLock { $0.config } }
    }

    func setConfig(_ c: TopicConfig) { state.withLock { $0.config = c } }

    var offsets: (logStart: Int64, highWatermark: Int64) {
        state.withLock { ($0.logStartOffset, $0.highWatermark) }
    }

    /// Reads whole stored frames from `offset` (any thread). Offsets outside
    /// [logStartOffset, highWatermark] are out of range; offset == highWatermark reads nothing.
    func read(from offset: Int64, maxBytes: Int) throws -> FetchResult {
        let (start, hw, segments, failure) = state.withLock { st -> (Int64, Int64, ArraySlice<Segment>, LogError?) in
            var lo = 0, hi = st.segments.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if st.segments[mid].baseOffset <= offset { lo = mid + 1 } else { hi = mid }
            }
            return (st.logStartOffset, st.highWatermark, st.segments[max(0, lo - 1)...],
                    st.deleted ? LogError.topicNotFound(topic) : nil)
        }
        if let failure { throw failure }
        guard offset >= start, offset <= hw else {
            throw LogError.offsetOutOfRange(topic: topic, partition: partition, offset: offset,
                                            logStartOffset: start, logEndOffset: hw)
        }
        if offset < hw {
            for seg in segments {
                if var r = try seg.read(from: offset, maxBytes: maxBytes) {
                    if r.nextOffset > hw {
                        // Synced but not yet published (the writer is between its fsync and the
                        // acks): cut back to the high watermark read above, so readers never run
                        // ahead of what producers have been told.
                        r = Self.trim(r.bytes, to: hw, from: offset)
                    }
                    return FetchResult(records: r.bytes, highWatermark: hw, logStartOffset: start, nextOffset: r.nextOffset)
                }
            }
        }
        return FetchResult(records: [], highWatermark: hw, logStartOffset: start, nextOffset: offset)
    }

    private static func trim(_ bytes: ArraySlice<UInt8>, to hw: Int64, from offset: Int64) -> (bytes: ArraySlice<UInt8>, nextOffset: Int64) {
        var keep = 0
        var next = offset
        bytes.withUnsafeBytes { b in
            for h in RecordBatchReader.headers(in: b) {
                guard h.nextOffset <= hw else { break }
                keep += h.frameSize
                next = h.nextOffset
            }
        }
        return (bytes.prefix(keep), next)
    }

    /// Parks `waiter` until the high watermark passes its offset; fires at once if it already has.
    func park(_ waiter: LogWaiter) throws {
        let fireNow = try state.withLock { st -> Bool in
            if st.deleted { return true }
            if waiter.offset < st.highWatermark { return true }
            st.waiters.removeAll { $0.isDone }
            guard st.waiters.count < PartitionLog.maxWaiters else {
                throw LogError.resourceExhausted("too many readers waiting on \(topic)/\(partition) (limit \(PartitionLog.maxWaiters)); retry later")
            }
            st.waiters.append(waiter)
            return false
        }
        if fireNow { waiter.fire() }
    }

    /// The first offset with a timestamp >= `timestamp`, or nil when every record is older.
    func offset(forTimestamp timestamp: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        let (segments, start) = state.withLock { ($0.segments, $0.logStartOffset) }
        for seg in segments {
            if let r = try seg.findOffset(forTimestamp: timestamp, minOffset: start) { return r }
        }
        return nil
    }

    var segmentsSnapshot: [Segment] { state.withLock { $0.segments } }

    // MARK: retention and cleaning (writer thread)

    /// Deletes whole sealed segments past retention.ms or beyond retention.bytes and advances
    /// the log start offset. Returns how many segments went.
    @discardableResult
    func enforceRetention(nowMs: Int64) -> Int {
        let removed: [Segment] = state.withLock { st in
            guard st.config.cleanupDelete, st.segments.count > 1 else { return [] }
            var total = Int64(st.segments.reduce(0) { $0 + $1.size })
            var n = 0
            for seg in st.segments.dropLast() {
                let s = seg.summary
                let expired = st.config.retentionMs >= 0 && (s.maxTimestamp == Int64.min || s.maxTimestamp < nowMs - st.config.retentionMs)
                let oversize = st.config.retentionBytes >= 0 && total - Int64(s.size) >= st.config.retentionBytes
                guard expired || oversize else { break }
                total -= Int64(s.size)
                n += 1
            }
            guard n > 0 else { return [] }
            let gone = Array(st.segments.prefix(n))
            st.segments.removeFirst(n)
            st.logStartOffset = max(st.logStartOffset, st.segments.first!.baseOffset)
            return gone
        }
        for seg in removed {
            seg.deleteFiles()
            LogFS.remove(Segment.path(directory, seg.baseOffset, "snapshot"))
        }
        return removed.count
    }

    /// Whether compaction has work: segments sealed since the last clean, or tombstones that
    /// may have aged past delete.retention.ms since then.
    func needsCleaning(nowMs: Int64) -> Bool {
        let (activeBase, config) = state.withLock { ($0.segments.last!.baseOffset, $0.config) }
        guard config.cleanupCompact else { return false }
        return writer.withLock { ws in
            activeBase > ws.cleanedBelow || ws.lastCleanMs == Int64.min || nowMs - ws.lastCleanMs >= config.deleteRetentionMs
        }
    }

    func didClean(nowMs: Int64) {
        let activeBase = state.withLock { $0.segments.last!.baseOffset }
        writer.withLock { ws in
            ws.cleanedBelow = activeBase
            ws.lastCleanMs = nowMs
        }
    }

    /// Swaps a segment for its cleaned copy (writer thread).
    func replaceSegment(_ old: Segment, with new: Segment) {
        state.withLock { st in
            if let i = st.segments.firstIndex(where: { $0 === old }) { st.segments[i] = new }
        }
    }

    /// Marks the partition deleted: parked readers wake (and fail), appends are refused.
    func markDeleted() -> [LogWaiter] {
        state.withLock { st in
            st.deleted = true
            defer { st.waiters = [] }
            return st.waiters
        }
    }
}
