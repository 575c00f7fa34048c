// A file-backed LogMetadataStore for tests and standalone use: an append-only, CRC-checked change log.

import Foundation
import PierStorage
import Synchronization

/// Every put/delete is appended as a CRC-framed entry and fdatasynced before completing;
/// the whole map is in memory. Opening replays the file, ignoring a torn final entry, and
/// rewrites it compactly (atomic replace) when it has grown well past the live data.
public final class FileLogMetadataStore: LogMetadataStore {
    private struct State {
        var map: [[UInt8]: [UInt8]] = [:]
        var file: LogFile
        var size: Int
        var liveBytes = 0
    }

    private let path: String
    private let directory: String
    private let state: Mutex<State>

    public init(path: String) throws {
        self.path = path
        directory = (path as NSString).deletingLastPathComponent
        let file = try LogFile(path: path, create: true)
        let bytes = try file.read(count: try file.size(), at: 0)
        var map: [[UInt8]: [UInt8]] = [:]
        var pos = 0
        bytes.withUnsafeBytes { b in
            // Entry: u32 crc, u8 kind (1 put, 2 delete), u32 key length, u32 value length, key, value.
            while pos + 13 <= b.count {
                let crc = WireBytes.loadLE(b, pos, as: UInt32.self)
                let kl = Int(WireBytes.loadLE(b, pos + 5, as: UInt32.self))
                let vl = Int(WireBytes.loadLE(b, pos + 9, as: UInt32.self))
                let end = pos + 13 + kl + vl
                guard end <= b.count, CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[(pos + 4)..<end])) == crc else { break }
                let key = Array(b[(pos + 13)..<(pos + 13 + kl)])
                if b[pos + 4] == 1 { map[key] = Array(b[(pos + 13 + kl)..<end]) } else { map[key] = nil }
                pos = end
            }
        }
        if pos < bytes.count {
            try file.truncate(to: pos)
            try file.sync()
        }
        var st = State(map: map, file: file, size: pos)
        st.liveBytes = map.reduce(0) { $0 + 13 + $1.key.count + $1.value.count }
        state = Mutex(st)
        if pos > 4 * st.liveBytes + 65536 { try compact() }
    }

    private static func entry(kind: UInt8, key: [UInt8], value: [UInt8]) -> [UInt8] {
        var e = [UInt8](repeating: 0, count: 4)
        e.append(kind)
        withUnsafeBytes(of: UInt32(key.count).littleEndian) { e.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(value.count).littleEndian) { e.append(contentsOf: $0) }
        e += key
        e += value
        let crc = e.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[4...])) }
        e.withUnsafeMutableBytes { WireBytes.storeLE(crc, $0, 0) }
        return e
    }

    private func write(kind: UInt8, key: [UInt8], value: [UInt8]) throws {
        try write([(kind, key, value)])
    }

    /// Appends the entries with one write and one sync, then applies them.
    private func write(_ changes: [(kind: UInt8, key: [UInt8], value: [UInt8])]) throws {
        try state.withLock { st in
            var bytes: [UInt8] = []
            for c in changes { bytes += Self.entry(kind: c.kind, key: c.key, value: c.value) }
            try st.file.write(bytes, at: st.size)
            try st.file.sync()
            st.size += bytes.count
            for (kind, key, value) in changes {
                if let old = st.map[key] { st.liveBytes -= 13 + key.count + old.count }
                if kind == 1 {
                    st.map[key] = value
                    st.liveBytes += 13 + key.count + value.count
                } else {
                    st.map[key] = nil
                }
            }
        }
        let (size, live) = state.withLock { ($0.size, $0.liveBytes) }
        if size > 4 * live + 1 << 20 { try? compact() }
    }

    private func compact() throws {
        try state.withLock { st in
            var bytes: [UInt8] = []
            for (k, v) in st.map.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                bytes += Self.entry(kind: 1, key: k, value: v)
            }
            try LogFS.writeAtomically(bytes, to: path, directory: directory.isEmpty ? "." : directory)
            st.file = try LogFile(path: path, create: false)
            st.size = bytes.count
        }
    }

    public func put(key: [UInt8], value: [UInt8], completion: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        do {
            try write(kind: 1, key: key, value: value)
            completion(.success(()))
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
        }
    }

    public func putAll(_ entries: [(key: [UInt8], value: [UInt8])], completion: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        do {
            try write(entries.map { (1, $0.key, $0.value) })
            completion(.success(()))
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
        }
    }

    public func get(key: [UInt8], completion: @escaping @Sendable (Result<[UInt8]?, LogError>) -> Void) {
        completion(.success(state.withLock { $0.map[key] }))
    }

    public func delete(key: [UInt8], completion: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        do {
            try write(kind: 2, key: key, value: [])
            completion(.success(()))
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
        }
    }

    public func list(prefix: [UInt8], completion: @escaping @Sendable (Result<[(key: [UInt8], value: [UInt8])], LogError>) -> Void) {
        let items = state.withLock { st in
            st.map.filter { $0.key.starts(with: prefix) }.map { (key: $0.key, value: $0.value) }
        }
        completion(.success(items.sorted { $0.key.lexicographicallyPrecedes($1.key) }))
    }
}
