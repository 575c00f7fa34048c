// Errors the log engine reports, each with a message a person can act on and the gRPC code it maps to.

/// The gRPC status code a `LogError` is meant to be reported with (numeric values are gRPC's).
public enum LogErrorCode: Int, Sendable {
    case cancelled = 1
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case `internal` = 13
    case unavailable = 14
}

public enum LogError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidArgument(String)
    case topicNotFound(String)
    case topicAlreadyExists(String)
    case partitionNotFound(topic: String, partition: Int32, partitions: Int32)
    /// The requested offset is outside the stored range [logStartOffset, logEndOffset].
    case offsetOutOfRange(topic: String, partition: Int32, offset: Int64, logStartOffset: Int64, logEndOffset: Int64)
    /// An idempotent producer skipped or reordered a sequence number.
    case outOfOrderSequence(producerId: Int64, partition: Int32, expected: Int32, received: Int32)
    case recordTooLarge(size: Int, max: Int)
    case groupNotFound(String)
    case unknownMember(group: String, memberId: String)
    /// A commit or heartbeat from a generation the group has moved past.
    case illegalGeneration(group: String, memberId: String, generation: Int64, current: Int64)
    case resourceExhausted(String)
    /// A file operation failed; the partition may be unusable until restart.
    case storage(String)
    case closed

    public var code: LogErrorCode {
        switch self {
        case .invalidArgument, .recordTooLarge: return .invalidArgument
        case .topicNotFound, .partitionNotFound, .groupNotFound: return .notFound
        case .topicAlreadyExists: return .alreadyExists
        case .offsetOutOfRange: return .outOfRange
        case .outOfOrderSequence, .unknownMember, .illegalGeneration: return .failedPrecondition
        case .resourceExhausted: return .resourceExhausted
        case .storage: return .internal
        case .closed: return .unavailable
        }
    }

    public var message: String {
        switch self {
        case .invalidArgument(let m): return m
        case .topicNotFound(let t): return "topic \"\(t)\" does not exist; create it first or check the name"
        case .topicAlreadyExists(let t): return "topic \"\(t)\" already exists"
        case .partitionNotFound(let t, let p, let n):
            return "topic \"\(t)\" has no partition \(p); it has \(n) partitions (0...\(n - 1))"
        case .offsetOutOfRange(let t, let p, let o, let start, let end):
            return "offset \(o) is out of range for \(t)/\(p): stored offsets are [\(start), \(end)) "
                + "(log start offset \(start), log end offset \(end)); seek to one of them"
        case .outOfOrderSequence(let id, let p, let expected, let received):
            return "out-of-order sequence for producer \(id) on partition \(p): expected \(expected), got \(received); "
                + "a batch was lost or reordered, start a new producer"
        case .recordTooLarge(let size, let max):
            return "batch of \(size) bytes exceeds max.message.bytes (\(max)); send smaller batches or raise the topic's max.message.bytes"
        case .groupNotFound(let g): return "consumer group \"\(g)\" does not exist"
        case .unknownMember(let g, let m): return "member \"\(m)\" is not in group \"\(g)\" (session expired or left); join again"
        case .illegalGeneration(let g, let m, let gen, let cur):
            return "member \"\(m)\" of group \"\(g)\" used generation \(gen) but the group is at generation \(cur); "
                + "the group rebalanced: use the latest assignment"
        case .resourceExhausted(let m): return m
        case .storage(let m): return "storage failure: \(m)"
        case .closed: return "the log engine is shut down"
        }
    }

    public var description: String { message }
}
