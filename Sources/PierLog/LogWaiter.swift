// A parked long-poll read, woken once: by new durable records or by its timeout, whichever is first.

import Synchronization

final class LogWaiter: Sendable {
    /// Wake when the high watermark passes this offset.
    let offset: Int64
    private let action: Mutex<(@Sendable () -> Void)?>

    init(offset: Int64, _ action: @escaping @Sendable () -> Void) {
        self.offset = offset
        self.action = Mutex(action)
    }

    var isDone: Bool { action.withLock { $0 == nil } }

    /// Runs the action if nobody has yet; later calls do nothing.
    func fire() {
        let a = action.withLock { a -> (@Sendable () -> Void)? in
            defer { a = nil }
            return a
        }
        a?()
    }
}
