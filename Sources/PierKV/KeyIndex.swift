// The sorted key index: every key ever written (until compacted away) in byte order, with its revisions.
//
// A two-level "sorted list of sorted chunks" (the idea behind Python's sortedcontainers):
// lookups are two binary searches, an insert shifts at most one chunk of pointers, and a range
// scan walks chunks in order. Simpler than a B-tree, nearly as fast at a million keys, and far
// cheaper to insert into than one flat sorted array.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-wise comparison, like Go's bytes.Compare (etcd's key order).
@inline(__always)
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            let n = min(pa.count, pb.count)
            if n > 0 {
                let r = memcmp(pa.baseAddress!, pb.baseAddress!, n)
                if r != 0 { return Int(r) }
            }
            return pa.count - pb.count
        }
    }
}

/// One stored revision of a key.
struct KeyVersion {
    var main: Int64
    var sub: Int32
    var tombstone: Bool
    var createRevision: Int64
    var version: Int64
    var lease: Int64
    var value: [UInt8]
}

/// A key and its revisions since the last compaction, oldest first. Mutated only under the
/// store's write lock.
final class KeyRecord {
    let key: [UInt8]
    var versions: [KeyVersion]

    init(key: [UInt8], versions: [KeyVersion] = []) {
        self.key = key
        self.versions = versions
    }

    /// Position of the newest version with main revision <= `revision`.
    @inline(__always)
    func versionIndex(atOrBefore revision: Int64) -> Int? {
        var i = versions.count - 1
        // Almost every read is of the newest version: check it before searching.
        if i < 0 { return nil }
        if versions[i].main <= revision { return i }
        var lo = 0, hi = i
        while lo < hi {
            let mid = (lo + hi) >> 1
            if versions[mid].main <= revision { lo = mid + 1 } else { hi = mid }
        }
        i = lo - 1
        return i >= 0 ? i : nil
    }

    /// Position of the version written at (main, sub), if still stored.
    func versionIndex(main: Int64, sub: Int32) -> Int? {
        guard let i = versionIndex(atOrBefore: main) else { return nil }
        var j = i
        while j >= 0, versions[j].main == main {
            if versions[j].sub == sub { return j }
            j -= 1
        }
        return nil
    }

    /// The live version at `revision`, or nil when absent or deleted.
    @inline(__always)
    func live(at revision: Int64) -> Int? {
        guard let i = versionIndex(atOrBefore: revision), !versions[i].tombstone else { return nil }
        return i
    }

    var isLive: Bool {
        guard let last = versions.last else { return false }
        return !last.tombstone
    }

    func keyValue(_ i: Int, withValue: Bool = true) -> KeyValue {
        let v = versions[i]
        if v.tombstone { return KeyValue(key: key, modRevision: v.main) }
        return KeyValue(key: key, createRevision: v.createRevision, modRevision: v.main,
                        version: v.version, value: withValue ? v.value : [], lease: v.lease)
    }
}

/// How a request's `range_end` bounds it (etcd's conventions).
enum KeyRangeEnd {
    /// Empty range_end: just the key.
    case single
    /// range_end == "\0": every key >= key.
    case unbounded
    /// [key, end).
    case before([UInt8])

    init(_ rangeEnd: [UInt8]) {
        if rangeEnd.isEmpty {
            self = .single
        } else if rangeEnd.count == 1 && rangeEnd[0] == 0 {
            self = .unbounded
        } else {
            self = .before(rangeEnd)
        }
    }

    /// Whether `key` (>= the range's start) is still inside.
    @inline(__always)
    func admits(_ key: [UInt8]) -> Bool {
        switch self {
        case .single: return false
        case .unbounded: return true
        case .before(let end): return compareBytes(key, end) < 0
        }
    }

    func contains(_ key: [UInt8], start: [UInt8]) -> Bool {
        switch self {
        case .single: return key == start
        case .unbounded: return compareBytes(key, start) >= 0
        case .before(let end): return compareBytes(key, start) >= 0 && compareBytes(key, end) < 0
        }
    }
}

struct KeyIndex {
    static let maxChunk = 512

    private(set) var chunks: [[KeyRecord]] = []
    private(set) var count = 0

    /// (chunk, position) of the first record whose key is >= `key`; chunk == chunks.count when none.
    @inline(__always)
    func lowerBound(_ key: [UInt8]) -> (chunk: Int, position: Int) {
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if compareBytes(chunks[mid][chunks[mid].count - 1].key, key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        if lo == chunks.count { return (lo, 0) }
        return chunks[lo].withUnsafeBufferPointer { chunk in
            var l = 0, h = chunk.count
            while l < h {
                let m = (l + h) >> 1
                if compareBytes(chunk[m].key, key) < 0 { l = m + 1 } else { h = m }
            }
            return (lo, l)
        }
    }

    func find(_ key: [UInt8]) -> KeyRecord? {
        let (c, p) = lowerBound(key)
        guard c < chunks.count else { return nil }
        let record = chunks[c][p]
        return record.key == key ? record : nil
    }

    /// The record for `key`, created (empty) when missing.
    mutating func findOrInsert(_ key: [UInt8]) -> KeyRecord {
        var (c, p) = lowerBound(key)
        if c < chunks.count {
            let record = chunks[c][p]
            if record.key == key { return record }
        }
        let record = KeyRecord(key: key)
        if chunks.isEmpty {
            chunks.append([record])
            count = 1
            return record
        }
        if c == chunks.count {
            c -= 1
            p = chunks[c].count
        }
        chunks[c].insert(record, at: p)
        count += 1
        if chunks[c].count > Self.maxChunk {
            let half = chunks[c].count / 2
            let tail = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(tail, at: c + 1)
        }
        return record
    }

    /// Appends a record known to sort after every existing key (snapshot loading).
    mutating func appendSorted(_ record: KeyRecord) {
        if chunks.isEmpty || chunks[chunks.count - 1].count >= Self.maxChunk / 2 {
            var chunk: [KeyRecord] = []
            chunk.reserveCapacity(Self.maxChunk / 2)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(record)
        count += 1
    }

    /// Removes every record for which `shouldRemove` is true, keeping order.
    mutating func removeAll(where shouldRemove: (KeyRecord) -> Bool) {
        var removed = 0
        for c in chunks.indices {
            let before = chunks[c].count
            chunks[c].removeAll(where: shouldRemove)
            removed += before - chunks[c].count
        }
        if removed > 0 {
            chunks.removeAll { $0.isEmpty }
            count -= removed
        }
    }

    /// Visits records with key >= `start` in order while `end` admits them (a `.single` range
    /// visits just `start` if present), until `body` returns false.
    func forEach(from start: [UInt8], to end: KeyRangeEnd, _ body: (KeyRecord) -> Bool) {
        if case .single = end {
            if let record = find(start) { _ = body(record) }
            return
        }
        var (c, p) = lowerBound(start)
        while c < chunks.count {
            let chunk = chunks[c]
            while p < chunk.count {
                let record = chunk[p]
                if !end.admits(record.key) { return }
                if !body(record) { return }
                p += 1
            }
            c += 1
            p = 0
        }
    }

    /// Every record in key order.
    func forEachRecord(_ body: (KeyRecord) throws -> Void) rethrows {
        for chunk in chunks {
            for record in chunk { try body(record) }
        }
    }
}
