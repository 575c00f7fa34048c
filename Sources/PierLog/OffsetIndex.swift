// Sparse map from offsets to file positions in one segment, so a read seeks instead of scanning.

import PierStorage

/// Entries are added every `index.interval.bytes` of appended data; a lookup returns the
/// position of the last indexed batch at or before the target, and the reader scans forward.
struct OffsetIndex: Sendable {
    /// (offset relative to the segment's base, byte position of the batch's frame).
    private(set) var entries: [(relative: UInt32, position: UInt32)] = []

    var count: Int { entries.count }

    mutating func append(relativeOffset: UInt32, position: UInt32) {
        if let last = entries.last, last.relative >= relativeOffset { return }
        entries.append((relativeOffset, position))
    }

    /// Position to start scanning from for `relativeOffset` (0 when before every entry).
    func lookup(_ relativeOffset: UInt32) -> Int {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].relative <= relativeOffset { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? 0 : Int(entries[lo - 1].position)
    }

    /// Drops entries at or beyond `position` (after truncation).
    mutating func truncate(toPosition position: Int) {
        while let last = entries.last, Int(last.position) >= position { entries.removeLast() }
    }

    func encodedEntries() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(entries.count * 8)
        for e in entries {
            withUnsafeBytes(of: e.relative.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: e.position.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    static func decode(entries body: ArraySlice<UInt8>) -> OffsetIndex? {
        guard body.count % 8 == 0 else { return nil }
        var index = OffsetIndex()
        body.withUnsafeBytes { b in
            for i in stride(from: 0, to: b.count, by: 8) {
                index.entries.append((WireBytes.loadLE(b, i, as: UInt32.self), WireBytes.loadLE(b, i + 4, as: UInt32.self)))
            }
        }
        return index
    }
}

/// Index files end with a trailer (entry bytes length, CRC-32C) so a partial or stale file
/// is detected and the index rebuilt from the segment instead.
enum IndexFile {
    static func seal(_ body: [UInt8]) -> [UInt8] {
        var out = body
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(body).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    static func open(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count >= 8 else { return nil }
        let body = Array(bytes[0..<(bytes.count - 8)])
        let (len, crc) = bytes.withUnsafeBytes { b in
            (WireBytes.loadLE(b, bytes.count - 8, as: UInt32.self), WireBytes.loadLE(b, bytes.count - 4, as: UInt32.self))
        }
        guard Int(len) == body.count, CRC32C.checksum(body) == crc else { return nil }
        return body
    }
}
