// The `pier` command: `pier serve` runs the server; the other verbs are clients built on libpier.
import ArgumentParser

@main
struct Pier: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pier",
        abstract: "A durable event log and an etcd-compatible key-value store behind one gRPC API.",
        subcommands: [Serve.self, KV.self, Lease.self, Topic.self, Produce.self, Consume.self, Group.self, Bench.self],
        defaultSubcommand: Serve.self
    )
}
