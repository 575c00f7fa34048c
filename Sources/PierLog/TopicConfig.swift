// Per-topic settings: parsed, validated and defaulted from the string map clients send.

public struct TopicConfig: Sendable, Equatable {
    public enum CleanupPolicy: String, Sendable { case delete, compact }

    public var cleanupDelete = true
    public var cleanupCompact = false
    public var retentionMs: Int64 = 604_800_000
    public var retentionBytes: Int64 = -1
    public var segmentBytes: Int64 = 1_073_741_824
    public var segmentMs: Int64 = 604_800_000
    public var deleteRetentionMs: Int64 = 86_400_000
    public var maxMessageBytes: Int64 = 1_048_588
    public var indexIntervalBytes: Int64 = 4096
    public var queueMaxAttempts: Int64 = 5
    /// Empty: "<topic>.dlq".
    public var queueDeadLetterTopic: String = ""

    /// The values set explicitly (what is persisted; the rest are defaults).
    public private(set) var overrides: [String: String] = [:]

    public static let keys: [String] = [
        "cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms",
        "delete.retention.ms", "max.message.bytes", "index.interval.bytes",
        "queue.max.attempts", "queue.dead.letter.topic",
    ]

    public init() {}

    /// Parses `configs`, rejecting unknown keys and bad values with a message naming them.
    public init(_ configs: [String: String]) throws {
        for (k, v) in configs.sorted(by: { $0.key < $1.key }) { try set(k, v) }
    }

    public mutating func set(_ key: String, _ value: String) throws {
        func int(min: Int64) throws -> Int64 {
            guard let n = Int64(value.trimmingSpaces) else {
                throw LogError.invalidArgument("config \(key)=\"\(value)\" is not an integer")
            }
            guard n >= min else { throw LogError.invalidArgument("config \(key)=\(n) is below the minimum \(min)") }
            return n
        }
        switch key {
        case "cleanup.policy":
            let parts = value.split(separator: ",").map { String($0).trimmingSpaces }
            guard !parts.isEmpty, parts.allSatisfy({ $0 == "delete" || $0 == "compact" }) else {
                throw LogError.invalidArgument("config cleanup.policy=\"\(value)\" is invalid: use \"delete\", \"compact\" or \"compact,delete\"")
            }
            cleanupDelete = parts.contains("delete")
            cleanupCompact = parts.contains("compact")
        case "retention.ms": retentionMs = try int(min: -1)
        case "retention.bytes": retentionBytes = try int(min: -1)
        case "segment.bytes":
            segmentBytes = try int(min: 1024)
            guard segmentBytes <= Int64(Int32.max) else {
                throw LogError.invalidArgument("config segment.bytes=\(segmentBytes) is above the maximum \(Int32.max)")
            }
        case "segment.ms": segmentMs = try int(min: 1)
        case "delete.retention.ms": deleteRetentionMs = try int(min: 0)
        case "max.message.bytes": maxMessageBytes = try int(min: 128)
        case "index.interval.bytes": indexIntervalBytes = try int(min: 0)
        case "queue.max.attempts": queueMaxAttempts = try int(min: 1)
        case "queue.dead.letter.topic":
            if !value.isEmpty { try TopicName.validate(value) }
            queueDeadLetterTopic = value
        default:
            throw LogError.invalidArgument("unknown topic config \"\(key)\"; known configs: \(Self.keys.joined(separator: ", "))")
        }
        overrides[key] = value
    }

    /// Resets `key` to its default.
    public mutating func remove(_ key: String) throws {
        guard Self.keys.contains(key) else {
            throw LogError.invalidArgument("unknown topic config \"\(key)\"; known configs: \(Self.keys.joined(separator: ", "))")
        }
        var fresh = TopicConfig()
        for (k, v) in overrides where k != key { try fresh.set(k, v) }
        self = fresh
    }

    public var cleanupPolicy: String {
        switch (cleanupCompact, cleanupDelete) {
        case (true, true): return "compact,delete"
        case (true, false): return "compact"
        default: return "delete"
        }
    }

    /// Every config with its effective value.
    public var all: [String: String] {
        [
            "cleanup.policy": cleanupPolicy,
            "retention.ms": String(retentionMs),
            "retention.bytes": String(retentionBytes),
            "segment.bytes": String(segmentBytes),
            "segment.ms": String(segmentMs),
            "delete.retention.ms": String(deleteRetentionMs),
            "max.message.bytes": String(maxMessageBytes),
            "index.interval.bytes": String(indexIntervalBytes),
            "queue.max.attempts": String(queueMaxAttempts),
            "queue.dead.letter.topic": queueDeadLetterTopic,
        ]
    }

    public func deadLetterTopic(for topic: String) -> String {
        queueDeadLetterTopic.isEmpty ? topic + ".dlq" : queueDeadLetterTopic
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
