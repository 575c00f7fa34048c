// Consumer groups: assignors, rebalances on join/leave/expiry, and commits fenced by generation.

import Synchronization
import Testing
@testable import PierLog

/// Collects the assignments pushed to one member.
final class AssignmentInbox: Sendable {
    let items = Mutex<[Result<GroupCoordinator.Assignment, LogError>]>([])
    var listener: GroupCoordinator.Listener { { r in self.items.withLock { $0.append(r) } } }
    var last: GroupCoordinator.Assignment? {
        items.withLock { $0.last.flatMap { try? $0.get() } }
    }
    var ended: Bool { items.withLock { if case .failure = $0.last { return true } else { return false } } }
}

@Suite struct GroupCoordinatorTests {
    func tps(_ s: [(String, Int32)]) -> [TopicPartition] { s.map { TopicPartition(topic: $0.0, partition: $0.1) } }

    @Test func rangeAssignorMatchesKafka() {
        // Kafka's RangeAssignor: per topic, contiguous ranges, first members get the extra ones.
        let members = [
            PartitionAssignment.Member(id: "c0", topics: ["t0", "t1"], previous: []),
            PartitionAssignment.Member(id: "c1", topics: ["t0", "t1"], previous: []),
        ]
        let a = PartitionAssignment.assign(.range, members: members, partitionCounts: ["t0": 3, "t1": 3])
        #expect(a["c0"] == tps([("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]))
        #expect(a["c1"] == tps([("t0", 2), ("t1", 2)]))
    }

    @Test func roundRobinAssignorMatchesKafka() {
        let members = [
            PartitionAssignment.Member(id: "c0", topics: ["t0", "t1"], previous: []),
            PartitionAssignment.Member(id: "c1", topics: ["t0", "t1"], previous: []),
        ]
        let a = PartitionAssignment.assign(.roundRobin, members: members, partitionCounts: ["t0": 3, "t1": 3])
        #expect(a["c0"] == tps([("t0", 0), ("t0", 2), ("t1", 1)]))
        #expect(a["c1"] == tps([("t0", 1), ("t1", 0), ("t1", 2)]))
    }

    @Test func stickyAssignorKeepsPartitionsAndBalances() {
        var members = [
            PartitionAssignment.Member(id: "a", topics: ["t"], previous: []),
            PartitionAssignment.Member(id: "b", topics: ["t"], previous: []),
        ]
        let first = PartitionAssignment.assign(.sticky, members: members, partitionCounts: ["t": 6])
        #expect(first["a"]!.count == 3 && first["b"]!.count == 3)
        members[0].previous = first["a"]!
        members[1].previous = first["b"]!
        members.append(PartitionAssignment.Member(id: "c", topics: ["t"], previous: []))
        let second = PartitionAssignment.assign(.sticky, members: members, partitionCounts: ["t": 6])
        #expect(second.values.map(\.count).sorted() == [2, 2, 2])
        // Nobody lost a partition it did not have to: a and b kept two of their three each.
        #expect(Set(second["a"]!).isSubset(of: Set(first["a"]!)))
        #expect(Set(second["b"]!).isSubset(of: Set(first["b"]!)))
        #expect(Set(second.values.flatMap { $0 }).count == 6)
    }

    @Test func rebalanceAndGenerationFencing() async throws {
        let dir = makeTempDir()
        defer { removeDir(dir) }
        let clock = ManualClock()
        let engine = try openEngine(dir, clock: clock)
        try engine.createTopic("orders", partitions: 4)
        let groups = engine.groups
        let inboxA = AssignmentInbox(), inboxB = AssignmentInbox()

        let a = try groups.join(groupId: "g", clientId: "a", topics: ["orders"], sessionTimeoutMs: 3000, listener: inboxA.listener)
        #expect(inboxA.last?.generation == 1)
        #expect(inboxA.last?.partitions.count == 4)

        let b = try groups.join(groupId: "g", clientId: "b", topics: ["orders"], sessionTimeoutMs: 3000, listener: inboxB.listener)
        #expect(inboxA.last?.generation == 2 && inboxB.last?.generation == 2)
        #expect(inboxA.last!.partitions.count + inboxB.last!.partitions.count == 4)
        #expect(Set(inboxA.last!.partitions).isDisjoint(with: Set(inboxB.last!.partitions)))

        // A commit from the old generation is fenced off.
        let stale = [GroupCoordinator.CommittedOffset(topic: "orders", partition: 0, offset: 10)]
        await #expect(throws: LogError.illegalGeneration(group: "g", memberId: a, generation: 1, current: 2)) {
            try await groups.commitOffsets(groupId: "g", memberId: a, generation: 1, offsets: stale)
        }
        try await groups.commitOffsets(groupId: "g", memberId: a, generation: 2, offsets: stale)
        await #expect(throws: LogError.unknownMember(group: "g", memberId: "nobody")) {
            try await groups.commitOffsets(groupId: "g", memberId: "nobody", generation: 2, offsets: stale)
        }
        #expect(groups.fetchOffsets(groupId: "g") == stale)

        // b stops heartbeating: after its session timeout it is removed and a gets everything.
        clock.advance(2000)
        try groups.heartbeat(groupId: "g", memberId: a, generation: 2)
        clock.advance(1500)
        engine.tick()
        #expect(inboxB.ended)
        #expect(inboxA.last?.generation == 3 && inboxA.last?.partitions.count == 4)
        #expect(throws: LogError.unknownMember(group: "g", memberId: b)) { try groups.heartbeat(groupId: "g", memberId: b, generation: 2) }

        let d = try groups.describeGroup("g")
        #expect(d.state == "Stable" && d.members.map(\.memberId) == [a] && d.generation == 3)

        groups.leave(groupId: "g", memberId: a)
        #expect(groups.listGroups().first?.state == "Empty")
        // An empty group accepts plain commits (a consumer managing its own partitions).
        try await groups.commitOffsets(groupId: "g", memberId: "", generation: -1,
                                       offsets: [.init(topic: "orders", partition: 1, offset: 5, metadata: "m")])
        engine.shutdown()

        // Committed offsets are durable.
        let reopened = try openEngine(dir, clock: clock)
        defer { reopened.shutdown() }
        #expect(reopened.groups.fetchOffsets(groupId: "g") == [
            .init(topic: "orders", partition: 0, offset: 10),
            .init(topic: "orders", partition: 1, offset: 5, metadata: "m"),
        ])
    }
}
