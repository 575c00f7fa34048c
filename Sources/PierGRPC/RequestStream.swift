// The request messages of a streaming call, handed to the handler as they arrive.
import DequeModule
import NIOCore
import Synchronization

/// An async sequence of the call's request messages (serialized protobuf). It ends when the
/// client half-closes, and throws a `GRPCStatus` when the call fails (cancel, deadline, bad
/// frame). Taking a message lets the gateway open the HTTP/2 window again, so a handler that
/// stops reading stops the client (flow control), rather than growing a buffer.
public final class RequestStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]

    struct State {
        // A deque, not an array with a read index: on a long-lived stream the queue is rarely
        // empty, and an array would keep every message ever taken alive.
        var queue: Deque<[UInt8]> = []
        var queuedBytes = 0
        var finished: GRPCStatus? = nil
        var waiter: CheckedContinuation<[UInt8]?, any Error>? = nil

        /// Takes the oldest queued message, if any.
        mutating func take() -> [UInt8]? {
            guard let message = queue.popFirst() else { return nil }
            queuedBytes -= message.count
            return message
        }
    }

    private let state = Mutex(State())
    /// Told how many bytes the handler took, so the transport can release window.
    private let onConsume: @Sendable (Int) -> Void

    init(onConsume: @escaping @Sendable (Int) -> Void) {
        self.onConsume = onConsume
    }

    /// A stream over fixed messages (for tests and for adapting unary calls).
    public convenience init(messages: [[UInt8]]) {
        self.init(onConsume: { _ in })
        for message in messages { deliver(message) }
        finish(.ok)
    }

    /// Bytes queued but not yet taken by the handler.
    var queuedBytes: Int { state.withLock { $0.queuedBytes } }

    func deliver(_ message: [UInt8]) {
        let waiter: CheckedContinuation<[UInt8]?, any Error>? = state.withLock { state in
            guard state.finished == nil else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.queue.append(message)
            state.queuedBytes += message.count
            return nil
        }
        if let waiter {
            waiter.resume(returning: message)
            onConsume(message.count)
        }
    }

    /// Ends the stream: `.ok` for a clean half-close, any other status for a failure.
    func finish(_ status: GRPCStatus) {
        let waiter: CheckedContinuation<[UInt8]?, any Error>? = state.withLock { state in
            guard state.finished == nil else { return nil }
            state.finished = status
            if status.code != .ok {
                state.queue.removeAll()
                state.queuedBytes = 0
            }
            defer { state.waiter = nil }
            return state.waiter
        }
        if let waiter {
            if status.code == .ok { waiter.resume(returning: nil) } else { waiter.resume(throwing: status) }
        }
    }

    func next() async throws -> [UInt8]? {
        enum Step { case message([UInt8]), end, fail(GRPCStatus), wait }
        let step: Step = state.withLock { state in
            if let message = state.take() { return .message(message) }
            if let finished = state.finished {
                return finished.code == .ok ? .end : .fail(finished)
            }
            return .wait
        }
        switch step {
        case .message(let message):
            onConsume(message.count)
            return message
        case .end:
            return nil
        case .fail(let status):
            throw status
        case .wait:
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let early: Step? = state.withLock { state in
                        if let message = state.take() { return .message(message) }
                        if let finished = state.finished {
                            return finished.code == .ok ? .end : .fail(finished)
                        }
                        state.waiter = continuation
                        return nil
                    }
                    switch early {
                    case .message(let message)?:
                        continuation.resume(returning: message)
                        onConsume(message.count)
                    case .end?: continuation.resume(returning: nil)
                    case .fail(let status)?: continuation.resume(throwing: status)
                    case .wait?, nil: break
                    }
                }
            } onCancel: {
                self.finish(GRPCStatus(.cancelled, "call cancelled"))
            }
        }
    }

    /// The single request of a server-streaming call; INTERNAL if the client sent none or several.
    public func single() async throws -> [UInt8] {
        guard let first = try await next() else {
            throw GRPCStatus(.internalError, "grpc: expected one request message, got none")
        }
        if try await next() != nil {
            throw GRPCStatus(.internalError, "grpc: expected one request message, got several")
        }
        return first
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: RequestStream
        public mutating func next() async throws -> [UInt8]? { try await stream.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }
}
