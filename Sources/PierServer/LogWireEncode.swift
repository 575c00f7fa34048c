// Encodes the log engine's results as pier.log.v1 response messages (protobuf-c, arena-allocated).
import CProtobufC
import PierGRPC
import PierLog
import PierProto

enum LogEncode {
    // MARK: topics

    static func topicResponse(_ description: TopicDescription, kind: TopicResponseKind) -> [UInt8] {
        WireArena.with { arena in
            let topic = topicDescription(description, arena)
            switch kind {
            case .create:
                var m = Pier__Log__V1__CreateTopicResponse()
                pier__log__v1__create_topic_response__init(&m)
                m.topic = topic
                return WireMessage.encode(&m, size: pier__log__v1__create_topic_response__get_packed_size,
                                          pack: pier__log__v1__create_topic_response__pack)
            case .describe:
                var m = Pier__Log__V1__DescribeTopicResponse()
                pier__log__v1__describe_topic_response__init(&m)
                m.topic = topic
                return WireMessage.encode(&m, size: pier__log__v1__describe_topic_response__get_packed_size,
                                          pack: pier__log__v1__describe_topic_response__pack)
            case .alter:
                var m = Pier__Log__V1__AlterTopicConfigResponse()
                pier__log__v1__alter_topic_config_response__init(&m)
                m.topic = topic
                return WireMessage.encode(&m, size: pier__log__v1__alter_topic_config_response__get_packed_size,
                                          pack: pier__log__v1__alter_topic_config_response__pack)
            }
        }
    }

    enum TopicResponseKind { case create, describe, alter }

    private static func topicDescription(_ d: TopicDescription, _ arena: WireArena) -> UnsafeMutablePointer<Pier__Log__V1__TopicDescription> {
        let t = arena.message(Pier__Log__V1__TopicDescription.self, pier__log__v1__topic_description__init)
        t.pointee.topic = arena.cString(d.name)
        let configs = d.configs.sorted { $0.key < $1.key }
        let entries = arena.pointers(Pier__Log__V1__TopicDescription__ConfigsEntry.self, count: configs.count)
        for (i, (key, value)) in configs.enumerated() {
            let e = arena.message(Pier__Log__V1__TopicDescription__ConfigsEntry.self, pier__log__v1__topic_description__configs_entry__init)
            e.pointee.key = arena.cString(key)
            e.pointee.value = arena.cString(value)
            entries[i] = e
        }
        t.pointee.n_configs = configs.count
        t.pointee.configs = entries
        let partitions = arena.pointers(Pier__Log__V1__PartitionDescription.self, count: d.partitions.count)
        for (i, info) in d.partitions.enumerated() {
            let p = arena.message(Pier__Log__V1__PartitionDescription.self, pier__log__v1__partition_description__init)
            p.pointee.partition = info.partition
            p.pointee.log_start_offset = info.logStartOffset
            p.pointee.log_end_offset = info.logEndOffset
            p.pointee.size_bytes = info.sizeBytes
            p.pointee.segments = info.segments
            partitions[i] = p
        }
        t.pointee.n_partitions = d.partitions.count
        t.pointee.partitions = partitions
        return t
    }

    static func listTopics(_ topics: [(name: String, partitions: Int32)]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__ListTopicsResponse()
            pier__log__v1__list_topics_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__TopicSummary.self, count: topics.count)
            for (i, t) in topics.enumerated() {
                let s = arena.message(Pier__Log__V1__TopicSummary.self, pier__log__v1__topic_summary__init)
                s.pointee.topic = arena.cString(t.name)
                s.pointee.partitions = t.partitions
                array[i] = s
            }
            m.n_topics = topics.count
            m.topics = array
            return WireMessage.encode(&m, size: pier__log__v1__list_topics_response__get_packed_size,
                                      pack: pier__log__v1__list_topics_response__pack)
        }
    }

    static func initProducer(_ id: Int64) -> [UInt8] {
        var m = Pier__Log__V1__InitProducerResponse()
        pier__log__v1__init_producer_response__init(&m)
        m.producer_id = id
        return WireMessage.encode(&m, size: pier__log__v1__init_producer_response__get_packed_size,
                                  pack: pier__log__v1__init_producer_response__pack)
    }

    // MARK: produce

    static func produce(_ results: [ProduceOutcome], requestId: UInt64) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__ProduceResponse()
            pier__log__v1__produce_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__ProduceResult.self, count: results.count)
            for (i, outcome) in results.enumerated() {
                let r = arena.message(Pier__Log__V1__ProduceResult.self, pier__log__v1__produce_result__init)
                r.pointee.batch_index = Int32(outcome.batchIndex)
                r.pointee.partition = outcome.partition
                switch outcome.result {
                case .success(let a):
                    r.pointee.base_offset = a.baseOffset
                    r.pointee.record_count = a.recordCount
                    r.pointee.duplicate = a.duplicate ? 1 : 0
                    r.pointee.log_start_offset = a.logStartOffset
                case .failure(let status):
                    r.pointee.base_offset = -1
                    r.pointee.record_count = outcome.recordCount
                    r.pointee.error_code = Int32(status.code.rawValue)
                    r.pointee.error_message = arena.cString(status.message)
                }
                array[i] = r
            }
            m.n_results = results.count
            m.results = array
            m.request_id = requestId
            return WireMessage.encode(&m, size: pier__log__v1__produce_response__get_packed_size,
                                      pack: pier__log__v1__produce_response__pack)
        }
    }

    // MARK: reads

    /// A FetchResponse: its scalar fields encoded by protobuf-c, then the stored frames appended
    /// verbatim (they are already the encoding of `repeated RecordBatch batches = 1`).
    static func fetch(_ r: FetchResult) -> [UInt8] {
        var m = Pier__Log__V1__FetchResponse()
        pier__log__v1__fetch_response__init(&m)
        m.high_watermark = r.highWatermark
        m.log_start_offset = r.logStartOffset
        m.next_offset = r.nextOffset
        return withStoredBatches(r.records) { out in
            let size = pier__log__v1__fetch_response__get_packed_size(&m)
            appendPacked(&out, size) { pier__log__v1__fetch_response__pack(&m, $0) }
        }
    }

    /// A SubscribeResponse, built like `fetch`.
    static func subscribe(_ r: FetchResult, partition: Int32) -> [UInt8] {
        var m = Pier__Log__V1__SubscribeResponse()
        pier__log__v1__subscribe_response__init(&m)
        m.partition = partition
        m.high_watermark = r.highWatermark
        m.next_offset = r.nextOffset
        return withStoredBatches(r.records) { out in
            let size = pier__log__v1__subscribe_response__get_packed_size(&m)
            appendPacked(&out, size) { pier__log__v1__subscribe_response__pack(&m, $0) }
        }
    }

    private static func withStoredBatches(_ frames: ArraySlice<UInt8>, header: (inout [UInt8]) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(frames.count + 32)
        header(&out)
        out.append(contentsOf: frames)
        return out
    }

    private static func appendPacked(_ out: inout [UInt8], _ size: Int, _ pack: (UnsafeMutablePointer<UInt8>) -> Int) {
        guard size > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: size))
        out.withUnsafeMutableBufferPointer { buffer in _ = pack(buffer.baseAddress! + start) }
    }

    static func listOffsets(_ offsets: [OffsetAndTimestamp]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__ListOffsetsResponse()
            pier__log__v1__list_offsets_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__PartitionOffset.self, count: offsets.count)
            for (i, o) in offsets.enumerated() {
                let p = arena.message(Pier__Log__V1__PartitionOffset.self, pier__log__v1__partition_offset__init)
                p.pointee.partition = o.partition
                p.pointee.offset = o.offset
                p.pointee.timestamp_ms = o.timestampMs
                array[i] = p
            }
            m.n_offsets = offsets.count
            m.offsets = array
            return WireMessage.encode(&m, size: pier__log__v1__list_offsets_response__get_packed_size,
                                      pack: pier__log__v1__list_offsets_response__pack)
        }
    }

    // MARK: groups

    static func assignment(_ a: GroupCoordinator.Assignment) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__JoinGroupResponse()
            pier__log__v1__join_group_response__init(&m)
            m.member_id = arena.cString(a.memberId)
            m.generation = a.generation
            (m.n_assignment, m.assignment) = topicPartitions(a.partitions, arena)
            m.heartbeat_interval_ms = a.heartbeatIntervalMs
            return WireMessage.encode(&m, size: pier__log__v1__join_group_response__get_packed_size,
                                      pack: pier__log__v1__join_group_response__pack)
        }
    }

    /// Partitions grouped by topic, topics and partitions in order.
    private static func topicPartitions(_ partitions: [TopicPartition], _ arena: WireArena)
        -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Pier__Log__V1__TopicPartitions>?>?) {
        var byTopic: [String: [Int32]] = [:]
        for tp in partitions { byTopic[tp.topic, default: []].append(tp.partition) }
        let topics = byTopic.keys.sorted()
        guard !topics.isEmpty else { return (0, nil) }
        let array = arena.pointers(Pier__Log__V1__TopicPartitions.self, count: topics.count)
        for (i, topic) in topics.enumerated() {
            let numbers = byTopic[topic]!.sorted()
            let t = arena.message(Pier__Log__V1__TopicPartitions.self, pier__log__v1__topic_partitions__init)
            t.pointee.topic = arena.cString(topic)
            let ints = arena.allocate(Int32.self, count: numbers.count)
            for (j, n) in numbers.enumerated() { ints[j] = n }
            t.pointee.n_partitions = numbers.count
            t.pointee.partitions = ints
            array[i] = t
        }
        return (topics.count, array)
    }

    static func fetchOffsets(_ offsets: [GroupCoordinator.CommittedOffset]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__FetchOffsetsResponse()
            pier__log__v1__fetch_offsets_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__TopicPartitionOffset.self, count: offsets.count)
            for (i, o) in offsets.enumerated() {
                let t = arena.message(Pier__Log__V1__TopicPartitionOffset.self, pier__log__v1__topic_partition_offset__init)
                t.pointee.topic = arena.cString(o.topic)
                t.pointee.partition = o.partition
                t.pointee.offset = o.offset
                t.pointee.metadata = arena.cString(o.metadata)
                array[i] = t
            }
            m.n_offsets = offsets.count
            m.offsets = array
            return WireMessage.encode(&m, size: pier__log__v1__fetch_offsets_response__get_packed_size,
                                      pack: pier__log__v1__fetch_offsets_response__pack)
        }
    }

    static func listGroups(_ groups: [(groupId: String, state: String, members: Int32, generation: Int64)]) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__ListGroupsResponse()
            pier__log__v1__list_groups_response__init(&m)
            let array = arena.pointers(Pier__Log__V1__GroupSummary.self, count: groups.count)
            for (i, g) in groups.enumerated() {
                let s = arena.message(Pier__Log__V1__GroupSummary.self, pier__log__v1__group_summary__init)
                s.pointee.group_id = arena.cString(g.groupId)
                s.pointee.state = arena.cString(g.state)
                s.pointee.members = g.members
                s.pointee.generation = g.generation
                array[i] = s
            }
            m.n_groups = groups.count
            m.groups = array
            return WireMessage.encode(&m, size: pier__log__v1__list_groups_response__get_packed_size,
                                      pack: pier__log__v1__list_groups_response__pack)
        }
    }

    static func describeGroup(_ d: GroupCoordinator.GroupDescription) -> [UInt8] {
        WireArena.with { arena in
            var m = Pier__Log__V1__DescribeGroupResponse()
            pier__log__v1__describe_group_response__init(&m)
            m.group_id = arena.cString(d.groupId)
            m.state = arena.cString(d.state)
            m.generation = d.generation
            switch d.assignor {
            case .range: m.assignor = PIER__LOG__V1__ASSIGNOR__ASSIGNOR_RANGE
            case .roundRobin: m.assignor = PIER__LOG__V1__ASSIGNOR__ASSIGNOR_ROUND_ROBIN
            case .sticky: m.assignor = PIER__LOG__V1__ASSIGNOR__ASSIGNOR_STICKY
            }
            let members = arena.pointers(Pier__Log__V1__GroupMember.self, count: d.members.count)
            for (i, member) in d.members.enumerated() {
                let g = arena.message(Pier__Log__V1__GroupMember.self, pier__log__v1__group_member__init)
                g.pointee.member_id = arena.cString(member.memberId)
                g.pointee.client_id = arena.cString(member.clientId)
                (g.pointee.n_assignment, g.pointee.assignment) = topicPartitions(member.assignment, arena)
                members[i] = g
            }
            m.n_members = d.members.count
            m.members = members
            let topics = arena.allocate(UnsafeMutablePointer<CChar>?.self, count: d.topics.count)
            for (i, t) in d.topics.enumerated() { topics[i] = arena.cString(t) }
            m.n_topics = d.topics.count
            m.topics = topics
            return WireMessage.encode(&m, size: pier__log__v1__describe_group_response__get_packed_size,
                                      pack: pier__log__v1__describe_group_response__pack)
        }
    }
}
