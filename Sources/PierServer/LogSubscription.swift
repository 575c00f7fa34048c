// Subscribe: a partition streamed from a start position, then followed live, paced by the client.
import PierGRPC
import PierLog
import Synchronization

enum LogSubscription {
    /// How long one wait for new records lasts before the loop looks again; also bounds how
    /// long a cancelled subscription keeps a parked reader in the partition.
    static let waitMs: Int64 = 1000

    /// Streams until the client cancels or a read fails (e.g. OUT_OF_RANGE when retention
    /// overtakes a slow subscriber). Each message is sent with `await writer.send`, which
    /// suspends while the client is not reading, so at most one reply per subscription is
    /// held here and the next read happens only when the client has room.
    static func run(_ request: LogDecode.Subscribe, engine: LogEngine, writer: ResponseWriter) async throws {
        var offset = try engine.resolve(request.start, topic: request.topic, partition: request.partition)
        while true {
            try Task.checkCancellation()
            guard let (message, next) = try await nextMessage(engine, request, offset: offset) else { continue }
            try await writer.send(message)
            offset = next
        }
    }

    /// The next reply and the offset after it, or nil when the wait ended without records. The
    /// read buffer is released here, before the send waits, so a stalled subscriber holds one
    /// encoded reply rather than two copies of it.
    private static func nextMessage(_ engine: LogEngine, _ request: LogDecode.Subscribe,
                                    offset: Int64) async throws -> ([UInt8], Int64)? {
        let result = try await fetch(engine, request, offset: offset)
        guard !result.records.isEmpty else { return nil }
        return (LogEncode.subscribe(result, partition: request.partition), result.nextOffset)
    }

    /// One long-poll read that gives up at once when the task is cancelled (the engine's
    /// completion, which still comes, is then ignored).
    private static func fetch(_ engine: LogEngine, _ request: LogDecode.Subscribe, offset: Int64) async throws -> FetchResult {
        let once = ResumeOnce<FetchResult>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                once.arm(continuation)
                engine.fetch(topic: request.topic, partition: request.partition, offset: offset,
                             maxBytes: request.maxBytes, maxWaitMs: waitMs) { result in
                    once.resume(result.mapError { $0 as any Error })
                }
            }
        } onCancel: {
            once.resume(.failure(CancellationError()))
        }
    }
}

/// A continuation resumed by whichever comes first: the result or cancellation.
final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>? = nil
        /// A result that arrived before the continuation was armed.
        var early: Result<T, any Error>? = nil
        var done = false
    }

    private let state = Mutex(State())

    func arm(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock { s in
            if let early = s.early {
                s.early = nil
                return early
            }
            s.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func resume(_ result: Result<T, any Error>) {
        let continuation: CheckedContinuation<T, any Error>? = state.withLock { s in
            guard !s.done else { return nil }
            s.done = true
            guard let c = s.continuation else {
                s.early = result
                return nil
            }
            s.continuation = nil
            return c
        }
        continuation?.resume(with: result)
    }
}
