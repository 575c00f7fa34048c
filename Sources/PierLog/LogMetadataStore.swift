// Where the log keeps its metadata (topics, configs, committed offsets): a small durable KV interface.

import Foundation

/// Pier keeps this in its own KV store under `LogMetadataKeys.prefix`; the engine only needs
/// durable single-key writes and prefix listing. Completions may run on any thread, and a
/// write's completion means the change is on disk.
public protocol LogMetadataStore: Sendable {
    func put(key: [UInt8], value: [UInt8], completion: @escaping @Sendable (Result<Void, LogError>) -> Void)
    /// Several puts made durable together (one commit of many offsets). A default runs them one by one.
    func putAll(_ entries: [(key: [UInt8], value: [UInt8])], completion: @escaping @Sendable (Result<Void, LogError>) -> Void)
    func get(key: [UInt8], completion: @escaping @Sendable (Result<[UInt8]?, LogError>) -> Void)
    func delete(key: [UInt8], completion: @escaping @Sendable (Result<Void, LogError>) -> Void)
    /// Every key starting with `prefix`, in key order.
    func list(prefix: [UInt8], completion: @escaping @Sendable (Result<[(key: [UInt8], value: [UInt8])], LogError>) -> Void)
}

/// The reserved key space: "\0pier/log/" then a kind and names separated by "/".
/// Topic names cannot contain "/" or NUL, so keys never collide across kinds.
public enum LogMetadataKeys {
    public static let prefix = "\u{0}pier/log/"

    static func topic(_ name: String) -> [UInt8] { Array((prefix + "topic/" + name).utf8) }
    static let topics: [UInt8] = Array((prefix + "topic/").utf8)
    static let producerIdBlock: [UInt8] = Array((prefix + "producer-id-block").utf8)
    /// Group ids may hold any character; they are escaped so "/" stays a separator.
    static func groupOffsets(_ group: String) -> [UInt8] { Array((prefix + "group/" + escape(group) + "/").utf8) }
    static func groupOffset(_ group: String, _ topic: String, _ partition: Int32) -> [UInt8] {
        groupOffsets(group) + Array("\(topic)/\(partition)".utf8)
    }
    static let groups: [UInt8] = Array((prefix + "group/").utf8)
    static func queue(_ topic: String, _ queue: String) -> [UInt8] {
        Array((prefix + "queue/" + topic + "/" + escape(queue) + "/").utf8)
    }
    static func queueFloor(_ topic: String, _ queue: String, _ partition: Int32) -> [UInt8] {
        self.queue(topic, queue) + Array(String(partition).utf8)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "%": out += "%25"
            case "/": out += "%2F"
            case "\u{0}": out += "%00"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: Substring) -> String {
        var out = ""
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            if c == "%", let a = it.next(), let b = it.next(), let v = UInt8(String([Character(a), Character(b)]), radix: 16) {
                out.unicodeScalars.append(Unicode.Scalar(v))
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

extension LogMetadataStore {
    public func putAll(_ entries: [(key: [UInt8], value: [UInt8])], completion: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        guard !entries.isEmpty else {
            completion(.success(()))
            return
        }
        let collector = ResultCollector<Result<Void, LogError>>(count: entries.count) { results in
            completion(results.first(where: { if case .failure = $0 { return true } else { return false } }) ?? .success(()))
        }
        for (i, e) in entries.enumerated() { put(key: e.key, value: e.value) { collector.set(i, $0) } }
    }

    // Blocking forms for start-up and admin paths (never on the writer thread or an event loop).
    func putSync(_ key: [UInt8], _ value: [UInt8]) throws {
        try blocking { done in put(key: key, value: value, completion: done) }
    }

    func getSync(_ key: [UInt8]) throws -> [UInt8]? {
        try blocking { done in get(key: key, completion: done) }
    }

    func deleteSync(_ key: [UInt8]) throws {
        try blocking { done in delete(key: key, completion: done) }
    }

    func listSync(_ prefix: [UInt8]) throws -> [(key: [UInt8], value: [UInt8])] {
        try blocking { done in list(prefix: prefix, completion: done) }
    }
}

func blocking<T: Sendable>(_ start: (@escaping @Sendable (Result<T, LogError>) -> Void) -> Void) throws -> T {
    let sem = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    start { r in
        box.set(r.mapError { $0 as Error })
        sem.signal()
    }
    sem.wait()
    return try box.get()
}
