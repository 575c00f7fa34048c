// `pier topic create/list/describe/delete`: the log's topics and their partitions.
import ArgumentParser
import Foundation

struct Topic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic",
        abstract: "Create, list, describe and delete topics.",
        subcommands: [TopicCreate.self, TopicList.self, TopicDescribe.self, TopicDelete.self]
    )
}

func topicJSON(_ topic: TopicInfo) -> [String: Any] {
    [
        "topic": topic.name,
        "configs": Dictionary(topic.configs.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last }),
        "partitions": topic.partitions.map {
            ["partition": $0.partition, "log_start_offset": $0.logStartOffset, "log_end_offset": $0.logEndOffset,
             "size_bytes": $0.sizeBytes, "segments": $0.segments] as [String: Any]
        },
    ]
}

func printTopic(_ topic: TopicInfo) {
    print("topic \(topic.name): \(topic.partitions.count) partitions")
    print("  partition  start-offset  end-offset       bytes  segments")
    for p in topic.partitions {
        print(String(format: "  %9d  %12lld  %10lld  %10lld  %8d", p.partition, p.logStartOffset, p.logEndOffset, p.sizeBytes, p.segments))
    }
    print("  configs:")
    for entry in topic.configs.sorted(by: { $0.key < $1.key }) {
        print("    \(entry.key)=\(entry.value)")
    }
}

struct TopicCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a topic.")

    @OptionGroup var client: ClientOptions
    @Argument var name: String

    @Option(help: "Number of partitions.")
    var partitions: Int32 = 1

    @Option(name: .customLong("config"), help: "A topic config, KEY=VALUE (repeatable), e.g. retention.ms=86400000.")
    var configs: [String] = []

    func run() throws {
        let pairs = try configs.map { entry -> (String, String) in
            guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex else {
                throw ValidationError("--config wants KEY=VALUE, got \"\(entry)\"")
            }
            return (String(entry[..<eq]), String(entry[entry.index(after: eq)...]))
        }
        try runVerb {
            let c = try client.connect()
            let topic = try c.createTopic(name, partitions: partitions, configs: pairs)
            if client.json {
                printJSON(topicJSON(topic))
            } else {
                print("created topic \(topic.name) with \(topic.partitions.count) partitions")
            }
        }
    }
}

struct TopicList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List topics.")

    @OptionGroup var client: ClientOptions

    func run() throws {
        try runVerb {
            let c = try client.connect()
            let topics = try c.listTopics().sorted { $0.name < $1.name }
            if client.json {
                printJSON(topics.map { ["topic": $0.name, "partitions": $0.partitions] as [String: Any] })
            } else {
                for topic in topics { print("\(topic.name)\t\(topic.partitions) partitions") }
            }
        }
    }
}

struct TopicDescribe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show a topic's partitions, offsets and configs.")

    @OptionGroup var client: ClientOptions
    @Argument var name: String

    func run() throws {
        try runVerb {
            let c = try client.connect()
            let topic = try c.describeTopic(name)
            if client.json { printJSON(topicJSON(topic)) } else { printTopic(topic) }
        }
    }
}

struct TopicDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a topic and its records.")

    @OptionGroup var client: ClientOptions
    @Argument var name: String

    func run() throws {
        try runVerb {
            let c = try client.connect()
            try c.deleteTopic(name)
            if client.json { printJSON(["topic": name, "deleted": true] as [String: Any]) } else { print("deleted topic \(name)") }
        }
    }
}
