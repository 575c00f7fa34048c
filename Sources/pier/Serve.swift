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

    @Option(help: "Key-value store size at which writes are refused and the NOSPACE alarm is raised (etcd's flag).")
    var quotaBackendBytes: Int64 = 2 * 1024 * 1024 * 1024

    @Option(help: "Largest etcd request accepted, in bytes (etcd's flag; default 1.5 MiB).")
    var maxRequestBytes: Int = 1_572_864

    @Option(help: "Most operations in one etcd transaction (etcd's flag).")
    var maxTxnOps: Int = 128

    @Option(help: "Member name reported by the etcd Cluster API (etcd's flag).")
    var name: String = "default"

    @Option(help: "TLS certificate (PEM) for the client port; enables TLS (etcd's flag).")
    var certFile: String?

    @Option(help: "TLS private key (PEM) for --cert-file (etcd's flag).")
    var keyFile: String?

    @Option(help: "CA certificates (PEM) that client certificates must chain to (etcd's flag).")
    var trustedCaFile: String?

    @Flag(help: "Require a client certificate signed by --trusted-ca-file: mutual TLS (etcd's flag).")
    var clientCertAuth = false

    @Option(help: "Seconds between checks of the TLS files for changes (0: reload on SIGHUP only).")
    var tlsReloadInterval: Double = 5

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
        // Before anything starts: a SIGTERM during start-up must still mean a clean stop.
        let shutdownSignal = ShutdownSignal()
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

        var options = PierServerOptions(dataDirectory: dataDir)
        options.quotaBackendBytes = quotaBackendBytes
        options.maxRequestBytes = maxRequestBytes
        options.maxTxnOps = maxTxnOps
        options.memberName = name
        let assembly = try PierServerAssembly(options: options, logger: logger)
        assembly.configure(&configuration)
        let tls = try makeTLS(host: host, logger: logger)
        let server = GRPCServer(configuration: configuration, services: assembly.services, logger: logger, tls: tls)
        let bound = try await server.start()
        let reloader = tls.map { TLSReloader(provider: $0, interval: tlsReloadInterval) }
        assembly.started(host: host, port: bound)
        // Tests and scripts read this line to learn the port.
        FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))

        let signal = await shutdownSignal.wait()
        logger.info("\(signal) received: shutting down gracefully")
        reloader?.stop()
        assembly.health.set("", .notServing)
        await server.shutdown()
        assembly.shutdown()
        logger.info("stopped")
    }

    /// The TLS context from the etcd-named flags, or nil for cleartext h2c (warned about off loopback).
    private func makeTLS(host: String, logger: Logger) throws -> TLSContextProvider? {
        guard let certFile else {
            if keyFile != nil || trustedCaFile != nil || clientCertAuth {
                throw ValidationError("--key-file, --trusted-ca-file and --client-cert-auth need --cert-file")
            }
            let loopback = host == "localhost" || host.hasPrefix("127.") || host == "::1"
            if !loopback {
                logger.warning("listening on \(host) without TLS: traffic, passwords and tokens travel in clear text; pass --cert-file and --key-file")
            }
            return nil
        }
        guard let keyFile else { throw ValidationError("--cert-file needs --key-file") }
        if clientCertAuth && trustedCaFile == nil {
            throw ValidationError("--client-cert-auth needs --trusted-ca-file")
        }
        let settings = TLSSettings(certFile: certFile, keyFile: keyFile, trustedCAFile: trustedCaFile,
                                   clientCertAuth: clientCertAuth)
        do {
            return try TLSContextProvider(settings: settings, logger: logger)
        } catch {
            throw ValidationError("cannot load TLS files: \(error)")
        }
    }
}
