// The C callbacks nghttp2 calls; each forwards to the connection handler in its user data.
import CNghttp2

/// One callbacks table and one options object, shared read-only by every session (nghttp2
/// copies both when a session is created).
final class SessionCallbacks: Sendable {
    static let shared = SessionCallbacks()

    // Written once in init and only read afterwards; nghttp2 copies them per session.
    nonisolated(unsafe) let callbacks: OpaquePointer
    nonisolated(unsafe) let options: OpaquePointer

    private init() {
        var callbacks: OpaquePointer? = nil
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        self.callbacks = callbacks!

        var options: OpaquePointer? = nil
        nghttp2_option_new(&options)
        // Window updates are ours to send: a stream's window opens only as its handler takes
        // messages, which is how a slow handler slows its client instead of growing a buffer.
        nghttp2_option_set_no_auto_window_update(options, 1)
        self.options = options!
    }

    static let readData: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
        handler(userData).readData(streamID: streamID, buffer: buffer!, length: length, flags: flags!)
    }

    private static func handler(_ userData: UnsafeMutableRawPointer?) -> GRPCConnectionHandler {
        Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
    }
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
          frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
    return Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
        .onBeginHeaders(streamID: frame.pointee.hd.stream_id)
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame else { return 0 }
    return Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
        .onHeader(streamID: frame.pointee.hd.stream_id,
                  name: UnsafeBufferPointer(start: name, count: nameLength),
                  value: UnsafeBufferPointer(start: value, count: valueLength))
}

private let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    return Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue().onFrameReceived(frame)
}

private let onDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
        .onDataChunk(streamID: streamID, data: UnsafeBufferPointer(start: data, count: length))
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    Unmanaged<GRPCConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
        .onStreamClose(streamID: streamID, errorCode: errorCode)
}
