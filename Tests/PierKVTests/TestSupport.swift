// Helpers for KV tests: stores, byte literals, a settable clock.
import Foundation
@testable import PierKV

func b(_ s: String) -> [UInt8] { Array(s.utf8) }
func s(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

func memoryStore(_ configure: (inout KVOptions) -> Void = { _ in }) throws -> KVStore {
    var options = KVOptions()
    configure(&options)
    return try KVStore(options: options)
}

func makeTemporaryDirectory() -> String {
    let path = FileManager.default.temporaryDirectory.path + "/pier-kv-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// A monotonic clock tests move by hand.
final class ManualClock: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var value: UInt64 = 1_000_000_000_000

    var now: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func advance(seconds: Double) {
        lock.lock()
        value += UInt64(seconds * 1e9)
        lock.unlock()
    }

    var function: @Sendable () -> UInt64 { { [self] in self.now } }
}

extension KVStore {
    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> PutResponse {
        try await put(PutRequest(key: b(key), value: b(value), lease: lease))
    }

    func get(_ key: String, revision: Int64 = 0) throws -> KeyValue? {
        try range(RangeRequest(key: b(key), revision: revision)).kvs.first
    }

    func keys(_ r: RangeRequest) throws -> [String] {
        try range(r).kvs.map { s($0.key) }
    }

    func all(revision: Int64 = 0) throws -> [KeyValue] {
        try range(RangeRequest(key: [0], rangeEnd: [0], revision: revision)).kvs
    }
}
