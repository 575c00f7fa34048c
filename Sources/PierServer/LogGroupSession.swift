// One member's JoinGroup stream: join, then assignments pushed on every rebalance, heartbeats in.
import PierGRPC
import PierLog
import Synchronization

/// The coordinator calls the member's listener from whichever thread rebalanced, possibly
/// several at once, so assignments may arrive out of order: the session keeps only the
/// newest generation and the sender writes it if it is newer than the last one written.
/// Only the latest assignment matters to a member, so a slow reader skips generations it
/// would have superseded anyway and nothing queues up.
final class LogGroupSession: Sendable {
    private struct State {
        var latest: GroupCoordinator.Assignment? = nil
        var sentGeneration: Int64 = -1
        /// Set when the session is over: OK after leave or half-close, else why it ended.
        var ended: GRPCStatus? = nil
        /// The coordinator dropped the member (expiry, or the same id joined elsewhere), so
        /// leaving on the way out would remove someone else's membership.
        var droppedByCoordinator = false
        var waiter: CheckedContinuation<Void, Never>? = nil
        var signaled = false
    }

    private let engine: LogEngine
    private let state = Mutex(State())

    init(engine: LogEngine) {
        self.engine = engine
    }

    func run(requests: RequestStream, writer: ResponseWriter) async throws {
        // The stream's iterator holds no state of its own, so a second one continues where the first stopped.
        var messages = requests.makeAsyncIterator()
        guard let first = try await messages.next() else {
            throw GRPCStatus(.invalidArgument, "JoinGroup stream closed before its first message (join)")
        }
        guard case .join(let join)? = try LogDecode.groupSessionMessage(first) else {
            throw GRPCStatus(.invalidArgument, "the first JoinGroup message must be `join`")
        }
        for topic in join.topics { try TopicName.validate(topic) }
        let groups = engine.groups
        let memberId = try groups.join(groupId: join.groupId, memberId: join.memberId.isEmpty ? nil : join.memberId,
                                       clientId: join.clientId, topics: join.topics,
                                       sessionTimeoutMs: join.sessionTimeoutMs, assignor: join.assignor) { [weak self] result in
            self?.deliver(result)
        }
        defer {
            if !state.withLock({ $0.droppedByCoordinator }) { groups.leave(groupId: join.groupId, memberId: memberId) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Errors end the session through `end`, which the sender below is waiting on.
                do {
                    for try await bytes in requests {
                        switch try LogDecode.groupSessionMessage(bytes) {
                        case .heartbeat(let generation)?:
                            _ = try groups.heartbeat(groupId: join.groupId, memberId: memberId, generation: generation)
                        case .leave?:
                            self.end(.ok)
                            return
                        case .join?:
                            throw GRPCStatus(.invalidArgument, "`join` may only be the first message of a JoinGroup stream")
                        case nil:
                            throw GRPCStatus(.invalidArgument, "JoinGroupRequest has no kind set")
                        }
                    }
                    // Half-close leaves the group, as `leave` does.
                    self.end(.ok)
                } catch {
                    self.end(logStatus(error))
                }
            }
            try await sendAssignments(writer)
            group.cancelAll()
        }
    }

    /// Writes every newer assignment until the session ends.
    private func sendAssignments(_ writer: ResponseWriter) async throws {
        while true {
            enum Step { case send(GroupCoordinator.Assignment), end(GRPCStatus), wait }
            let step: Step = state.withLock { s in
                s.signaled = false
                if let latest = s.latest, latest.generation > s.sentGeneration {
                    s.sentGeneration = latest.generation
                    return .send(latest)
                }
                if let ended = s.ended { return .end(ended) }
                return .wait
            }
            switch step {
            case .send(let assignment):
                try await writer.send(LogEncode.assignment(assignment))
            case .end(let status):
                if status.code != .ok { throw status }
                return
            case .wait:
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let now = state.withLock { s -> Bool in
                            if s.signaled || s.ended != nil { return true }
                            s.waiter = c
                            return false
                        }
                        if now { c.resume() }
                    }
                } onCancel: {
                    self.end(GRPCStatus(.cancelled, "call cancelled"))
                }
            }
        }
    }

    private func deliver(_ result: Result<GroupCoordinator.Assignment, LogError>) {
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>? in
            switch result {
            case .success(let assignment):
                if assignment.generation > (s.latest?.generation ?? -1) { s.latest = assignment }
            case .failure(let error):
                s.droppedByCoordinator = true
                if s.ended == nil { s.ended = error.grpcStatus }
            }
            s.signaled = true
            defer { s.waiter = nil }
            return s.waiter
        }
        wake?.resume()
    }

    private func end(_ status: GRPCStatus) {
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.ended == nil { s.ended = status }
            s.signaled = true
            defer { s.waiter = nil }
            return s.waiter
        }
        wake?.resume()
    }
}
