// Turns SIGTERM/SIGINT into an awaitable event, so the server can shut down gracefully.
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Catches the given signals (their default action is disabled) and reports the first one.
final class TerminationSignal: Sendable {
    private struct State {
        var received: Int32? = nil
        var waiter: CheckedContinuation<Int32, Never>? = nil
    }

    private let state = Mutex(State())
    // Dispatch sources are kept alive for the life of the process; only read at init.
    nonisolated(unsafe) private var sources: [any DispatchSourceSignal] = []

    init(signals: [Int32]) {
        for number in signals {
            _ = Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in deliver(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func deliver(_ number: Int32) {
        let waiter = state.withLock { state -> CheckedContinuation<Int32, Never>? in
            guard state.received == nil else { return nil }
            state.received = number
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: number)
    }

    /// Suspends until one of the signals arrives; returns its number.
    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let received = state.withLock { state -> Int32? in
                if let received = state.received { return received }
                state.waiter = continuation
                return nil
            }
            if let received { continuation.resume(returning: received) }
        }
    }
}
