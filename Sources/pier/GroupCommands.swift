// `pier group list/describe`: consumer groups, their members, committed offsets and lag.
import ArgumentParser
import Foundation

struct Group: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "List and describe consumer groups.",
        subcommands: [GroupList.self, GroupDescribe.self]
    )
}

struct GroupList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List consumer groups.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        try runVerb {
            let c = try client.connect()
            let groups = try c.listGroups().sorted { $0.id < $1.id }
            if client.json {
                printJSON(groups.map {
                    ["group": $0.id, "state": $0.state, "members": $0.members, "generation": $0.generation] as [String: Any]
                })
            } else {
                for g in groups { print("\(g.id)\t\(g.state)\t\(g.members) members\tgeneration \(g.generation)") }
            }
        }
    }
}

struct GroupDescribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "describe", abstract: "Show a group's members, assignments, committed offsets and lag.")

    @OptionGroup var client: ClientOptions
    @Argument var name: String

    func run() throws {
        try runVerb {
            let c = try client.connect()
            let info = try c.describeGroup(name)
            let offsets = try c.fetchOffsets(group: name).sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
            // Lag needs each partition's end offset; a topic deleted since the commit just has none.
            var ends: [String: [Int32: Int64]] = [:]
            for topic in Set(offsets.map(\.topic)) {
                if let described = try? c.describeTopic(topic) {
                    ends[topic] = Dictionary(described.partitions.map { ($0.partition, $0.logEndOffset) }, uniquingKeysWith: { a, _ in a })
                }
            }
            func lag(_ o: CommittedOffset) -> Int64? { ends[o.topic]?[o.partition].map { max($0 - o.offset, 0) } }
            if client.json {
                printJSON([
                    "group": info.id, "state": info.state, "generation": info.generation, "topics": info.topics,
                    "members": info.members.map {
                        ["member_id": $0.id, "client_id": $0.clientID,
                         "assignment": $0.assignment.map { ["topic": $0.topic, "partition": $0.partition] as [String: Any] }] as [String: Any]
                    },
                    "offsets": offsets.map {
                        var o: [String: Any] = ["topic": $0.topic, "partition": $0.partition, "offset": $0.offset]
                        if let l = lag($0) { o["lag"] = l }
                        return o
                    },
                ] as [String: Any])
                return
            }
            print("group \(info.id): \(info.state), generation \(info.generation), \(info.members.count) members")
            for m in info.members {
                let parts = m.assignment.map { "\($0.topic)/\($0.partition)" }.joined(separator: " ")
                print("  member \(m.id) (\(m.clientID)): \(parts.isEmpty ? "no partitions" : parts)")
            }
            if !offsets.isEmpty {
                print("  topic/partition  committed  lag")
                for o in offsets { print("  \(o.topic)/\(o.partition)  \(o.offset)  \(lag(o).map(String.init) ?? "-")") }
            }
        }
    }
}
