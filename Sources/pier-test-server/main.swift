// pier-test-server: the gRPC gateway with Health and the test-only Echo service, for gateway tests.
import Dispatch
import Logging
import PierGRPC
import PierServer

#if canImport(Glibc)
import Glibc
#endif

let options: TestServerOptions
do {
    options = try TestServerOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    if "\(error)" != "help" { writeLine("pier-test-server: \(error)", to: STDERR_FILENO) }
    writeLine(TestServerOptions.usage, to: STDERR_FILENO)
    exit(2)
}

let logLevel = options.logLevel
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = logLevel
    return handler
}
let logger = Logger(label: "pier-test-server")

// Watch for SIGTERM/SIGINT before binding, so a signal sent right after the "listening" line
// still ends in a graceful shutdown rather than the default (immediate) termination.
let termination = TerminationSignal(signals: [SIGTERM, SIGINT])

let health = HealthStatus()
health.set("", .serving)
health.set("pier.testing.v1.Echo", .serving)
let stats = CallStats()
let server = GRPCServer(configuration: options.configuration,
                        services: [HealthService(health: health), EchoService(stats: stats)],
                        logger: logger)

let port: Int
do {
    port = try await server.start()
} catch {
    writeLine("pier-test-server: cannot listen on \(options.configuration.host):\(options.configuration.port): \(error)",
              to: STDERR_FILENO)
    exit(1)
}
// Tests read this line to learn the port; written unbuffered, since stdout is a pipe there.
writeLine("listening on \(options.configuration.host):\(port)", to: STDOUT_FILENO)

let received = await termination.wait()
logger.info("signal \(received): shutting down gracefully")
health.set("", .notServing)
await server.shutdown()
exit(0)

/// Writes one line straight to a file descriptor (stdio's buffers are shared mutable state).
func writeLine(_ text: String, to descriptor: Int32) {
    var bytes = Array((text + "\n").utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written <= 0 { return }
        bytes = bytes.dropFirst(written)
    }
}
