// The protobuf-c helpers made public, for executables outside PierServer (the test server).
import CProtobufC
import PierGRPC

/// Public entry points to `WireMessage` and the protobuf-c field readers, so that services
/// living in other targets decode and encode exactly as PierServer's own services do.
public enum ProtobufWire {
    /// Decodes `bytes` with a generated `unpack` function, runs `body` on the message, frees it.
    /// A malformed message throws INVALID_ARGUMENT naming `name`.
    public static func decode<Message, Result>(
        _ bytes: [UInt8],
        as name: String,
        unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        free: (UnsafeMutablePointer<Message>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
        _ body: (UnsafeMutablePointer<Message>) throws -> Result
    ) throws -> Result {
        try WireMessage.decode(bytes, as: name, unpack: unpack, free: free, body)
    }

    /// Encodes a message with its generated `get_packed_size` and `pack` functions.
    public static func encode<Message>(
        _ message: UnsafePointer<Message>,
        size: (UnsafePointer<Message>?) -> Int,
        pack: (UnsafePointer<Message>?, UnsafeMutablePointer<UInt8>?) -> Int
    ) -> [UInt8] {
        WireMessage.encode(message, size: size, pack: pack)
    }

    /// A `bytes` field, copied out of the message.
    public static func bytes(_ field: ProtobufCBinaryData) -> [UInt8] { field.bytes }

    /// A `string` field (protobuf-c's empty static string reads as "").
    public static func string(_ field: UnsafeMutablePointer<CChar>?) -> String { wireString(field) }
}
