// Waits for SIGTERM or SIGINT without killing the process, so shutdown can be graceful.
import Dispatch
import Foundation

enum ShutdownSignal {
    /// Returns the name of the first of SIGTERM/SIGINT to arrive.
    static func wait() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let queue = DispatchQueue(label: "pier.signals")
            let once = Once()
            var sources: [DispatchSourceSignal] = []
            for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler {
                    if once.claim() {
                        continuation.resume(returning: name)
                    }
                }
                source.resume()
                sources.append(source)
            }
            // The sources must outlive this closure; they live as long as the process.
            Keep.sources = sources
        }
    }

    /// Holds the signal sources for the life of the process.
    private enum Keep {
        nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
    }

    /// Lets exactly one signal resume the continuation; used only on the signal queue.
    private final class Once: @unchecked Sendable {
        private var claimed = false
        func claim() -> Bool {
            defer { claimed = true }
            return !claimed
        }
    }
}
