// Consumer groups: membership over session streams, generations, server-side assignment, fenced offset commits.

import Synchronization

/// The server decides assignments (as in Kafka's newer consumer protocol): every join,
/// leave, session expiry or change of a subscribed topic starts a new generation and pushes
/// each member its whole assignment. Commits carry the member's generation and are refused
/// from any other, so a member that missed a rebalance cannot overwrite its successor's offsets.
public final class GroupCoordinator: Sendable {
    public struct Assignment: Sendable, Equatable {
        public var memberId: String
        public var generation: Int64
        public var partitions: [TopicPartition]
        public var heartbeatIntervalMs: Int32
    }

    /// Receives every assignment for a member; a failure means the session ended (expired,
    /// or the member joined again elsewhere) and the stream should close with that status.
    public typealias Listener = @Sendable (Result<Assignment, LogError>) -> Void

    public struct CommittedOffset: Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        public var metadata: String

        public init(topic: String, partition: Int32, offset: Int64, metadata: String = "") {
            self.topic = topic
            self.partition = partition
            self.offset = offset
            self.metadata = metadata
        }
    }

    public struct MemberDescription: Sendable, Equatable {
        public var memberId: String
        public var clientId: String
        public var assignment: [TopicPartition]
    }

    public struct GroupDescription: Sendable, Equatable {
        public var groupId: String
        /// "Empty" or "Stable".
        public var state: String
        public var generation: Int64
        public var assignor: Assignor
        public var members: [MemberDescription]
        public var topics: [String]
    }

    struct Member: Sendable {
        var id: String
        var clientId: String
        var topics: Set<String>
        var sessionTimeoutMs: Int64
        var lastSeenMs: Int64
        var assignment: [TopicPartition] = []
        var listener: Listener
    }

    struct Group: Sendable {
        var id: String
        var generation: Int64 = 0
        var assignor: Assignor = .range
        var members: [String: Member] = [:]
        var offsets: [TopicPartition: CommittedOffset] = [:]
    }

    private let groups = Mutex<[String: Group]>([:])
    private let metadata: any LogMetadataStore
    private let clock: @Sendable () -> Int64
    private let nextMember = Atomic<Int>(1)
    /// Looks up a topic's partition count (nil: no such topic). Set by the engine.
    private let partitionCounts = Mutex<(@Sendable (String) -> Int32?)?>(nil)
    public static let defaultSessionTimeoutMs: Int64 = 10_000
    static let maxMembersPerGroup = 1000

    init(metadata: any LogMetadataStore, clock: @escaping @Sendable () -> Int64) {
        self.metadata = metadata
        self.clock = clock
    }

    func setPartitionCounts(_ f: @escaping @Sendable (String) -> Int32?) { partitionCounts.withLock { $0 = f } }

    /// Loads committed offsets from the metadata store (engine start-up).
    func load() throws {
        let items = try metadata.listSync(LogMetadataKeys.groups)
        var loaded: [String: Group] = [:]
        for (key, value) in items {
            // key: prefix "group/" <escaped group> "/" <topic> "/" <partition>
            let rest = String(decoding: key.dropFirst(LogMetadataKeys.groups.count), as: UTF8.self)
            let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, let p = Int32(parts[2]), value.count >= 8 else { continue }
            let group = LogMetadataKeys.unescape(parts[0])
            let topic = String(parts[1])
            let offset = value.withUnsafeBytes { WireBytes.loadLE($0, 0, as: Int64.self) }
            let meta = String(decoding: value.dropFirst(8), as: UTF8.self)
            let tp = TopicPartition(topic: topic, partition: p)
            loaded[group, default: Group(id: group)].offsets[tp] = CommittedOffset(topic: topic, partition: p, offset: offset, metadata: meta)
        }
        groups.withLock { $0 = loaded }
    }

    // MARK: membership

    /// Adds a member (or re-adds one by id) and rebalances. Returns the member id; the
    /// member's first assignment arrives on `listener`.
    @discardableResult
    public func join(groupId: String, memberId: String? = nil, clientId: String = "", topics: [String],
                     sessionTimeoutMs: Int64 = GroupCoordinator.defaultSessionTimeoutMs,
                     assignor: Assignor = .range, listener: @escaping Listener) throws -> String {
        guard !groupId.isEmpty else { throw LogError.invalidArgument("group id is empty") }
        guard !topics.isEmpty else { throw LogError.invalidArgument("a member must subscribe to at least one topic") }
        guard sessionTimeoutMs >= 100, sessionTimeoutMs <= 30 * 60_000 else {
            throw LogError.invalidArgument("session timeout \(sessionTimeoutMs) ms is outside [100, 1800000]")
        }
        let id = (memberId?.isEmpty ?? true) ? "\(clientId.isEmpty ? "member" : clientId)-\(nextMember.wrappingAdd(1, ordering: .relaxed).oldValue)-\(clock())" : memberId!
        let now = clock()
        var replaced: Listener?
        let pushes: [(Listener, Assignment)] = try groups.withLock { gs in
            var g = gs[groupId] ?? Group(id: groupId)
            if g.members.isEmpty { g.assignor = assignor }
            if let old = g.members[id] { replaced = old.listener } else if g.members.count >= Self.maxMembersPerGroup {
                throw LogError.resourceExhausted("group \"\(groupId)\" has \(Self.maxMembersPerGroup) members, the limit")
            }
            g.members[id] = Member(id: id, clientId: clientId, topics: Set(topics), sessionTimeoutMs: sessionTimeoutMs,
                                   lastSeenMs: now, listener: listener)
            let out = rebalance(&g)
            gs[groupId] = g
            return out
        }
        replaced?(.failure(.unknownMember(group: groupId, memberId: id)))
        for (l, a) in pushes { l(.success(a)) }
        return id
    }

    /// Keeps a member's session alive. Fails when the member is unknown (expired: join again).
    /// Returns the group's current generation.
    @discardableResult
    public func heartbeat(groupId: String, memberId: String, generation: Int64) throws -> Int64 {
        let now = clock()
        return try groups.withLock { gs in
            guard var g = gs[groupId], g.members[memberId] != nil else {
                throw LogError.unknownMember(group: groupId, memberId: memberId)
            }
            g.members[memberId]!.lastSeenMs = now
            gs[groupId] = g
            return g.generation
        }
    }

    /// Removes a member and rebalances the rest.
    public func leave(groupId: String, memberId: String) {
        let pushes: [(Listener, Assignment)] = groups.withLock { gs in
            guard var g = gs[groupId], g.members.removeValue(forKey: memberId) != nil else { return [] }
            let out = rebalance(&g)
            gs[groupId] = g.members.isEmpty && g.offsets.isEmpty ? nil : g
            return out
        }
        for (l, a) in pushes { l(.success(a)) }
    }

    /// Drops members whose sessions have lapsed, rebalancing their groups (engine tick).
    func expireSessions(nowMs: Int64) {
        var ended: [(Listener, LogError)] = []
        let pushes: [(Listener, Assignment)] = groups.withLock { gs in
            var out: [(Listener, Assignment)] = []
            for (id, var g) in gs {
                let expired = g.members.values.filter { nowMs - $0.lastSeenMs > $0.sessionTimeoutMs }
                guard !expired.isEmpty else { continue }
                for m in expired {
                    g.members[m.id] = nil
                    ended.append((m.listener, .unknownMember(group: id, memberId: m.id)))
                }
                out += rebalance(&g)
                // A group nobody is in and that never committed leaves no trace.
                gs[id] = g.members.isEmpty && g.offsets.isEmpty ? nil : g
            }
            return out
        }
        for (l, e) in ended { l(.failure(e)) }
        for (l, a) in pushes { l(.success(a)) }
    }

    /// Topics were created or deleted: rebalance the groups that subscribe to them.
    func topicsChanged(_ topics: Set<String>) {
        let pushes: [(Listener, Assignment)] = groups.withLock { gs in
            var out: [(Listener, Assignment)] = []
            for (id, var g) in gs where g.members.values.contains(where: { !$0.topics.isDisjoint(with: topics) }) {
                out += rebalance(&g)
                gs[id] = g
            }
            return out
        }
        for (l, a) in pushes { l(.success(a)) }
    }

    private func rebalance(_ g: inout Group) -> [(Listener, Assignment)] {
        g.generation += 1
        let counts = partitionCounts.withLock { $0 }
        var partitionCounts: [String: Int32] = [:]
        for t in Set(g.members.values.flatMap { $0.topics }) { partitionCounts[t] = counts?(t) ?? 0 }
        let result = PartitionAssignment.assign(g.assignor, members: g.members.values.map {
            PartitionAssignment.Member(id: $0.id, topics: $0.topics, previous: $0.assignment)
        }, partitionCounts: partitionCounts)
        var out: [(Listener, Assignment)] = []
        for id in g.members.keys.sorted() {
            let parts = result[id] ?? []
            g.members[id]!.assignment = parts
            let m = g.members[id]!
            out.append((m.listener, Assignment(memberId: id, generation: g.generation, partitions: parts,
                                               heartbeatIntervalMs: Int32(max(50, m.sessionTimeoutMs / 3)))))
        }
        return out
    }

    // MARK: offsets

    /// Stores offsets if `memberId` belongs to the group at `generation` (or, for a group
    /// with no members, when memberId is empty and generation is -1). Completes once durable.
    public func commitOffsets(groupId: String, memberId: String, generation: Int64, offsets: [CommittedOffset],
                              completion: @escaping @Sendable (Result<Void, LogError>) -> Void) {
        do {
            guard !groupId.isEmpty else { throw LogError.invalidArgument("group id is empty") }
            try groups.withLock { gs in
                var g = gs[groupId] ?? Group(id: groupId)
                if g.members.isEmpty {
                    guard memberId.isEmpty || generation < 0 else {
                        throw LogError.unknownMember(group: groupId, memberId: memberId)
                    }
                } else {
                    guard g.members[memberId] != nil else { throw LogError.unknownMember(group: groupId, memberId: memberId) }
                    guard generation == g.generation else {
                        throw LogError.illegalGeneration(group: groupId, memberId: memberId, generation: generation, current: g.generation)
                    }
                }
                for o in offsets {
                    guard o.offset >= 0 else { throw LogError.invalidArgument("offset \(o.offset) for \(o.topic)/\(o.partition) is negative") }
                    g.offsets[TopicPartition(topic: o.topic, partition: o.partition)] = o
                }
                gs[groupId] = g
            }
        } catch {
            completion(.failure(error as? LogError ?? .storage("\(error)")))
            return
        }
        guard !offsets.isEmpty else {
            completion(.success(()))
            return
        }
        let entries = offsets.map { o -> (key: [UInt8], value: [UInt8]) in
            var value = [UInt8]()
            withUnsafeBytes(of: o.offset.littleEndian) { value.append(contentsOf: $0) }
            value += Array(o.metadata.utf8)
            return (LogMetadataKeys.groupOffset(groupId, o.topic, o.partition), value)
        }
        metadata.putAll(entries, completion: completion)
    }

    public func commitOffsets(groupId: String, memberId: String, generation: Int64, offsets: [CommittedOffset]) async throws {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
            commitOffsets(groupId: groupId, memberId: memberId, generation: generation, offsets: offsets) { cont.resume(with: $0) }
        }
    }

    /// Committed offsets of a group, for the given partitions or all of them.
    public func fetchOffsets(groupId: String, partitions: [TopicPartition]? = nil) -> [CommittedOffset] {
        groups.withLock { gs in
            guard let g = gs[groupId] else { return [] }
            if let partitions { return partitions.compactMap { g.offsets[$0] } }
            return g.offsets.keys.sorted().map { g.offsets[$0]! }
        }
    }

    public func listGroups() -> [(groupId: String, state: String, members: Int32, generation: Int64)] {
        groups.withLock { gs in
            gs.values.map { ($0.id, $0.members.isEmpty ? "Empty" : "Stable", Int32($0.members.count), $0.generation) }
        }.sorted { $0.groupId < $1.groupId }
    }

    public func describeGroup(_ groupId: String) throws -> GroupDescription {
        try groups.withLock { gs in
            guard let g = gs[groupId] else { throw LogError.groupNotFound(groupId) }
            let members = g.members.values.sorted { $0.id < $1.id }.map {
                MemberDescription(memberId: $0.id, clientId: $0.clientId, assignment: $0.assignment)
            }
            return GroupDescription(groupId: g.id, state: g.members.isEmpty ? "Empty" : "Stable", generation: g.generation,
                                    assignor: g.assignor, members: members,
                                    topics: Set(g.members.values.flatMap { $0.topics }).sorted())
        }
    }
}
