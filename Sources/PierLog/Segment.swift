// One segment of a partition: a file of batch frames from a base offset, with its sparse indexes.

import Synchronization

final class Segment: Sendable {
    struct State: Sendable {
        /// The segment's first offset; index entries are relative to it.
        let base: Int64
        /// Bytes written (the writer's append position).
        var size = 0
        /// Bytes known to be on disk; readers never read past this.
        var durableSize = 0
        /// Offset after the last stored batch.
        var nextOffset: Int64
        /// Largest record timestamp in the segment (Int64.min when empty).
        var maxTimestamp = Int64.min
        /// Max timestamp of the first batch.
        var firstBatchTimestamp: Int64?
        /// Wall-clock time of the first append since the segment was opened: its age for
        /// segment.ms. Not the records' own timestamps, which a producer may set far in the past.
        var firstAppendMs: Int64?
        var offsetIndex = OffsetIndex()
        var timeIndex = TimeIndex()
        var bytesSinceIndex = 0
        var indexFilesWritten = false
        var batchCount = 0
    }

    let baseOffset: Int64
    let directory: String
    let file: LogFile
    private let state: Mutex<State>

    var logPath: String { Segment.path(directory, baseOffset, "log") }

    static func name(_ base: Int64, _ ext: String) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + ext
    }

    static func path(_ dir: String, _ base: Int64, _ ext: String) -> String { dir + "/" + name(base, ext) }

    private init(directory: String, baseOffset: Int64, file: LogFile, state: State) {
        self.directory = directory
        self.baseOffset = baseOffset
        self.file = file
        self.state = Mutex(state)
    }

    /// A new, empty segment file.
    static func create(directory: String, baseOffset: Int64) throws -> Segment {
        for ext in ["index", "timeindex"] { LogFS.remove(path(directory, baseOffset, ext)) }
        let file = try LogFile(path: path(directory, baseOffset, "log"), create: true, truncate: true)
        return Segment(directory: directory, baseOffset: baseOffset, file: file, state: State(base: baseOffset, nextOffset: baseOffset))
    }

    /// Opens an existing segment. Trusts its index files when they are valid and describe the
    /// file as it is; otherwise (or with `validate`) reads every batch, checking CRCs, truncates
    /// a torn or corrupt tail and rebuilds the indexes. Returns whether bytes were cut off.
    static func open(directory: String, baseOffset: Int64, validate: Bool,
                     indexIntervalBytes: Int) throws -> (Segment, truncated: Bool) {
        let file = try LogFile(path: path(directory, baseOffset, "log"), create: false)
        let size = try file.size()
        if !validate, let state = loadIndexFiles(directory: directory, baseOffset: baseOffset, fileSize: size) {
            return (Segment(directory: directory, baseOffset: baseOffset, file: file, state: state), false)
        }
        var st = State(base: baseOffset, nextOffset: baseOffset)
        let end = try BatchScanner.scan(file, from: 0, to: size, verifyCRC: true) { h, pos, _ in
            // Offsets only grow; a batch that goes backwards is garbage from an older write.
            guard h.baseOffset >= st.nextOffset, h.baseOffset >= baseOffset else { return false }
            Segment.indexBatch(&st, header: h, position: pos, interval: indexIntervalBytes)
            st.size = pos + h.frameSize
            return true
        }
        var truncated = false
        if end != .complete {
            try file.truncate(to: st.size)
            try file.sync()
            truncated = true
        }
        st.durableSize = st.size
        return (Segment(directory: directory, baseOffset: baseOffset, file: file, state: st), truncated)
    }

    private static func indexBatch(_ st: inout State, header h: BatchHeader, position: Int, interval: Int) {
        if st.batchCount == 0 || st.bytesSinceIndex >= interval {
            st.offsetIndex.append(relativeOffset: UInt32(clamping: h.baseOffset - st.base), position: UInt32(clamping: position))
            if st.maxTimestamp != Int64.min {
                st.timeIndex.append(timestamp: st.maxTimestamp, position: UInt32(clamping: position))
            }
            st.bytesSinceIndex = 0
        }
        st.bytesSinceIndex += h.frameSize
        st.batchCount += 1
        st.nextOffset = h.nextOffset
        if st.firstBatchTimestamp == nil { st.firstBatchTimestamp = h.maxTimestampMs }
        if h.maxTimestampMs > st.maxTimestamp { st.maxTimestamp = h.maxTimestampMs }
    }

    // MARK: writer side (only the log writer thread calls these)

    /// Writes one frame at the end of the file and indexes it. Not durable until `sync`.
    func append(frame: UnsafeRawBufferPointer, header: BatchHeader, indexIntervalBytes: Int, nowMs: Int64) throws {
        let position = state.withLock { $0.size }
        try file.write(frame, at: position)
        state.withLock { st in
            Segment.indexBatch(&st, header: header, position: position, interval: indexIntervalBytes)
            st.size = position + frame.count
            if st.firstAppendMs == nil { st.firstAppendMs = nowMs }
        }
    }

    func sync() throws { try file.sync() }

    /// Called after `sync`: everything written so far may be read.
    func markDurable() { state.withLock { $0.durableSize = $0.size } }

    /// Persists the indexes of a sealed, synced segment so a restart need not scan it.
    func writeIndexFiles() throws {
        let st = state.withLock { $0 }
        var summary = [UInt8]()
        withUnsafeBytes(of: UInt64(st.size).littleEndian) { summary.append(contentsOf: $0) }
        withUnsafeBytes(of: st.nextOffset.littleEndian) { summary.append(contentsOf: $0) }
        withUnsafeBytes(of: st.maxTimestamp.littleEndian) { summary.append(contentsOf: $0) }
        withUnsafeBytes(of: (st.firstBatchTimestamp ?? Int64.min).littleEndian) { summary.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(st.batchCount).littleEndian) { summary.append(contentsOf: $0) }
        try LogFS.writeAtomically(IndexFile.seal(summary + st.offsetIndex.encodedEntries()),
                                  to: Segment.path(directory, baseOffset, "index"), directory: directory)
        try LogFS.writeAtomically(IndexFile.seal(st.timeIndex.encodedEntries()),
                                  to: Segment.path(directory, baseOffset, "timeindex"), directory: directory)
        state.withLock { $0.indexFilesWritten = true }
    }

    private static func loadIndexFiles(directory: String, baseOffset: Int64, fileSize: Int) -> State? {
        guard let idxFile = try? LogFile(path: path(directory, baseOffset, "index"), create: false),
              let timeFile = try? LogFile(path: path(directory, baseOffset, "timeindex"), create: false),
              let idxBytes = try? idxFile.read(count: idxFile.size(), at: 0),
              let timeBytes = try? timeFile.read(count: timeFile.size(), at: 0),
              let idxBody = IndexFile.open(idxBytes), idxBody.count >= 40,
              let timeBody = IndexFile.open(timeBytes),
              let offsets = OffsetIndex.decode(entries: idxBody[40...]),
              let times = TimeIndex.decode(entries: timeBody[...])
        else { return nil }
        let fields = idxBody.withUnsafeBytes { b in
            (WireBytes.loadLE(b, 0, as: UInt64.self), WireBytes.loadLE(b, 8, as: Int64.self),
             WireBytes.loadLE(b, 16, as: Int64.self), WireBytes.loadLE(b, 24, as: Int64.self),
             WireBytes.loadLE(b, 32, as: UInt64.self))
        }
        guard Int(fields.0) == fileSize else { return nil }
        var st = State(base: baseOffset, nextOffset: fields.1)
        st.size = fileSize
        st.durableSize = fileSize
        st.maxTimestamp = fields.2
        st.firstBatchTimestamp = fields.3 == Int64.min ? nil : fields.3
        st.batchCount = Int(fields.4)
        st.offsetIndex = offsets
        st.timeIndex = times
        st.indexFilesWritten = true
        return st
    }

    /// Deletes the segment's files (readers holding this object can still read: the
    /// descriptor stays open until the last reference goes).
    func deleteFiles() {
        for ext in ["log", "index", "timeindex"] { LogFS.remove(Segment.path(directory, baseOffset, ext)) }
    }

    // MARK: reader side

    /// The scalar parts of the state. (Copying the whole state would share the index arrays
    /// and make the writer's next index append copy them.)
    struct Summary {
        var size: Int
        var durableSize: Int
        var nextOffset: Int64
        var maxTimestamp: Int64
        var firstAppendMs: Int64?
    }

    var summary: Summary {
        state.withLock { Summary(size: $0.size, durableSize: $0.durableSize, nextOffset: $0.nextOffset,
                                 maxTimestamp: $0.maxTimestamp, firstAppendMs: $0.firstAppendMs) }
    }
    var size: Int { state.withLock { $0.size } }
    var nextOffset: Int64 { state.withLock { $0.nextOffset } }

    /// Reads whole frames starting with the one that contains `offset`, up to `maxBytes`
    /// (at least one frame), from durable bytes only. nil when the segment holds nothing at or
    /// after `offset`.
    func read(from offset: Int64, maxBytes: Int) throws -> (bytes: ArraySlice<UInt8>, nextOffset: Int64)? {
        let (start, end) = state.withLock { st in
            (st.offsetIndex.lookup(UInt32(clamping: max(0, offset - baseOffset))), st.durableSize)
        }
        var pos = start
        while pos < end {
            let want = min(end - pos, max(maxBytes, 1) + 64 * 1024)
            let chunk = try file.read(count: want, at: pos)
            var rel = 0
            var found: Int?
            var taken = 0
            var next = offset
            var firstSize = 0
            try chunk.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws in
                while rel < b.count {
                    let h: BatchHeader
                    do { h = try BatchFrame.parseHeader(UnsafeRawBufferPointer(rebasing: b[rel...]), at: 0, verifyCRC: false) }
                    catch FrameError.truncated { break }
                    catch { throw LogError.storage("\(logPath) at \(pos + rel): \(error)") }
                    if found == nil {
                        if h.nextOffset <= offset {
                            rel += h.frameSize
                            continue
                        }
                        found = rel
                        firstSize = h.frameSize
                        if rel + h.frameSize > b.count { break }
                        taken = h.frameSize
                        next = h.nextOffset
                        rel += h.frameSize
                        continue
                    }
                    guard rel + h.frameSize <= b.count, taken + h.frameSize <= maxBytes else { break }
                    taken += h.frameSize
                    next = h.nextOffset
                    rel += h.frameSize
                }
            }
            if let f = found {
                if taken == 0 {
                    // The first frame is bigger than what was read: return it alone.
                    let frame = try file.read(count: firstSize, at: pos + f)
                    guard frame.count == firstSize else { return nil }
                    let h = try frame.withUnsafeBytes { try BatchFrame.parseHeader($0, at: 0, verifyCRC: false) }
                    return (frame[...], h.nextOffset)
                }
                return (chunk[f..<(f + taken)], next)
            }
            if rel == 0 { break }
            pos += rel
        }
        return nil
    }

    /// The first record at or after `timestamp`, with its timestamp; nil when none in this segment.
    func findOffset(forTimestamp timestamp: Int64, minOffset: Int64) throws -> (offset: Int64, timestamp: Int64)? {
        let (start, end, maxTs) = state.withLock { ($0.timeIndex.lookup(timestamp), $0.durableSize, $0.maxTimestamp) }
        guard maxTs >= timestamp else { return nil }
        var result: (Int64, Int64)?
        try BatchScanner.scan(file, from: start, to: end, verifyCRC: false) { h, _, frame in
            guard h.maxTimestampMs >= timestamp, h.nextOffset > minOffset else { return true }
            try RecordBatchReader.forEachRecord(batch: h, frame: frame, at: 0) { r in
                if result == nil, r.timestampMs >= timestamp, r.offset >= minOffset { result = (r.offset, r.timestampMs) }
            }
            return result == nil
        }
        return result
    }
}
