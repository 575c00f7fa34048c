// Request and response metadata: HTTP/2 header fields that are not gRPC's own.

/// Custom metadata of a call. Keys are lower-case; keys ending in `-bin` carry binary values
/// (base64 on the wire, decoded here), all others carry printable ASCII.
public struct Metadata: Sendable, Sequence {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public var isBinary: Bool { key.hasSuffix("-bin") }
        /// The value as text (binary values are returned as raw bytes decoded lossily).
        public var text: String { String(decoding: value, as: UTF8.self) }
    }

    private var entries: [Entry] = []

    public init() {}

    public mutating func append(_ key: String, _ value: String) {
        entries.append(Entry(key: key.lowercased(), value: Array(value.utf8)))
    }

    public mutating func append(_ key: String, bytes: [UInt8]) {
        entries.append(Entry(key: key.lowercased(), value: bytes))
    }

    /// The first text value for `key`.
    public subscript(key: String) -> String? {
        entries.first { $0.key == key }.map(\.text)
    }

    /// The first binary value for `key` (a `-bin` key).
    public func bytes(_ key: String) -> [UInt8]? {
        entries.first { $0.key == key }?.value
    }

    public func values(_ key: String) -> [Entry] { entries.filter { $0.key == key } }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }
}
