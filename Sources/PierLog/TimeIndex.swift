// Sparse map from timestamps to file positions in one segment, for finding offsets by time.

/// An entry (t, position) promises that every record stored before `position` has a
/// timestamp <= t. Entries are strictly increasing in t, so a lookup for target T starts
/// scanning at the last entry with t < T: nothing before it can have a timestamp >= T.
struct TimeIndex: Sendable {
    private(set) var entries: [(timestamp: Int64, position: UInt32)] = []

    mutating func append(timestamp: Int64, position: UInt32) {
        if let last = entries.last, last.timestamp >= timestamp || last.position >= position { return }
        entries.append((timestamp, position))
    }

    func lookup(_ target: Int64) -> Int {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].timestamp < target { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? 0 : Int(entries[lo - 1].position)
    }

    mutating func truncate(toPosition position: Int) {
        while let last = entries.last, Int(last.position) >= position { entries.removeLast() }
    }

    func encodedEntries() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(entries.count * 12)
        for e in entries {
            withUnsafeBytes(of: e.timestamp.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: e.position.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    static func decode(entries body: ArraySlice<UInt8>) -> TimeIndex? {
        guard body.count % 12 == 0 else { return nil }
        var index = TimeIndex()
        body.withUnsafeBytes { b in
            for i in stride(from: 0, to: b.count, by: 12) {
                index.entries.append((WireBytes.loadLE(b, i, as: Int64.self), WireBytes.loadLE(b, i + 8, as: UInt32.self)))
            }
        }
        return index
    }
}
