// The stored batch format: a protobuf `RecordBatch` with a fixed-layout header, framed as field 1.
//
// A segment file is a sequence of frames `0x0a <varint length> <RecordBatch bytes>`, which is
// exactly the encoding of `repeated RecordBatch batches = 1` in the Fetch and Subscribe replies
// (see Proto/pier/log/v1/log.proto), so stored bytes go to clients without re-encoding.

import PierStorage

/// Byte offsets of the header fields within a batch message (after the frame prefix).
enum BatchLayout {
    static let frameTag: UInt8 = 0x0A
    static let baseOffset = 1            // fixed64, tag 0x09 at 0
    static let leaderEpoch = 10          // fixed32, tag 0x15 at 9
    static let crc = 15                  // fixed32, tag 0x1d at 14
    static let crcCoveredFrom = 19
    static let producerId = 20           // sfixed64, tag 0x21 at 19
    static let baseSequence = 29         // sfixed32, tag 0x2d at 28
    static let recordCount = 34          // fixed32, tag 0x35 at 33
    static let lastOffsetDelta = 39      // fixed32, tag 0x3d at 38
    static let firstTimestamp = 44       // sfixed64, tag 0x41 at 43
    static let maxTimestamp = 53         // sfixed64, tag 0x49 at 52
    static let attributes = 62           // fixed32, tag 0x55 at 61
    static let headerSize = 66
    static let tags: [(Int, UInt8)] = [
        (0, 0x09), (9, 0x15), (14, 0x1D), (19, 0x21), (28, 0x2D), (33, 0x35),
        (38, 0x3D), (43, 0x41), (52, 0x49), (61, 0x55),
    ]
    static let recordTag: UInt8 = 0x7A   // field 15, length-delimited
    /// Room reserved in front of a batch for the frame tag and a varint length of up to 5 bytes.
    static let framePrefixReserve = 6
    /// The largest batch the format accepts (the varint length must fit in 5 bytes and UInt32).
    static let maxBatchSize = Int(Int32.max)
    static let currentLeaderEpoch: UInt32 = 1
    static let noProducer: Int64 = -1
}

/// The fixed header of one stored batch, plus where its frame sits.
public struct BatchHeader: Sendable, Equatable {
    public var baseOffset: Int64
    public var leaderEpoch: UInt32
    public var crc: UInt32
    public var producerId: Int64
    public var baseSequence: Int32
    public var recordCount: Int32
    public var lastOffsetDelta: Int32
    public var firstTimestampMs: Int64
    public var maxTimestampMs: Int64
    public var attributes: UInt32
    /// Bytes of the whole frame (tag + varint length + batch).
    public var frameSize: Int
    /// Bytes of the tag and varint length in front of the batch.
    public var prefixSize: Int

    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    public var nextOffset: Int64 { lastOffset + 1 }
    public var lastSequence: Int32 { baseSequence &+ lastOffsetDelta }
}

/// Why a frame could not be read: `truncated` means more bytes are needed (or the tail is torn),
/// `corrupt` means the bytes are not a batch.
enum FrameError: Error, Equatable {
    case truncated(needed: Int)
    case corrupt(String)
}

enum BatchFrame {
    /// Parses the frame starting at `pos`. With `verifyCRC` the whole batch must be present.
    static func parseHeader(_ b: UnsafeRawBufferPointer, at pos: Int, verifyCRC: Bool) throws -> BatchHeader {
        let end = b.count
        guard pos < end else { throw FrameError.truncated(needed: 1) }
        guard b[pos] == BatchLayout.frameTag else { throw FrameError.corrupt("bad frame tag \(b[pos]) at \(pos)") }
        var p = pos + 1
        var length: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard p < end else { throw FrameError.truncated(needed: BatchLayout.framePrefixReserve) }
            let byte = b[p]
            p += 1
            length |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
            guard shift < 35 else { throw FrameError.corrupt("frame length varint too long at \(pos)") }
        }
        guard length >= UInt64(BatchLayout.headerSize), length <= UInt64(BatchLayout.maxBatchSize) else {
            throw FrameError.corrupt("implausible batch length \(length) at \(pos)")
        }
        let prefix = p - pos
        let batchLen = Int(length)
        let frameSize = prefix + batchLen
        let available = end - p
        guard available >= BatchLayout.headerSize else { throw FrameError.truncated(needed: frameSize) }
        for (at, tag) in BatchLayout.tags where b[p + at] != tag {
            throw FrameError.corrupt("bad batch header field tag at \(pos + prefix + at)")
        }
        let h = BatchHeader(
            baseOffset: Int64(bitPattern: WireBytes.loadLE(b, p + BatchLayout.baseOffset, as: UInt64.self)),
            leaderEpoch: WireBytes.loadLE(b, p + BatchLayout.leaderEpoch, as: UInt32.self),
            crc: WireBytes.loadLE(b, p + BatchLayout.crc, as: UInt32.self),
            producerId: WireBytes.loadLE(b, p + BatchLayout.producerId, as: Int64.self),
            baseSequence: WireBytes.loadLE(b, p + BatchLayout.baseSequence, as: Int32.self),
            recordCount: Int32(bitPattern: WireBytes.loadLE(b, p + BatchLayout.recordCount, as: UInt32.self)),
            lastOffsetDelta: Int32(bitPattern: WireBytes.loadLE(b, p + BatchLayout.lastOffsetDelta, as: UInt32.self)),
            firstTimestampMs: WireBytes.loadLE(b, p + BatchLayout.firstTimestamp, as: Int64.self),
            maxTimestampMs: WireBytes.loadLE(b, p + BatchLayout.maxTimestamp, as: Int64.self),
            attributes: WireBytes.loadLE(b, p + BatchLayout.attributes, as: UInt32.self),
            frameSize: frameSize,
            prefixSize: prefix)
        guard h.recordCount >= 0, h.lastOffsetDelta >= 0 else { throw FrameError.corrupt("negative record count at \(pos)") }
        if verifyCRC {
            guard available >= batchLen else { throw FrameError.truncated(needed: frameSize) }
            let covered = UnsafeRawBufferPointer(rebasing: b[(p + BatchLayout.crcCoveredFrom)..<(p + batchLen)])
            guard CRC32C.checksum(covered) == h.crc else { throw FrameError.corrupt("CRC mismatch in batch at \(pos)") }
        }
        return h
    }
}

/// An encoded batch ready to append: the frame bytes, and the header fields the log needs.
public struct EncodedBatch: Sendable {
    /// Frame bytes live at storage[frameStart...].
    var storage: [UInt8]
    var frameStart: Int
    public let recordCount: Int32
    public let lastOffsetDelta: Int32
    public let firstTimestampMs: Int64
    public let maxTimestampMs: Int64
    public let producerId: Int64
    public let baseSequence: Int32
    /// True when some record has no key (rejected by compacted topics).
    public let hasKeylessRecord: Bool

    public var frameSize: Int { storage.count - frameStart }
    var batchStart: Int { storage.count - batchSize }
    var batchSize: Int

    /// Sets the base offset (outside the CRC, like Kafka, so no checksum work at append time).
    mutating func setBaseOffset(_ offset: Int64) {
        let at = batchStart + BatchLayout.baseOffset
        storage.withUnsafeMutableBytes { WireBytes.storeLE(UInt64(bitPattern: offset), $0, at) }
    }
}

/// Encodes records straight into batch bytes, one growing buffer per batch, no per-record objects.
public struct RecordBatchBuilder: Sendable {
    private var buffer: [UInt8]
    private var count: Int32 = 0
    /// Offset delta of the next record; differs from `count` only when compaction keeps gaps.
    private var nextDelta: Int32 = 0
    private var firstTimestamp: Int64 = 0
    private var maxTimestamp: Int64 = Int64.min
    private var keyless = false
    private let appendTimeMs: Int64

    /// - Parameter appendTimeMs: the timestamp given to records whose own timestamp is 0.
    public init(appendTimeMs: Int64, capacity: Int = 4096) {
        self.appendTimeMs = appendTimeMs
        buffer = []
        buffer.reserveCapacity(capacity + BatchLayout.framePrefixReserve + BatchLayout.headerSize)
        buffer.append(contentsOf: repeatElement(0, count: BatchLayout.framePrefixReserve + BatchLayout.headerSize))
    }

    public var recordCount: Int { Int(count) }
    public var isEmpty: Bool { count == 0 }
    /// Encoded size so far (a bound for splitting batches).
    public var byteCount: Int { buffer.count }

    /// Appends one record. An empty key means no key; a nil value makes a tombstone.
    public mutating func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?,
                                timestampMs: Int64 = 0, headers: [RecordHeader] = []) {
        let ts = timestampMs == 0 ? appendTimeMs : timestampMs
        let delta = UInt64(UInt32(bitPattern: nextDelta))
        var size = 0
        if key.count > 0 { size += 1 + WireBytes.varintSize(UInt64(key.count)) + key.count }
        if let value, value.count > 0 { size += 1 + WireBytes.varintSize(UInt64(value.count)) + value.count }
        for h in headers {
            let inner = Self.headerBodySize(h)
            size += 1 + WireBytes.varintSize(UInt64(inner)) + inner
        }
        if ts != 0 { size += 1 + WireBytes.varintSize(UInt64(bitPattern: ts)) }
        if delta != 0 { size += 1 + WireBytes.varintSize(delta) }
        if value == nil { size += 2 }
        if key.count == 0 { keyless = true }
        if count == 0 { firstTimestamp = ts }
        if ts > maxTimestamp { maxTimestamp = ts }
        count += 1
        nextDelta += 1

        if headers.isEmpty {
            // The common case, written through one pointer: growing the array once and storing
            // into it is several times faster than appending field by field.
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: 1 + WireBytes.varintSize(UInt64(size)) + size))
            buffer.withUnsafeMutableBytes { b in
                var p = b.baseAddress! + start
                func put(_ byte: UInt8) {
                    p.storeBytes(of: byte, as: UInt8.self)
                    p += 1
                }
                func bytesField(_ tag: UInt8, _ data: UnsafeRawBufferPointer) {
                    put(tag)
                    p += WireBytes.writeVarint(UInt64(data.count), to: p)
                    p.copyMemory(from: data.baseAddress!, byteCount: data.count)
                    p += data.count
                }
                put(BatchLayout.recordTag)
                p += WireBytes.writeVarint(UInt64(size), to: p)
                if key.count > 0 { bytesField(0x0A, key) }
                if let value, value.count > 0 { bytesField(0x12, value) }
                if ts != 0 {
                    put(0x20)
                    p += WireBytes.writeVarint(UInt64(bitPattern: ts), to: p)
                }
                if delta != 0 {
                    put(0x28)
                    p += WireBytes.writeVarint(delta, to: p)
                }
                if value == nil {
                    put(0x30)
                    put(1)
                }
            }
            return
        }

        buffer.append(BatchLayout.recordTag)
        WireBytes.appendVarint(UInt64(size), to: &buffer)
        if key.count > 0 {
            buffer.append(0x0A)
            WireBytes.appendVarint(UInt64(key.count), to: &buffer)
            buffer.append(contentsOf: key)
        }
        if let value, value.count > 0 {
            buffer.append(0x12)
            WireBytes.appendVarint(UInt64(value.count), to: &buffer)
            buffer.append(contentsOf: value)
        }
        for h in headers {
            buffer.append(0x1A)
            WireBytes.appendVarint(UInt64(Self.headerBodySize(h)), to: &buffer)
            if !h.key.isEmpty {
                buffer.append(0x0A)
                WireBytes.appendVarint(UInt64(h.key.count), to: &buffer)
                buffer.append(contentsOf: h.key)
            }
            if !h.value.isEmpty {
                buffer.append(0x12)
                WireBytes.appendVarint(UInt64(h.value.count), to: &buffer)
                buffer.append(contentsOf: h.value)
            }
        }
        if ts != 0 {
            buffer.append(0x20)
            WireBytes.appendVarint(UInt64(bitPattern: ts), to: &buffer)
        }
        if delta != 0 {
            buffer.append(0x28)
            WireBytes.appendVarint(delta, to: &buffer)
        }
        if value == nil {
            buffer.append(0x30)
            buffer.append(1)
        }
    }

    public mutating func append(_ record: Record) {
        let key = record.key ?? []
        key.withUnsafeBytes { k in
            if let value = record.value {
                value.withUnsafeBytes { v in
                    append(key: k, value: v, timestampMs: record.timestampMs, headers: record.headers)
                }
            } else {
                append(key: k, value: nil, timestampMs: record.timestampMs, headers: record.headers)
            }
        }
    }

    /// Appends a record keeping an explicit offset delta (used when compaction rewrites a batch).
    mutating func appendRetained(_ view: RecordView, offsetDelta: Int32) {
        nextDelta = offsetDelta
        append(key: view.key, value: view.value, timestampMs: view.timestampMs, headers: view.headers())
    }

    private static func headerBodySize(_ h: RecordHeader) -> Int {
        var n = 0
        if !h.key.isEmpty { n += 1 + WireBytes.varintSize(UInt64(h.key.count)) + h.key.count }
        if !h.value.isEmpty { n += 1 + WireBytes.varintSize(UInt64(h.value.count)) + h.value.count }
        return n
    }

    /// Finishes the batch. `producerId` -1 means not idempotent.
    public consuming func build(producerId: Int64 = -1, baseSequence: Int32 = -1) -> EncodedBatch {
        finish(producerId: producerId, baseSequence: baseSequence, baseOffset: 0,
               recordCount: count, lastOffsetDelta: nextDelta - 1, attributes: 0)
    }

    /// Finishes a batch rewritten by compaction, keeping the original header's identity.
    consuming func buildRetained(from original: BatchHeader) -> EncodedBatch {
        finish(producerId: original.producerId, baseSequence: original.baseSequence,
               baseOffset: original.baseOffset, recordCount: count,
               lastOffsetDelta: original.lastOffsetDelta, attributes: original.attributes,
               leaderEpoch: original.leaderEpoch, timestamps: (original.firstTimestampMs, original.maxTimestampMs))
    }

    private consuming func finish(producerId: Int64, baseSequence: Int32, baseOffset: Int64, recordCount: Int32,
                                  lastOffsetDelta: Int32, attributes: UInt32,
                                  leaderEpoch: UInt32 = BatchLayout.currentLeaderEpoch,
                                  timestamps: (Int64, Int64)? = nil) -> EncodedBatch {
        let b0 = BatchLayout.framePrefixReserve
        let batchSize = buffer.count - b0
        let first = timestamps?.0 ?? firstTimestamp
        let maxTs = timestamps?.1 ?? (count == 0 ? appendTimeMs : maxTimestamp)
        let prefix = 1 + WireBytes.varintSize(UInt64(batchSize))
        let frameStart = b0 - prefix
        let keyless = self.keyless
        buffer.withUnsafeMutableBytes { b in
            for (at, tag) in BatchLayout.tags { b[b0 + at] = tag }
            WireBytes.storeLE(UInt64(bitPattern: baseOffset), b, b0 + BatchLayout.baseOffset)
            WireBytes.storeLE(leaderEpoch, b, b0 + BatchLayout.leaderEpoch)
            WireBytes.storeLE(producerId, b, b0 + BatchLayout.producerId)
            WireBytes.storeLE(baseSequence, b, b0 + BatchLayout.baseSequence)
            WireBytes.storeLE(UInt32(bitPattern: recordCount), b, b0 + BatchLayout.recordCount)
            WireBytes.storeLE(UInt32(bitPattern: max(lastOffsetDelta, 0)), b, b0 + BatchLayout.lastOffsetDelta)
            WireBytes.storeLE(first, b, b0 + BatchLayout.firstTimestamp)
            WireBytes.storeLE(maxTs, b, b0 + BatchLayout.maxTimestamp)
            WireBytes.storeLE(attributes, b, b0 + BatchLayout.attributes)
            let covered = UnsafeRawBufferPointer(rebasing: b[(b0 + BatchLayout.crcCoveredFrom)...])
            WireBytes.storeLE(CRC32C.checksum(covered), b, b0 + BatchLayout.crc)
            b[frameStart] = BatchLayout.frameTag
            _ = WireBytes.writeVarint(UInt64(batchSize), to: b.baseAddress! + frameStart + 1)
        }
        return EncodedBatch(storage: buffer, frameStart: frameStart, recordCount: recordCount,
                            lastOffsetDelta: max(lastOffsetDelta, 0), firstTimestampMs: first, maxTimestampMs: maxTs,
                            producerId: producerId, baseSequence: baseSequence, hasKeylessRecord: keyless,
                            batchSize: batchSize)
    }
}

/// One record inside a stored batch, viewed in place (valid only inside the enclosing call).
public struct RecordView {
    public let offset: Int64
    public let timestampMs: Int64
    public let key: UnsafeRawBufferPointer
    /// nil for a tombstone.
    public let value: UnsafeRawBufferPointer?
    let headerBytes: [Range<Int>]
    let base: UnsafeRawBufferPointer

    public func headers() -> [RecordHeader] {
        headerBytes.map { r in
            var k: [UInt8] = [], v: [UInt8] = []
            var p = r.lowerBound
            while p < r.upperBound {
                let tag = base[p]; p += 1
                guard let len = WireBytes.readVarint(base, &p, end: r.upperBound) else { break }
                let field = Array(base[p..<min(p + Int(len), r.upperBound)])
                p += Int(len)
                if tag == 0x0A { k = field } else if tag == 0x12 { v = field }
            }
            return RecordHeader(key: k, value: v)
        }
    }

    public func toRecord() -> Record {
        Record(key: key.isEmpty ? nil : Array(key), value: value.map { Array($0) },
               headers: headers(), timestampMs: timestampMs)
    }
}

/// Walks the records of stored frames without copying them.
public enum RecordBatchReader {
    /// Calls `body` for every record of every whole frame in `bytes` (as returned by a fetch).
    /// Throws on corrupt data; a truncated final frame is ignored.
    public static func forEachRecord(in bytes: UnsafeRawBufferPointer, verifyCRC: Bool = false,
                                     _ body: (RecordView) throws -> Void) throws {
        var pos = 0
        while pos < bytes.count {
            let h: BatchHeader
            do {
                h = try BatchFrame.parseHeader(bytes, at: pos, verifyCRC: verifyCRC)
            } catch FrameError.truncated {
                return
            } catch {
                throw LogError.storage("corrupt batch data: \(error)")
            }
            guard pos + h.frameSize <= bytes.count else { return }
            try forEachRecord(batch: h, frame: bytes, at: pos, body)
            pos += h.frameSize
        }
    }

    static func forEachRecord(batch h: BatchHeader, frame b: UnsafeRawBufferPointer, at pos: Int,
                              _ body: (RecordView) throws -> Void) throws {
        var p = pos + h.prefixSize + BatchLayout.headerSize
        let end = pos + h.frameSize
        while p < end {
            // Skip unknown batch fields so newer writers stay readable.
            let tag = b[p]
            p += 1
            guard tag == BatchLayout.recordTag else {
                try skipField(tag: tag, b, &p, end: end)
                continue
            }
            guard let len = WireBytes.readVarint(b, &p, end: end), p + Int(len) <= end else {
                throw LogError.storage("corrupt record in batch at offset \(h.baseOffset)")
            }
            let rEnd = p + Int(len)
            var key = UnsafeRawBufferPointer(start: nil, count: 0)
            var value: UnsafeRawBufferPointer? = UnsafeRawBufferPointer(start: nil, count: 0)
            var ts: Int64 = 0, delta: UInt64 = 0
            var headers: [Range<Int>] = []
            while p < rEnd {
                let t = b[p]
                p += 1
                switch t {
                case 0x0A, 0x12, 0x1A:
                    guard let l = WireBytes.readVarint(b, &p, end: rEnd), p + Int(l) <= rEnd else {
                        throw LogError.storage("corrupt record field in batch at offset \(h.baseOffset)")
                    }
                    let r = p..<(p + Int(l))
                    if t == 0x0A { key = UnsafeRawBufferPointer(rebasing: b[r]) }
                    else if t == 0x12 { if value != nil { value = UnsafeRawBufferPointer(rebasing: b[r]) } }
                    else { headers.append(r) }
                    p = r.upperBound
                case 0x20:
                    ts = Int64(bitPattern: WireBytes.readVarint(b, &p, end: rEnd) ?? 0)
                case 0x28:
                    delta = WireBytes.readVarint(b, &p, end: rEnd) ?? 0
                case 0x30:
                    if (WireBytes.readVarint(b, &p, end: rEnd) ?? 0) != 0 { value = nil }
                default:
                    try skipField(tag: t, b, &p, end: rEnd)
                }
            }
            try body(RecordView(offset: h.baseOffset + Int64(delta), timestampMs: ts, key: key, value: value,
                                headerBytes: headers, base: b))
            p = rEnd
        }
    }

    private static func skipField(tag: UInt8, _ b: UnsafeRawBufferPointer, _ p: inout Int, end: Int) throws {
        switch tag & 7 {
        case 0: _ = WireBytes.readVarint(b, &p, end: end)
        case 1: p += 8
        case 2:
            guard let l = WireBytes.readVarint(b, &p, end: end) else { throw LogError.storage("corrupt field") }
            p += Int(l)
        case 5: p += 4
        default: throw LogError.storage("unknown wire type in batch")
        }
        if p > end { throw LogError.storage("field runs past the end of its batch") }
    }

    /// Decodes every record at or after `fromOffset` in fetched bytes into Swift values.
    public static func records(in bytes: [UInt8], fromOffset: Int64 = 0) throws -> [StoredRecord] {
        var out: [StoredRecord] = []
        try bytes.withUnsafeBytes { b in
            try forEachRecord(in: b) { r in
                if r.offset >= fromOffset { out.append(StoredRecord(offset: r.offset, record: r.toRecord())) }
            }
        }
        return out
    }

    /// The headers of every whole frame in `bytes`.
    public static func headers(in bytes: UnsafeRawBufferPointer) -> [BatchHeader] {
        var out: [BatchHeader] = []
        var pos = 0
        while pos < bytes.count, let h = try? BatchFrame.parseHeader(bytes, at: pos, verifyCRC: false),
              pos + h.frameSize <= bytes.count {
            out.append(h)
            pos += h.frameSize
        }
        return out
    }
}
