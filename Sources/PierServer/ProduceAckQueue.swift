// The acks of a pipelined ProduceStream: bounded, completed in any order, sent in request order.
import PierGRPC
import Synchronization

/// The receiver reserves a slot per request before submitting it, the log writer's thread
/// completes slots as appends become durable, and the sender takes them in reservation order. Reserving waits
/// while `capacity` acks are outstanding, so a client that does not read its acks stops being
/// read from (HTTP/2 flow control) rather than growing this queue.
final class ProduceAckQueue<Ack: Sendable>: Sendable {
    private struct State {
        var slots: [Ack?] = []
        var head = 0
        /// Sequence number of slots[head].
        var headSeq = 0
        var inputDone = false
        var cancelled = false
        var receiverWaiter: CheckedContinuation<Void, any Error>? = nil
        var senderWaiter: CheckedContinuation<Void, Never>? = nil

        var outstanding: Int { slots.count - head }
    }

    private enum Step {
        case ack(Ack, CheckedContinuation<Void, any Error>?)
        case end
        case wait
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Waits for room, then returns the sequence number of a new slot.
    func reserve() async throws -> Int {
        while true {
            let seq: Int? = try state.withLock { s in
                if s.cancelled { throw CancellationError() }
                guard s.outstanding < capacity else { return nil }
                s.slots.append(nil)
                return s.headSeq + s.slots.count - 1 - s.head
            }
            if let seq { return seq }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    let resumeNow: Bool = state.withLock { s in
                        if s.cancelled || s.outstanding < capacity { return true }
                        s.receiverWaiter = c
                        return false
                    }
                    if resumeNow { c.resume() }
                }
            } onCancel: {
                self.cancel()
            }
        }
    }

    /// Fills slot `seq` with its encoded response (any thread).
    func complete(_ seq: Int, _ response: Ack) {
        let wake: CheckedContinuation<Void, Never>? = state.withLock { s in
            let index = s.head + (seq - s.headSeq)
            guard index >= s.head, index < s.slots.count else { return nil }
            s.slots[index] = response
            guard index == s.head else { return nil }
            defer { s.senderWaiter = nil }
            return s.senderWaiter
        }
        wake?.resume()
    }

    /// No more slots will be reserved: `next` returns nil once the reserved ones are sent.
    func finishInput() {
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.inputDone = true
            defer { s.senderWaiter = nil }
            return s.senderWaiter
        }
        wake?.resume()
    }

    /// Wakes both sides for good (the call is ending).
    func cancel() {
        let (receiver, sender) = state.withLock { s in
            s.cancelled = true
            defer { s.receiverWaiter = nil; s.senderWaiter = nil }
            return (s.receiverWaiter, s.senderWaiter)
        }
        receiver?.resume(throwing: CancellationError())
        sender?.resume()
    }

    /// The oldest ack once it is complete; nil when input is finished and every ack was taken,
    /// or when the queue was cancelled.
    func next() async -> Ack? {
        while true {
            let step: Step = state.withLock { s in
                if s.cancelled { return .end }
                if s.head < s.slots.count, let ack = s.slots[s.head] {
                    s.slots[s.head] = nil
                    s.head += 1
                    s.headSeq += 1
                    if s.head == s.slots.count || s.head > 1024 {
                        s.slots.removeFirst(s.head)
                        s.head = 0
                    }
                    defer { s.receiverWaiter = nil }
                    return .ack(ack, s.receiverWaiter)
                }
                if s.inputDone && s.head == s.slots.count { return .end }
                return .wait
            }
            switch step {
            case .ack(let ack, let receiver):
                receiver?.resume()
                return ack
            case .end:
                return nil
            case .wait:
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let resumeNow: Bool = state.withLock { s in
                            let ready = s.head < s.slots.count && s.slots[s.head] != nil
                            if s.cancelled || ready || (s.inputDone && s.head == s.slots.count) { return true }
                            s.senderWaiter = c
                            return false
                        }
                        if resumeNow { c.resume() }
                    }
                } onCancel: {
                    self.cancel()
                }
            }
        }
    }
}
