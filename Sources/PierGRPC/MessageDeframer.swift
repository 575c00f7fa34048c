// Splits a call's DATA bytes into gRPC length-prefixed messages (1-byte flag, 4-byte length).
import NIOCore

/// Accumulates DATA bytes and yields complete messages. Holds at most one partial message,
/// bounded by the maximum message size: a larger declared length is refused before any of
/// its payload is buffered.
struct MessageDeframer {
    enum Failure: Error, Equatable {
        /// The declared length exceeds the limit (RESOURCE_EXHAUSTED).
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag is set; Pier accepts only identity encoding (UNIMPLEMENTED).
        case compressed
        /// The flag byte is neither 0 nor 1 (INTERNAL, as grpc-go answers).
        case badFlag(UInt8)
    }

    let maxMessageBytes: Int
    private var buffer: ByteBuffer
    private var expected: Int? = nil
    private var expectedCompressed = false

    init(maxMessageBytes: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxMessageBytes = maxMessageBytes
        self.buffer = allocator.buffer(capacity: 0)
    }

    /// Bytes buffered towards the next message.
    var bufferedBytes: Int { buffer.readableBytes }

    /// True when no partial message is pending (a clean end of stream).
    var isAtBoundary: Bool { buffer.readableBytes == 0 && expected == nil }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.writeBytes(bytes)
    }

    mutating func append(_ bytes: [UInt8]) {
        buffer.writeBytes(bytes)
    }

    /// The next complete uncompressed message, nil when more bytes are needed; a compressed
    /// one is an error (for calls without a negotiated encoding).
    mutating func next() throws(Failure) -> [UInt8]? {
        guard let frame = try nextFrame() else { return nil }
        if frame.compressed { throw .compressed }
        return frame.bytes
    }

    /// The next complete message and whether its compressed flag was set.
    mutating func nextFrame() throws(Failure) -> (bytes: [UInt8], compressed: Bool)? {
        if expected == nil {
            guard buffer.readableBytes >= 5,
                  let flag = buffer.readInteger(as: UInt8.self),
                  let length = buffer.readInteger(endianness: .big, as: UInt32.self) else { return nil }
            guard flag <= 1 else { throw .badFlag(flag) }
            if Int(length) > maxMessageBytes {
                throw .tooLarge(length: Int(length), limit: maxMessageBytes)
            }
            expected = Int(length)
            expectedCompressed = flag == 1
        }
        guard let length = expected, buffer.readableBytes >= length else { return nil }
        let message = (bytes: buffer.readBytes(length: length) ?? [], compressed: expectedCompressed)
        expected = nil
        if buffer.readableBytes == 0 { buffer.clear() } else if buffer.readerIndex > 65_536 { buffer.discardReadBytes() }
        return message
    }
}

/// Frames one outgoing message: flag 0 (uncompressed), big-endian length, payload.
func frameMessage(_ message: [UInt8], into buffer: inout ByteBuffer) {
    buffer.writeInteger(UInt8(0))
    buffer.writeInteger(UInt32(message.count), endianness: .big)
    buffer.writeBytes(message)
}
