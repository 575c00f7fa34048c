// A record as producers hand it in and consumers get it out, decoded into Swift values.

public struct RecordHeader: Sendable, Equatable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

public struct Record: Sendable, Equatable {
    /// nil or empty: no key.
    public var key: [UInt8]?
    /// nil: a tombstone (deletes the key on a compacted topic).
    public var value: [UInt8]?
    public var headers: [RecordHeader]
    /// Milliseconds since the epoch; 0 means "stamp with the append time".
    public var timestampMs: Int64

    public init(key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [], timestampMs: Int64 = 0) {
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMs = timestampMs
    }

    var hasKey: Bool { !(key?.isEmpty ?? true) }
}

/// A record read back from the log, with the offset it was stored at.
public struct StoredRecord: Sendable, Equatable {
    public var offset: Int64
    public var record: Record

    public init(offset: Int64, record: Record) {
        self.offset = offset
        self.record = record
    }
}
