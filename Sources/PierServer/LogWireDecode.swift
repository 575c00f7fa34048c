// Decodes pier.log.v1 request messages (protobuf-c) into the Swift values the log engine takes.
import CProtobufC
import PierGRPC
import PierLog
import PierProto

/// Request parameters after validation that the engine does not do itself (ranges of sizes
/// and waits, enum values), so a bad request fails before it reaches the engine.
enum LogDecode {
    /// Default and ceiling for the batch bytes of one Fetch or Subscribe reply. The ceiling
    /// keeps a reply under what gRPC clients accept by default (4 MiB) with room for a batch
    /// that overshoots the bound (a reply always carries at least one whole batch).
    static let defaultMaxBytes = 1 << 20
    static let maxMaxBytes = 2 << 20
    /// Longest long-poll a Fetch may ask for; a client wanting longer simply asks again.
    static let maxFetchWaitMs: Int32 = 60_000

    struct CreateTopic {
        var topic: String
        var partitions: Int32
        var configs: [String: String]
    }

    struct AlterTopicConfig {
        var topic: String
        var set: [String: String]
        var remove: [String]
    }

    struct Fetch {
        var topic: String
        var partition: Int32
        var offset: Int64
        var maxBytes: Int
        var maxWaitMs: Int64
    }

    struct Subscribe {
        var topic: String
        var partition: Int32
        var start: LogEngine.StartPosition
        var maxBytes: Int
    }

    struct ListOffsets {
        var topic: String
        var partitions: [Int32]
        var spec: LogEngine.OffsetSpec
    }

    struct Join {
        var groupId: String
        var topics: [String]
        var memberId: String
        var clientId: String
        var sessionTimeoutMs: Int64
        var assignor: Assignor
    }

    enum GroupSessionMessage {
        case join(Join)
        case heartbeat(generation: Int64)
        case leave
    }

    struct CommitOffsets {
        var groupId: String
        var memberId: String
        var generation: Int64
        var offsets: [GroupCoordinator.CommittedOffset]
    }

    // MARK: topics

    static func createTopic(_ bytes: [UInt8]) throws -> CreateTopic {
        try WireMessage.decode(bytes, as: "pier.log.v1.CreateTopicRequest",
                               unpack: pier__log__v1__create_topic_request__unpack,
                               free: pier__log__v1__create_topic_request__free_unpacked) { m in
            CreateTopic(topic: wireString(m.pointee.topic), partitions: m.pointee.partitions,
                        configs: stringMap(m.pointee.configs, m.pointee.n_configs) { ($0.pointee.key, $0.pointee.value) })
        }
    }

    static func topicName(deleteRequest bytes: [UInt8]) throws -> String {
        try WireMessage.decode(bytes, as: "pier.log.v1.DeleteTopicRequest",
                               unpack: pier__log__v1__delete_topic_request__unpack,
                               free: pier__log__v1__delete_topic_request__free_unpacked) { wireString($0.pointee.topic) }
    }

    static func topicName(describeRequest bytes: [UInt8]) throws -> String {
        try WireMessage.decode(bytes, as: "pier.log.v1.DescribeTopicRequest",
                               unpack: pier__log__v1__describe_topic_request__unpack,
                               free: pier__log__v1__describe_topic_request__free_unpacked) { wireString($0.pointee.topic) }
    }

    static func alterTopicConfig(_ bytes: [UInt8]) throws -> AlterTopicConfig {
        try WireMessage.decode(bytes, as: "pier.log.v1.AlterTopicConfigRequest",
                               unpack: pier__log__v1__alter_topic_config_request__unpack,
                               free: pier__log__v1__alter_topic_config_request__free_unpacked) { m in
            AlterTopicConfig(topic: wireString(m.pointee.topic),
                             set: stringMap(m.pointee.set, m.pointee.n_set) { ($0.pointee.key, $0.pointee.value) },
                             remove: (0..<m.pointee.n_remove).map { wireString(m.pointee.remove[$0]) })
        }
    }

    // Requests without fields still have to be valid protobuf.
    static func emptyListTopicsRequest(_ bytes: [UInt8]) throws {
        try WireMessage.decode(bytes, as: "pier.log.v1.ListTopicsRequest", unpack: pier__log__v1__list_topics_request__unpack,
                               free: pier__log__v1__list_topics_request__free_unpacked) { _ in }
    }

    static func emptyInitProducerRequest(_ bytes: [UInt8]) throws {
        try WireMessage.decode(bytes, as: "pier.log.v1.InitProducerRequest", unpack: pier__log__v1__init_producer_request__unpack,
                               free: pier__log__v1__init_producer_request__free_unpacked) { _ in }
    }

    static func emptyListGroupsRequest(_ bytes: [UInt8]) throws {
        try WireMessage.decode(bytes, as: "pier.log.v1.ListGroupsRequest", unpack: pier__log__v1__list_groups_request__unpack,
                               free: pier__log__v1__list_groups_request__free_unpacked) { _ in }
    }

    // MARK: reads

    static func fetch(_ bytes: [UInt8]) throws -> Fetch {
        try WireMessage.decode(bytes, as: "pier.log.v1.FetchRequest",
                               unpack: pier__log__v1__fetch_request__unpack,
                               free: pier__log__v1__fetch_request__free_unpacked) { m in
            let r = m.pointee
            try logRequire(r.max_wait_ms >= 0 && r.max_wait_ms <= maxFetchWaitMs,
                           "max_wait_ms \(r.max_wait_ms) is outside [0, \(maxFetchWaitMs)]")
            return Fetch(topic: try topic(r.topic), partition: r.partition, offset: r.offset,
                         maxBytes: try maxBytes(r.max_bytes), maxWaitMs: Int64(r.max_wait_ms))
        }
    }

    static func subscribe(_ bytes: [UInt8]) throws -> Subscribe {
        try WireMessage.decode(bytes, as: "pier.log.v1.SubscribeRequest",
                               unpack: pier__log__v1__subscribe_request__unpack,
                               free: pier__log__v1__subscribe_request__free_unpacked) { m in
            let r = m.pointee
            let start: LogEngine.StartPosition
            switch r.start {
            case PIER__LOG__V1__START_POSITION__START_POSITION_OFFSET: start = .offset(r.offset)
            case PIER__LOG__V1__START_POSITION__START_POSITION_EARLIEST: start = .earliest
            case PIER__LOG__V1__START_POSITION__START_POSITION_LATEST: start = .latest
            case PIER__LOG__V1__START_POSITION__START_POSITION_TIMESTAMP: start = .timestamp(r.timestamp_ms)
            default: throw GRPCStatus(.invalidArgument, "unknown start position \(r.start.rawValue)")
            }
            return Subscribe(topic: try topic(r.topic), partition: r.partition, start: start,
                             maxBytes: try maxBytes(r.max_bytes))
        }
    }

    static func listOffsets(_ bytes: [UInt8]) throws -> ListOffsets {
        try WireMessage.decode(bytes, as: "pier.log.v1.ListOffsetsRequest",
                               unpack: pier__log__v1__list_offsets_request__unpack,
                               free: pier__log__v1__list_offsets_request__free_unpacked) { m in
            let r = m.pointee
            let spec: LogEngine.OffsetSpec
            switch r.spec {
            case PIER__LOG__V1__OFFSET_SPEC__OFFSET_SPEC_LATEST: spec = .latest
            case PIER__LOG__V1__OFFSET_SPEC__OFFSET_SPEC_EARLIEST: spec = .earliest
            case PIER__LOG__V1__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP: spec = .timestamp(r.timestamp_ms)
            default: throw GRPCStatus(.invalidArgument, "unknown offset spec \(r.spec.rawValue)")
            }
            let partitions = Array(UnsafeBufferPointer(start: r.partitions, count: r.n_partitions))
            return ListOffsets(topic: try topic(r.topic), partitions: partitions, spec: spec)
        }
    }

    // MARK: groups

    static func groupSessionMessage(_ bytes: [UInt8]) throws -> GroupSessionMessage? {
        try WireMessage.decode(bytes, as: "pier.log.v1.JoinGroupRequest",
                               unpack: pier__log__v1__join_group_request__unpack,
                               free: pier__log__v1__join_group_request__free_unpacked) { m -> GroupSessionMessage? in
            switch m.pointee.kind_case {
            case PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_JOIN:
                let j = m.pointee.join.pointee
                let assignor: Assignor
                switch j.assignor {
                case PIER__LOG__V1__ASSIGNOR__ASSIGNOR_RANGE: assignor = .range
                case PIER__LOG__V1__ASSIGNOR__ASSIGNOR_ROUND_ROBIN: assignor = .roundRobin
                case PIER__LOG__V1__ASSIGNOR__ASSIGNOR_STICKY: assignor = .sticky
                default: throw GRPCStatus(.invalidArgument, "unknown assignor \(j.assignor.rawValue)")
                }
                try logRequire(j.session_timeout_ms >= 0, "session_timeout_ms \(j.session_timeout_ms) is negative")
                return .join(Join(
                    groupId: wireString(j.group_id),
                    topics: (0..<j.n_topics).map { wireString(j.topics[$0]) },
                    memberId: wireString(j.member_id), clientId: wireString(j.client_id),
                    sessionTimeoutMs: j.session_timeout_ms == 0 ? GroupCoordinator.defaultSessionTimeoutMs : Int64(j.session_timeout_ms),
                    assignor: assignor))
            case PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_HEARTBEAT:
                return .heartbeat(generation: m.pointee.heartbeat.pointee.generation)
            case PIER__LOG__V1__JOIN_GROUP_REQUEST__KIND_LEAVE:
                return .leave
            default:
                return nil
            }
        }
    }

    static func commitOffsets(_ bytes: [UInt8]) throws -> CommitOffsets {
        try WireMessage.decode(bytes, as: "pier.log.v1.CommitOffsetsRequest",
                               unpack: pier__log__v1__commit_offsets_request__unpack,
                               free: pier__log__v1__commit_offsets_request__free_unpacked) { m in
            let r = m.pointee
            let offsets = try (0..<r.n_offsets).map { i -> GroupCoordinator.CommittedOffset in
                let o = r.offsets[i]!.pointee
                return GroupCoordinator.CommittedOffset(topic: try topic(o.topic), partition: o.partition,
                                                        offset: o.offset, metadata: wireString(o.metadata))
            }
            return CommitOffsets(groupId: wireString(r.group_id), memberId: wireString(r.member_id),
                                 generation: r.generation, offsets: offsets)
        }
    }

    /// The group id and the partitions asked for (nil: all of them).
    static func fetchOffsets(_ bytes: [UInt8]) throws -> (groupId: String, partitions: [TopicPartition]?) {
        try WireMessage.decode(bytes, as: "pier.log.v1.FetchOffsetsRequest",
                               unpack: pier__log__v1__fetch_offsets_request__unpack,
                               free: pier__log__v1__fetch_offsets_request__free_unpacked) { m in
            let r = m.pointee
            var partitions: [TopicPartition] = []
            for i in 0..<r.n_partitions {
                let tp = r.partitions[i]!.pointee
                let name = wireString(tp.topic)
                for j in 0..<tp.n_partitions { partitions.append(TopicPartition(topic: name, partition: tp.partitions[j])) }
            }
            return (wireString(r.group_id), r.n_partitions == 0 ? nil : partitions)
        }
    }

    static func groupId(describeRequest bytes: [UInt8]) throws -> String {
        try WireMessage.decode(bytes, as: "pier.log.v1.DescribeGroupRequest",
                               unpack: pier__log__v1__describe_group_request__unpack,
                               free: pier__log__v1__describe_group_request__free_unpacked) { wireString($0.pointee.group_id) }
    }

    // MARK: fields

    /// A topic name that is at least present (the engine checks the rest of the naming rules).
    static func topic(_ pointer: UnsafeMutablePointer<CChar>?) throws -> String {
        let name = wireString(pointer)
        try logRequire(!name.isEmpty, "topic is empty")
        return name
    }

    static func maxBytes(_ value: Int32) throws -> Int {
        try logRequire(value >= 0, "max_bytes \(value) is negative")
        return value == 0 ? defaultMaxBytes : min(Int(value), maxMaxBytes)
    }

    /// A protobuf map field (repeated key/value entries; a later duplicate key wins, as in protobuf).
    static func stringMap<Entry>(_ entries: UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>?, _ count: Int,
                                 _ fields: (UnsafeMutablePointer<Entry>) -> (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<CChar>?))
        -> [String: String] {
        var map: [String: String] = [:]
        guard let entries else { return map }
        for i in 0..<count {
            guard let entry = entries[i] else { continue }
            let (key, value) = fields(entry)
            map[wireString(key)] = wireString(value)
        }
        return map
    }
}
