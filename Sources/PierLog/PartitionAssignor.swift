// How a group's partitions are split among its members: Kafka's range and round-robin, and a sticky variant.

public enum Assignor: String, Sendable, Equatable, CaseIterable {
    case range
    case roundRobin
    /// Keeps each member's previous partitions where balance allows, moving as few as possible.
    case sticky
}

public struct TopicPartition: Sendable, Hashable, Comparable {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        a.topic != b.topic ? a.topic < b.topic : a.partition < b.partition
    }
}

enum PartitionAssignment {
    struct Member {
        var id: String
        var topics: Set<String>
        /// The member's partitions in the previous generation (for sticky).
        var previous: [TopicPartition]
    }

    /// Assigns every partition of every subscribed topic to exactly one subscribed member.
    static func assign(_ assignor: Assignor, members: [Member], partitionCounts: [String: Int32]) -> [String: [TopicPartition]] {
        let members = members.sorted { $0.id < $1.id }
        var out: [String: [TopicPartition]] = [:]
        for m in members { out[m.id] = [] }
        guard !members.isEmpty else { return out }
        let topics = Set(members.flatMap { $0.topics }).sorted()
        switch assignor {
        case .range:
            // Per topic, contiguous ranges; the first (n % m) members get one extra.
            for topic in topics {
                let subs = members.filter { $0.topics.contains(topic) }
                let n = Int(partitionCounts[topic] ?? 0)
                guard !subs.isEmpty, n > 0 else { continue }
                let per = n / subs.count, extra = n % subs.count
                var next = 0
                for (i, m) in subs.enumerated() {
                    let count = per + (i < extra ? 1 : 0)
                    for p in next..<(next + count) { out[m.id]!.append(TopicPartition(topic: topic, partition: Int32(p))) }
                    next += count
                }
            }
        case .roundRobin:
            // All partitions in (topic, partition) order dealt in turn to members subscribed to their topic.
            var cursor = 0
            for topic in topics {
                for p in 0..<(partitionCounts[topic] ?? 0) {
                    for step in 0..<members.count {
                        let m = members[(cursor + step) % members.count]
                        if m.topics.contains(topic) {
                            out[m.id]!.append(TopicPartition(topic: topic, partition: p))
                            cursor = (cursor + step + 1) % members.count
                            break
                        }
                    }
                }
            }
        case .sticky:
            out = sticky(members: members, topics: topics, partitionCounts: partitionCounts)
        }
        return out
    }

    private static func sticky(members: [Member], topics: [String], partitionCounts: [String: Int32]) -> [String: [TopicPartition]] {
        var all: [TopicPartition] = []
        for t in topics { for p in 0..<(partitionCounts[t] ?? 0) { all.append(TopicPartition(topic: t, partition: p)) } }
        let byId = Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0) })
        let ceiling = (all.count + members.count - 1) / max(members.count, 1)
        var owner: [TopicPartition: String] = [:]
        var out: [String: [TopicPartition]] = [:]
        for m in members { out[m.id] = [] }
        let valid = Set(all)
        // 1. Keep previous partitions that still exist and are still subscribed, up to the ceiling.
        for m in members {
            for tp in m.previous.sorted() where valid.contains(tp) && m.topics.contains(tp.topic) && owner[tp] == nil {
                guard out[m.id]!.count < ceiling else { break }
                owner[tp] = m.id
                out[m.id]!.append(tp)
            }
        }
        // 2. Hand out the rest to the least-loaded eligible member.
        for tp in all where owner[tp] == nil {
            guard let m = members.filter({ $0.topics.contains(tp.topic) })
                .min(by: { (out[$0.id]!.count, $0.id) < (out[$1.id]!.count, $1.id) }) else { continue }
            owner[tp] = m.id
            out[m.id]!.append(tp)
        }
        // 3. Even out: move partitions from the most to the least loaded while that helps.
        var moved = true
        while moved {
            moved = false
            let sorted = members.map { $0.id }.sorted { (out[$0]!.count, $0) < (out[$1]!.count, $1) }
            guard let low = sorted.first, let high = sorted.last, out[high]!.count > out[low]!.count + 1 else { break }
            let lowMember = byId[low]!
            if let i = out[high]!.lastIndex(where: { lowMember.topics.contains($0.topic) }) {
                let tp = out[high]!.remove(at: i)
                out[low]!.append(tp)
                moved = true
            }
        }
        for k in out.keys { out[k]!.sort() }
        return out
    }
}
