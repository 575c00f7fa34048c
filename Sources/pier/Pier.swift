// The `pier` command: `pier serve` runs the server; client verbs come next.
import ArgumentParser

@main
struct Pier: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pier",
        abstract: "A durable event log and an etcd-compatible key-value store behind one gRPC API.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self
    )
}
