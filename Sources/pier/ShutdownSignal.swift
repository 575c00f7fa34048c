// Catches SIGTERM and SIGINT from start-up on, so shutdown is graceful however early they come.
import Dispatch
import Foundation

/// Install it before the server starts: from then on SIGTERM/SIGINT no longer kill the process
/// but are remembered, and `wait()` returns the first one (at once if it already arrived).
final class ShutdownSignal: Sendable {
    private let received: AsyncStream<String>
    // The sources must live as long as the process waits; they are only created here.
    nonisolated(unsafe) private var sources: [DispatchSourceSignal] = []

    init() {
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingOldest(1))
        received = stream
        let queue = DispatchQueue(label: "pier.signals")
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            // Ignore first, then watch: a signal can no longer kill the process in between.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(name) }
            source.resume()
            sources.append(source)
        }
    }

    /// The name of the first signal received.
    func wait() async -> String {
        for await name in received { return name }
        return "SIGTERM"
    }
}
