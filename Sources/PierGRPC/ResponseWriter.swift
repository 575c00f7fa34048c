// Sends a streaming call's response messages, suspending while the peer is not reading.

/// Writes response messages of a streaming call. `send` returns once the message is queued
/// for the connection; it suspends while the call's outbound buffer is above its bound (the
/// client stopped reading or its HTTP/2 window is closed), which is how backpressure reaches
/// the handler. It throws `GRPCStatus(.cancelled)` once the call is gone.
public struct ResponseWriter: Sendable {
    let sendMessage: @Sendable ([UInt8]) async throws -> Void

    public init(send: @escaping @Sendable ([UInt8]) async throws -> Void) {
        self.sendMessage = send
    }

    public func send(_ message: [UInt8]) async throws {
        try await sendMessage(message)
    }
}
