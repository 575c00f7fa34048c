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

    /// The next complete message, nil when more bytes are needed.
    mutating func next() throws(Failure) -> [UInt8]? {
        if expected == nil {
            guard buffer.readableBytes >= 5,
                  let flag = buffer.readInteger(as: UInt8.self),
                  let length = buffer.readInteger(endianness: .big, as: UInt32.self) else { return nil }
            switch flag {
            case 0: break
            case 1: throw .compressed
            default: throw .badFlag(flag)
            }
            if Int(length) > maxMessageBytes {
                throw .tooLarge(length: Int(length), limit: maxMessageBytes)
            }
            expected = Int(length)
        }
        guard let length = expected, buffer.readableBytes >= length else { return nil }
        let message = buffer.readBytes(length: length) ?? []
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
