// One gRPC call on one HTTP/2 stream: request headers and messages in, replies and status out.
import CNghttp2
import NIOCore

/// The state of one call. Owned by its connection and touched only on the connection's event
/// loop; handlers reach it through `NIOLoopBound` hops.
final class ServerStream {
    let id: Int32
    unowned let connection: GRPCConnectionHandler

    // Request headers, collected until END_HEADERS.
    var isPost = false
    /// The method when it is not POST (kept only to say so in the error).
    var method: String? = nil
    var path: String? = nil
    var hasGRPCContentType = false
    /// The content-type when it is not gRPC's (kept only to say so in the error).
    var contentType: String? = nil
    var timeout: String? = nil
    var encoding: String? = nil
    var metadata = Metadata()
    var headerBytes = 0
    var headerOverflow = false

    // Request side.
    var deframer: MessageDeframer
    var call: GRPCMethod? = nil
    var context: CallContext? = nil
    /// Unary calls: the messages received so far (must be exactly one at END_STREAM).
    var unaryMessages: [[UInt8]] = []
    /// Streaming calls: where messages go as they arrive.
    var requests: RequestStream? = nil
    /// Stream-level window not yet returned because the handler has not taken its messages.
    var deferredConsume = 0
    var requestEnded = false

    // Response side.
    var outbound: ByteBuffer
    var responseStarted = false
    var finalStatus: GRPCStatus? = nil
    /// The call's final status has been decided; later completions are ignored.
    var finished = false
    var dataDeferred = false
    var writeWaiters: [CheckedContinuation<Void, any Error>] = []

    // Lifetime.
    var task: Task<Void, Never>? = nil
    var deadlineTimer: Scheduled<Void>? = nil
    var closed = false
    var cancelledFlag: CancelFlag = CancelFlag()

    init(id: Int32, connection: GRPCConnectionHandler, maxMessageBytes: Int, allocator: ByteBufferAllocator) {
        self.id = id
        self.connection = connection
        self.deframer = MessageDeframer(maxMessageBytes: maxMessageBytes, allocator: allocator)
        self.outbound = allocator.buffer(capacity: 0)
    }

    // MARK: Response

    /// Queues one response message, starting the response (HEADERS) if needed.
    func enqueue(_ message: [UInt8]) {
        guard !finished, !closed else { return }
        frameMessage(message, into: &outbound)
        startResponseIfNeeded()
        resumeDataIfDeferred()
        connection.scheduleFlush()
    }

    /// Ends the call with `status`. Before any message was sent this is a Trailers-Only reply.
    func finish(_ status: GRPCStatus) {
        guard !finished else { return }
        finished = true
        deadlineTimer?.cancel()
        deadlineTimer = nil
        failWriters(GRPCStatus(.cancelled, "call already finished"))
        guard !closed else { return }
        if !responseStarted {
            connection.submitTrailersOnly(streamID: id, status: status)
        } else {
            finalStatus = status
            resumeDataIfDeferred()
        }
        connection.scheduleFlush()
    }

    /// Ends the call and stops the handler (deadline, protocol violation, shutdown).
    func abort(_ status: GRPCStatus) {
        finish(status)
        cancelHandler(status)
    }

    private func startResponseIfNeeded() {
        guard !responseStarted else { return }
        responseStarted = true
        connection.submitResponseHeaders(streamID: id)
    }

    private func resumeDataIfDeferred() {
        if dataDeferred {
            dataDeferred = false
            connection.resumeData(streamID: id)
        }
    }

    /// nghttp2's data source: copies queued response bytes, then submits the trailers.
    func readData(into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let available = outbound.readableBytes
        if available > 0 {
            let count = min(length, available)
            outbound.withUnsafeReadableBytes { bytes in
                buffer.update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
            }
            outbound.moveReaderIndex(forwardBy: count)
            if outbound.readableBytes == 0 {
                outbound.clear()
            } else if outbound.readerIndex >= 64 * 1024 && outbound.readerIndex >= outbound.readableBytes {
                // A stream that never drains completely must still give back what was sent.
                outbound.discardReadBytes()
            }
            if outbound.readableBytes < connection.configuration.streamOutboundHighWater / 2 {
                wakeWriters()
            }
            return count
        }
        if let status = finalStatus {
            finalStatus = nil
            connection.submitTrailers(streamID: id, status: status)
            flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) | UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
            return 0
        }
        dataDeferred = true
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }

    /// True while the outbound buffer may take another message without exceeding its bound.
    var hasOutboundRoom: Bool {
        outbound.readableBytes < connection.configuration.streamOutboundHighWater
    }

    private func wakeWriters() {
        let waiters = writeWaiters
        writeWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    private func failWriters(_ status: GRPCStatus) {
        let waiters = writeWaiters
        writeWaiters.removeAll()
        for waiter in waiters { waiter.resume(throwing: status) }
    }

    // MARK: Lifetime

    /// The HTTP/2 stream is gone (RST_STREAM, connection closed, or normal completion).
    func streamClosed() {
        closed = true
        deadlineTimer?.cancel()
        deadlineTimer = nil
        let status = finished ? GRPCStatus(.cancelled, "call finished") : GRPCStatus(.cancelled, "call cancelled by the client")
        failWriters(status)
        if !finished {
            finished = true
            cancelHandler(status)
        } else {
            requests?.finish(status)
        }
        // The request stream's consume callback holds this stream, so keeping it here would
        // be a cycle that outlives the call, outbound buffer and all. The handler keeps its own
        // reference for as long as it still reads.
        requests = nil
        // Nothing more is sent; a handler still winding down need not hold the buffer's capacity.
        outbound = ByteBuffer()
    }

    private func cancelHandler(_ status: GRPCStatus) {
        cancelledFlag.set()
        requests?.finish(status)
        task?.cancel()
    }
}

/// A flag a `.unary` handler may poll from any thread to learn that its call is gone.
final class CancelFlag: Sendable {
    private let box = Atomic<Bool>(false)
    func set() { box.store(true, ordering: .relaxed) }
    var isSet: Bool { box.load(ordering: .relaxed) }
}

import Synchronization
