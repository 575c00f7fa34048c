// One HTTP/2 connection: drives an nghttp2 server session from a SwiftNIO channel.
import CNghttp2
import Logging
import NIOCore

/// Feeds socket bytes to `nghttp2_session_mem_recv`, turns nghttp2's callbacks into gRPC calls
/// (`ServerStream`), and writes what `nghttp2_session_mem_send` produces. Everything here runs
/// on the channel's event loop; the session is never touched from anywhere else.
final class GRPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let configuration: GRPCServerConfiguration
    let router: ServiceRouter
    let logger: Logger
    private var session: OpaquePointer? = nil
    private var streams: [Int32: ServerStream] = [:]
    private var context: ChannelHandlerContext? = nil
    private var peer = "unknown"
    private var peerCommonName: String? = nil
    private var allocator = ByteBufferAllocator()

    private var inRead = false
    private var flushScheduled = false
    private var goingAway = false
    private var isClosed = false

    init(configuration: GRPCServerConfiguration, router: ServiceRouter, logger: Logger) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.allocator = context.channel.allocator
        if let address = context.channel.remoteAddress {
            peer = "\(address.ipAddress ?? "unknown"):\(address.port ?? 0)"
        }
        let userData = Unmanaged.passUnretained(self).toOpaque()
        var newSession: OpaquePointer? = nil
        guard nghttp2_session_server_new2(&newSession, SessionCallbacks.shared.callbacks, userData,
                                          SessionCallbacks.shared.options) == 0, let newSession else {
            logger.error("could not create an HTTP/2 session")
            context.close(promise: nil)
            return
        }
        session = newSession
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: configuration.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: configuration.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(configuration.maxHeaderListBytes)),
        ]
        nghttp2_submit_settings(newSession, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        // Open the connection window wide: flow control per stream is what bounds memory, and a
        // small connection window would let one slow stream stall every other call.
        nghttp2_session_set_local_window_size(newSession, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 16 * 1024 * 1024)
        if context.channel.isActive { flushOutput() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let address = context.channel.remoteAddress {
            peer = "\(address.ipAddress ?? "unknown"):\(address.port ?? 0)"
        }
        flushOutput()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !isClosed else { return }
        let bytes = unwrapInboundIn(data)
        inRead = true
        let result = bytes.withUnsafeReadableBytes { raw in
            nghttp2_session_mem_recv(session, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        inRead = false
        if result < 0 {
            // Bad preface, flood, or an error nghttp2 could not answer in-band: say why, then go.
            logger.debug("closing connection from \(peer): \(String(cString: nghttp2_strerror(Int32(result))))")
            nghttp2_session_terminate_session(session, UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue))
            flushOutput()
            closeConnection()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A client that does not read its replies stops being read: what it could make us
        // buffer is then bounded by the calls already in flight, not by what it keeps sending.
        let writable = context.channel.isWritable
        context.channel.setOption(ChannelOptions.autoRead, value: writable).whenComplete { _ in }
        if writable {
            context.read()
            flushOutput()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        teardown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        teardown()
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error from \(peer): \(error)")
        closeConnection()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GracefulShutdownEvent {
            beginGoAway()
        } else if let identity = event as? PeerIdentityEvent {
            peerCommonName = identity.commonName
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func teardown() {
        guard !isClosed else { return }
        isClosed = true
        let open = streams.values
        streams.removeAll()
        for stream in open { stream.streamClosed() }
        if let session {
            nghttp2_session_del(session)
            self.session = nil
        }
    }

    private func closeConnection() {
        guard let context, !isClosed else { return }
        teardown()
        context.close(promise: nil)
    }

    // MARK: Graceful shutdown

    /// Sends GOAWAY naming the last stream we accepted: calls in flight finish, new ones are
    /// refused by the client. The connection closes once the last call ends.
    private func beginGoAway() {
        guard let session, !goingAway else { return }
        goingAway = true
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                              nghttp2_session_get_last_proc_stream_id(session),
                              UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        flushOutput()
        closeIfDrained()
    }

    private func closeIfDrained() {
        if goingAway && streams.isEmpty {
            flushOutput()
            closeConnection()
        }
    }

    // MARK: Output

    /// Called when a reply became ready outside a read: flush once, after the current work.
    func scheduleFlush() {
        guard !inRead, !flushScheduled, let context else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            bound.value.flushScheduled = false
            bound.value.flushOutput()
        }
    }

    /// Writes every frame nghttp2 has ready, while the socket accepts more.
    func flushOutput() {
        guard let context, let session, !isClosed else { return }
        var wrote = false
        while context.channel.isWritable {
            var chunk = allocator.buffer(capacity: 16 * 1024)
            while chunk.readableBytes < 256 * 1024 {
                var pointer: UnsafePointer<UInt8>? = nil
                let count = nghttp2_session_mem_send(session, &pointer)
                if count < 0 {
                    logger.debug("HTTP/2 send failed for \(peer): \(String(cString: nghttp2_strerror(Int32(count))))")
                    closeConnection()
                    return
                }
                guard count > 0, let pointer else { break }
                chunk.writeBytes(UnsafeRawBufferPointer(start: pointer, count: count))
            }
            guard chunk.readableBytes > 0 else { break }
            context.write(wrapOutboundOut(chunk), promise: nil)
            wrote = true
            if chunk.readableBytes < 256 * 1024 { break }
        }
        if wrote { context.flush() }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            closeConnection()
        }
    }

    // MARK: Submissions (called by ServerStream)

    func submitResponseHeaders(streamID: Int32) {
        guard let session else { return }
        var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil),
                                             read_callback: SessionCallbacks.readData)
        _ = nghttp2_submit_response(session, streamID, ResponseHeaders.ok.nv, ResponseHeaders.ok.count, &provider)
    }

    /// A call's whole reply in one HEADERS frame with END_STREAM (gRPC's Trailers-Only).
    func submitTrailersOnly(streamID: Int32, status: GRPCStatus) {
        submitHeadersOnly(streamID: streamID, httpStatus: 200, status: status)
    }

    func submitTrailers(streamID: Int32, status: GRPCStatus) {
        guard let session else { return }
        if status.code == .ok {
            _ = nghttp2_submit_trailer(session, streamID, ResponseHeaders.okTrailers.nv, ResponseHeaders.okTrailers.count)
            return
        }
        var trailers = HeaderList()
        trailers.addStatus(status)
        trailers.withNV { nv, count in
            _ = nghttp2_submit_trailer(session, streamID, nv, count)
        }
    }

    /// An HTTP-level refusal (not a gRPC status): e.g. 415 for a wrong content-type.
    func submitHTTPError(streamID: Int32, httpStatus: Int, status: GRPCStatus) {
        submitHeadersOnly(streamID: streamID, httpStatus: httpStatus, status: status)
    }

    private func submitHeadersOnly(streamID: Int32, httpStatus: Int, status: GRPCStatus) {
        guard let session else { return }
        var headers = HeaderList()
        headers.add(":status", String(httpStatus))
        headers.add("content-type", "application/grpc")
        headers.addStatus(status)
        headers.withNV { nv, count in
            _ = nghttp2_submit_response(session, streamID, nv, count, nil)
        }
    }

    func resumeData(streamID: Int32) {
        guard let session else { return }
        nghttp2_session_resume_data(session, streamID)
    }

    /// Returns stream-level window for bytes the handler has taken.
    func consumeStream(streamID: Int32, bytes: Int) {
        guard let session, bytes > 0 else { return }
        nghttp2_session_consume_stream(session, streamID, bytes)
        scheduleFlush()
    }

    // MARK: nghttp2 callbacks

    func onBeginHeaders(streamID: Int32) -> Int32 {
        streams[streamID] = ServerStream(id: streamID, connection: self,
                                         maxMessageBytes: configuration.maxReceiveMessageBytes,
                                         allocator: allocator)
        return 0
    }

    func onHeader(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let stream = streams[streamID] else { return 0 }
        if stream.call != nil {
            return 0  // Trailers from the client carry nothing we use.
        }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > configuration.maxHeaderListBytes {
            stream.headerOverflow = true
            return 0
        }
        RequestHeaders.apply(name: name, value: value, to: stream)
        return 0
    }

    func onFrameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(header.type) {
        case NGHTTP2_HEADERS.rawValue:
            guard let stream = streams[header.stream_id] else { return 0 }
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                startCall(stream)
            }
            if endStream { endOfRequest(stream) }
        case NGHTTP2_DATA.rawValue:
            if endStream, let stream = streams[header.stream_id] { endOfRequest(stream) }
        default:
            break
        }
        return 0
    }

    func onDataChunk(streamID: Int32, data: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let session else { return 0 }
        // The connection window is returned at once; each stream's window only as its
        // handler takes messages, so a slow handler holds back its own client only.
        nghttp2_session_consume_connection(session, data.count)
        guard let stream = streams[streamID] else { return 0 }
        guard stream.call != nil, !stream.finished else {
            nghttp2_session_consume_stream(session, streamID, data.count)
            return 0
        }
        if stream.requests == nil, stream.deframer.isAtBoundary, stream.unaryMessages.isEmpty,
           let message = Self.wholeMessage(data, limit: configuration.maxReceiveMessageBytes) {
            // The common unary case: one DATA chunk holding exactly one message; no buffering.
            stream.unaryMessages.append(message)
        } else {
            stream.deframer.append(UnsafeRawBufferPointer(data))
            deliverMessages(stream)
        }
        if let requests = stream.requests, requests.queuedBytes >= configuration.streamInboundHighWater {
            stream.deferredConsume += data.count
        } else {
            nghttp2_session_consume_stream(session, streamID, data.count)
        }
        return 0
    }

    /// The message when `data` is exactly one complete, uncompressed, small-enough message.
    private static func wholeMessage(_ data: UnsafeBufferPointer<UInt8>, limit: Int) -> [UInt8]? {
        guard data.count >= 5, data[0] == 0 else { return nil }
        let length = Int(data[1]) << 24 | Int(data[2]) << 16 | Int(data[3]) << 8 | Int(data[4])
        guard length == data.count - 5, length <= limit else { return nil }
        return Array(data[5...])
    }

    func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 {
        if let stream = streams.removeValue(forKey: streamID) {
            stream.streamClosed()
        }
        if goingAway && streams.isEmpty, let context {
            // Not from inside nghttp2's callback: closing flushes, which calls back into nghttp2.
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute { bound.value.closeIfDrained() }
        }
        return 0
    }

    func readData(streamID: Int32, buffer: UnsafeMutablePointer<UInt8>, length: Int,
                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        return stream.readData(into: buffer, length: length, flags: flags)
    }

    // MARK: Calls

    private func startCall(_ stream: ServerStream) {
        if stream.headerOverflow {
            stream.finish(GRPCStatus(.resourceExhausted, "request headers exceed \(configuration.maxHeaderListBytes) bytes"))
            return
        }
        guard stream.isPost else {
            submitHTTPError(streamID: stream.id, httpStatus: 405,
                            status: GRPCStatus(.internalError, "gRPC requires method POST"))
            stream.finished = true
            return
        }
        guard stream.hasGRPCContentType else {
            submitHTTPError(streamID: stream.id, httpStatus: 415,
                            status: GRPCStatus(.internalError, "invalid gRPC request content-type \"\(stream.contentType ?? "")\""))
            stream.finished = true
            return
        }
        if let encoding = stream.encoding, encoding != "identity", encoding != "gzip" {
            stream.finish(GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""))
            return
        }
        let path: MethodPath
        let method: GRPCMethod
        if let rawPath = stream.path, let (found, foundMethod) = router.route(rawPath) {
            (path, method) = (found, foundMethod)
        } else {
            guard let rawPath = stream.path, let parsed = MethodPath(path: rawPath) else {
                stream.finish(GRPCStatus(.unimplemented, "malformed method name: \"\(stream.path ?? "")\""))
                return
            }
            switch router.lookup(parsed) {
            case .unknownService, .found:
                stream.finish(GRPCStatus(.unimplemented, "unknown service \(parsed.service)"))
            case .unknownMethod:
                stream.finish(GRPCStatus(.unimplemented, "unknown method \(parsed.method) for service \(parsed.service)"))
            }
            return
        }
        var deadline: NIODeadline? = nil
        if let timeout = stream.timeout {
            guard let nanos = GRPCTimeout.parse(timeout) else {
                stream.finish(GRPCStatus(.internalError, "transport: malformed grpc-timeout: \"\(timeout)\""))
                return
            }
            deadline = NIODeadline.now() + .nanoseconds(nanos)
        }
        guard let context else { return }
        stream.call = method
        stream.context = CallContext(path: path, metadata: stream.metadata, deadline: deadline, peer: peer,
                                     peerCommonName: peerCommonName, eventLoop: context.eventLoop)
        if let deadline {
            // The timer holds the stream until it fires or the stream closes and cancels it.
            let bound = NIOLoopBound(stream, eventLoop: context.eventLoop)
            stream.deadlineTimer = context.eventLoop.scheduleTask(deadline: deadline) {
                bound.value.abort(GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        if case .streaming(let handler) = method {
            startStreamingHandler(stream, handler)
        }
    }

    private func deliverMessages(_ stream: ServerStream) {
        while true {
            var message: [UInt8]?
            do {
                guard let frame = try stream.deframer.nextFrame() else { return }
                message = frame.bytes
                if frame.compressed {
                    guard stream.encoding == "gzip" else {
                        stream.abort(GRPCStatus(.internalError, "grpc: compressed flag set with identity or empty encoding"))
                        return
                    }
                    message = try Gzip.decompress(frame.bytes, limit: configuration.maxReceiveMessageBytes)
                }
            } catch let error as MessageDeframer.Failure {
                let status: GRPCStatus
                switch error {
                case .tooLarge(let length, let limit):
                    status = GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(limit))")
                case .compressed:
                    status = GRPCStatus(.internalError, "grpc: compressed flag set with identity or empty encoding")
                case .badFlag(let flag):
                    status = GRPCStatus(.internalError, "grpc: invalid message compression flag \(flag)")
                }
                stream.abort(status)
                return
            } catch Gzip.Failure.tooLarge(let limit) {
                stream.abort(GRPCStatus(.resourceExhausted, "grpc: received message after decompression larger than max \(limit)"))
                return
            } catch {
                stream.abort(GRPCStatus(.internalError, "grpc: failed to decompress the received message: not valid gzip"))
                return
            }
            guard let message else { return }
            if let requests = stream.requests {
                requests.deliver(message)
            } else {
                stream.unaryMessages.append(message)
                if stream.unaryMessages.count > 1 {
                    stream.abort(GRPCStatus(.internalError, "grpc: unary call received more than one request message"))
                    return
                }
            }
        }
    }

    private func endOfRequest(_ stream: ServerStream) {
        guard !stream.requestEnded else { return }
        stream.requestEnded = true
        guard let call = stream.call, !stream.finished, let callContext = stream.context else { return }
        if !stream.deframer.isAtBoundary {
            stream.abort(GRPCStatus(.internalError, "grpc: request ended in the middle of a message (truncated frame)"))
            return
        }
        switch call {
        case .streaming:
            stream.requests?.finish(.ok)
        case .unary(let handler):
            guard let request = singleRequest(stream) else { return }
            let responder = makeResponder(stream)
            handler(callContext, request, responder)
        case .asyncUnary(let handler):
            guard let request = singleRequest(stream) else { return }
            let bound = NIOLoopBound(stream, eventLoop: callContext.eventLoop)
            let loop = callContext.eventLoop
            stream.task = Self.spawn {
                let result = await Self.runUnary(handler, callContext, request)
                loop.execute { Self.complete(bound.value, result) }
            }
        }
    }

    private func singleRequest(_ stream: ServerStream) -> [UInt8]? {
        guard stream.unaryMessages.count == 1 else {
            stream.finish(GRPCStatus(.internalError, "grpc: unary call requires exactly one request message, got \(stream.unaryMessages.count)"))
            return nil
        }
        defer { stream.unaryMessages = [] }
        return stream.unaryMessages[0]
    }

    private func makeResponder(_ stream: ServerStream) -> UnaryResponder {
        let loop = context!.eventLoop
        let bound = NIOLoopBound(stream, eventLoop: loop)
        let flag = stream.cancelledFlag
        return UnaryResponder(complete: { result in
            if loop.inEventLoop {
                Self.complete(bound.value, result)
            } else {
                loop.execute { Self.complete(bound.value, result) }
            }
        }, cancelled: { flag.isSet })
    }

    private static func complete(_ stream: ServerStream, _ result: Result<[UInt8], GRPCStatus>) {
        switch result {
        case .success(let response):
            stream.enqueue(response)
            stream.finish(.ok)
        case .failure(let status):
            stream.finish(status)
        }
    }

    private func startStreamingHandler(_ stream: ServerStream,
                                       _ handler: @escaping @Sendable (CallContext, RequestStream, ResponseWriter) async throws -> Void) {
        guard let callContext = stream.context else { return }
        let loop = callContext.eventLoop
        let bound = NIOLoopBound(stream, eventLoop: loop)
        let inboundHighWater = configuration.streamInboundHighWater
        let requests = RequestStream(onConsume: { _ in
            loop.execute {
                let stream = bound.value
                guard stream.deferredConsume > 0, let queued = stream.requests?.queuedBytes,
                      queued < inboundHighWater else { return }
                let bytes = stream.deferredConsume
                stream.deferredConsume = 0
                stream.connection.consumeStream(streamID: stream.id, bytes: bytes)
            }
        })
        stream.requests = requests
        let writer = ResponseWriter(send: { message in
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                loop.execute {
                    let stream = bound.value
                    guard !stream.finished, !stream.closed else {
                        continuation.resume(throwing: GRPCStatus(.cancelled, "call is no longer active"))
                        return
                    }
                    stream.enqueue(message)
                    if stream.hasOutboundRoom {
                        continuation.resume()
                    } else {
                        stream.writeWaiters.append(continuation)
                    }
                }
            }
        })
        stream.task = Self.spawn {
            let status = await Self.runStreaming(handler, callContext, requests, writer)
            loop.execute { bound.value.finish(status) }
        }
    }

    /// Starts a handler's task. (A plain `Task {}` at the call sites trips the compiler's
    /// region-based isolation checker; a `@Sendable` closure parameter does not.)
    private static func spawn(_ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        Task { await body() }
    }

    private static func runUnary(_ handler: @Sendable (CallContext, [UInt8]) async throws -> [UInt8],
                                 _ context: CallContext, _ request: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        do {
            return .success(try await handler(context, request))
        } catch {
            return .failure(status(for: error))
        }
    }

    private static func runStreaming(_ handler: @Sendable (CallContext, RequestStream, ResponseWriter) async throws -> Void,
                                     _ context: CallContext, _ requests: RequestStream,
                                     _ writer: ResponseWriter) async -> GRPCStatus {
        do {
            try await handler(context, requests, writer)
            return .ok
        } catch {
            return status(for: error)
        }
    }

    static func status(for error: any Error) -> GRPCStatus {
        if let status = error as? GRPCStatus { return status }
        if error is CancellationError { return GRPCStatus(.cancelled, "call cancelled") }
        return GRPCStatus(.unknown, "\(error)")
    }
}

/// Sent down a connection's pipeline to start a graceful shutdown (GOAWAY, drain, close).
struct GracefulShutdownEvent: Sendable {}

/// Sent once TLS has verified a client certificate: its common name becomes the call's identity.
public struct PeerIdentityEvent: Sendable {
    public var commonName: String?
    public init(commonName: String?) { self.commonName = commonName }
}
