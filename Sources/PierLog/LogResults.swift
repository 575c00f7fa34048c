// Values the log engine hands back to callers: append acknowledgements, fetched bytes, descriptions.

public struct AppendResult: Sendable, Equatable {
    public var partition: Int32
    public var baseOffset: Int64
    public var lastOffset: Int64
    public var recordCount: Int32
    /// The batch was a retry of one already stored; the offsets are the original's.
    public var duplicate: Bool
    public var logStartOffset: Int64
}

/// Stored batch frames as they are on disk (see RecordBatch.swift); decode with RecordBatchReader.
public struct FetchResult: Sendable {
    /// Whole frames, starting with the one containing the requested offset. Empty when nothing new.
    public var records: ArraySlice<UInt8>
    public var highWatermark: Int64
    public var logStartOffset: Int64
    /// The offset to fetch next.
    public var nextOffset: Int64
}

public struct PartitionInfo: Sendable, Equatable {
    public var partition: Int32
    public var logStartOffset: Int64
    /// The high watermark: every offset below it is durable and readable.
    public var logEndOffset: Int64
    public var sizeBytes: Int64
    public var segments: Int32
}

public struct TopicDescription: Sendable, Equatable {
    public var name: String
    public var configs: [String: String]
    public var partitions: [PartitionInfo]
}

public struct OffsetAndTimestamp: Sendable, Equatable {
    public var partition: Int32
    public var offset: Int64
    /// For lookups by time: the found record's timestamp, -1 when none was found.
    public var timestampMs: Int64
}
