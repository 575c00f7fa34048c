// Segmented append-only write-ahead log: numbered records in CRC-framed segment files, torn-tail recovery, prefix truncation.
//
// Layout: one directory of files named `<first index, 20 digits>.wal`, each a run of frames
// (see RecordFrame). A record's index is its segment's first index plus its position, so no
// index is stored per record. Only the last segment is ever written.
//
// Not thread-safe: after opening, a log is owned by one thread (the GroupCommitter's writer).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class WriteAheadLog {
    public struct Options: Sendable {
        /// Roll to a new segment once the current one reaches this size.
        public var segmentBytes: Int
        /// False skips fdatasync (tests and benchmarks only: acknowledged writes may be lost).
        public var fsync: Bool

        public init(segmentBytes: Int = 64 << 20, fsync: Bool = true) {
            self.segmentBytes = segmentBytes
            self.fsync = fsync
        }
    }

    struct Segment {
        var firstIndex: UInt64
        var path: String
        var size: Int64
    }

    public let directory: String
    public let options: Options
    private var segments: [Segment] = []
    private var fd: Int32 = -1
    /// Framed bytes appended but not yet written to the file.
    private var buffer: [UInt8] = []
    /// Index the next appended record gets.
    public private(set) var nextIndex: UInt64
    /// Bytes cut off the tail at open (a torn write), for logging.
    public private(set) var truncatedBytesAtOpen: Int64 = 0

    /// Opens (creating if needed) the log in `directory`, truncating a torn tail of the last
    /// segment. `firstIndex` numbers the first record of a brand-new log.
    public init(directory: String, firstIndex: UInt64 = 1, options: Options = Options()) throws {
        self.directory = directory
        self.options = options
        self.nextIndex = firstIndex
        try FileIO.createDirectory(directory)
        var found: [Segment] = []
        for name in try FileIO.listDirectory(directory) {
            guard name.hasSuffix(".wal"), let first = UInt64(name.dropLast(4)) else { continue }
            let path = directory + "/" + name
            found.append(Segment(firstIndex: first, path: path, size: FileIO.fileSize(path)))
        }
        found.sort { $0.firstIndex < $1.firstIndex }
        segments = found
        if segments.isEmpty {
            try openNewSegment(firstIndex: firstIndex)
        } else {
            try recoverLastSegment()
        }
    }

    deinit {
        if fd >= 0 { FileIO.close(fd) }
    }

    /// Index of the oldest record still stored (== nextIndex when the log is empty).
    public var firstIndex: UInt64 { segments.first?.firstIndex ?? nextIndex }
    /// Index of the newest record, or firstIndex - 1 when empty.
    public var lastIndex: UInt64 { nextIndex - 1 }
    public var isEmpty: Bool { firstIndex == nextIndex }
    /// Bytes in all segments, including appended but unwritten ones.
    public var totalBytes: Int64 { segments.reduce(0) { $0 + $1.size } + Int64(buffer.count) }
    public var segmentCount: Int { segments.count }

    private func segmentPath(_ firstIndex: UInt64) -> String {
        let digits = String(firstIndex)
        return directory + "/" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".wal"
    }

    private func openNewSegment(firstIndex: UInt64) throws {
        let path = segmentPath(firstIndex)
        let newFD = try FileIO.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC | O_APPEND)
        // The new file's directory entry must be durable before records in it are acknowledged.
        do { try FileIO.syncDirectory(directory) } catch {
            FileIO.close(newFD)
            throw error
        }
        if fd >= 0 { FileIO.close(fd) }
        fd = newFD
        segments.append(Segment(firstIndex: firstIndex, path: path, size: 0))
    }

    /// Counts the valid records of the last segment and cuts the file at the first bad one.
    private func recoverLastSegment() throws {
        let last = segments[segments.count - 1]
        let bytes = try FileIO.readAll(last.path)
        var count: UInt64 = 0
        var validEnd = 0
        bytes.withUnsafeBytes { raw in
            var offset = 0
            scan: while true {
                switch RecordFrame.decode(raw, at: offset) {
                case .record(_, let next):
                    count += 1
                    offset = next
                case .end, .invalid:
                    break scan
                }
            }
            validEnd = offset
        }
        let newFD = try FileIO.open(last.path, flags: O_WRONLY | O_APPEND)
        if validEnd < bytes.count {
            truncatedBytesAtOpen = Int64(bytes.count - validEnd)
            do {
                try FileIO.truncate(newFD, to: Int64(validEnd), path: last.path)
                try FileIO.syncFile(newFD, path: last.path)
            } catch {
                FileIO.close(newFD)
                throw error
            }
        }
        fd = newFD
        segments[segments.count - 1].size = Int64(validEnd)
        nextIndex = last.firstIndex + count
    }

    /// Frames `payload` as the next record and returns its index. Nothing is on disk until `sync()`.
    @discardableResult
    public func append(_ payload: [UInt8]) throws -> UInt64 {
        guard fd >= 0 else { throw StorageError.closed }
        let current = segments[segments.count - 1]
        if current.size + Int64(buffer.count) >= Int64(options.segmentBytes),
           current.size + Int64(buffer.count) > 0 {
            try flushBuffer()
            if options.fsync { try FileIO.syncData(fd, path: current.path) }
            try openNewSegment(firstIndex: nextIndex)
        }
        RecordFrame.append(payload, to: &buffer)
        let index = nextIndex
        nextIndex += 1
        return index
    }

    private func flushBuffer() throws {
        guard !buffer.isEmpty else { return }
        let path = segments[segments.count - 1].path
        try FileIO.writeAll(fd, buffer, path: path)
        segments[segments.count - 1].size += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: buffer.capacity <= 8 << 20)
    }

    /// Writes everything appended and makes it durable with one fdatasync.
    public func sync() throws {
        guard fd >= 0 else { throw StorageError.closed }
        try flushBuffer()
        if options.fsync { try FileIO.syncData(fd, path: segments[segments.count - 1].path) }
    }

    /// Calls `body` with each record at index >= `index`, in order. Reads the files, so call it
    /// after `sync()` (at start-up, before any append, is the usual place).
    public func forEach(from index: UInt64, _ body: (UInt64, [UInt8]) throws -> Void) throws {
        try flushBuffer()
        for (i, segment) in segments.enumerated() {
            let segmentEnd = i + 1 < segments.count ? segments[i + 1].firstIndex : nextIndex
            if segmentEnd <= index { continue }
            let bytes = try FileIO.readAll(segment.path)
            var recordIndex = segment.firstIndex
            var offset = 0
            while recordIndex < segmentEnd {
                let decoded = bytes.withUnsafeBytes { RecordFrame.decode($0, at: offset) }
                guard case .record(let payload, let next) = decoded else {
                    throw StorageError.corrupt("bad record \(recordIndex) in \(segment.path)")
                }
                if recordIndex >= index { try body(recordIndex, Array(bytes[payload])) }
                offset = next
                recordIndex += 1
            }
        }
    }

    /// Deletes whole segments whose records all have indexes < `index` (they are covered by a
    /// snapshot). The segment being written is never deleted.
    public func removeSegments(before index: UInt64) throws {
        var removed = 0
        while segments.count - removed > 1, segments[removed + 1].firstIndex <= index {
            try FileIO.remove(segments[removed].path)
            removed += 1
        }
        if removed > 0 {
            segments.removeFirst(removed)
            try FileIO.syncDirectory(directory)
        }
    }

    /// Drops every record and starts over so the next record gets `nextIndex` (used when a
    /// snapshot newer than the whole log is installed).
    public func reset(nextIndex newNext: UInt64) throws {
        buffer.removeAll()
        if fd >= 0 { FileIO.close(fd); fd = -1 }
        for segment in segments { try FileIO.remove(segment.path) }
        segments.removeAll()
        nextIndex = newNext
        try openNewSegment(firstIndex: newNext)
    }

    /// Writes what is buffered (without fsync) and closes the file.
    public func close() {
        if fd >= 0 {
            try? flushBuffer()
            FileIO.close(fd)
            fd = -1
        }
    }
}
