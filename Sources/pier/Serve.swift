// `pier serve`: opens the data directory, registers the services, serves until SIGTERM/SIGINT.
import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import PierGRPC
import PierServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Pier server.")

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free port).")
    var listen: String = "127.0.0.1:2379"

    @Option(help: "Data directory; created if missing.")
    var dataDir: String = "./pier-data"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Largest request message accepted, in bytes.")
    var maxReceiveMessageBytes: Int = 4 * 1024 * 1024

    @Option(help: "Seconds that calls in flight may run after SIGTERM before the server exits.")
    var shutdownGrace: Double = 10

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level \"\(logLevel)\"")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "pier")
        guard let separator = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: separator)...]) else {
            throw ValidationError("--listen wants HOST:PORT, got \"\(listen)\"")
        }
        var host = String(listen[..<separator])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }

        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)

        var configuration = GRPCServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.maxReceiveMessageBytes = maxReceiveMessageBytes
        configuration.shutdownGraceSeconds = shutdownGrace

        let health = HealthStatus()
        let services: [any GRPCService] = [HealthService(health: health)]
        let server = GRPCServer(configuration: configuration, services: services, logger: logger)
        let bound = try await server.start()
        health.set("", .serving)
        // Tests and scripts read this line to learn the port.
        FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))

        let signal = await ShutdownSignal.wait()
        logger.info("\(signal) received: shutting down gracefully")
        health.set("", .notServing)
        await server.shutdown()
        logger.info("stopped")
    }
}
