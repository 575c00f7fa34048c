// Helpers for protobuf-c messages: decode with a clear status, encode to bytes, free safely.
import CProtobufC
import PierGRPC
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decoding and encoding of protobuf-c messages through their generated functions.
///
/// protobuf-c's generic `protobuf_c_message_unpack` wants the address of the generated
/// descriptor, which Swift cannot take without copying it; so each service passes the
/// generated `__unpack`/`__free_unpacked` functions of its message type instead.
enum WireMessage {
    /// Decodes `bytes` with a generated `unpack` function, runs `body` on the message, frees it.
    /// A malformed message is INVALID_ARGUMENT naming the expected type.
    static func decode<Message, Result>(
        _ bytes: [UInt8],
        as name: String,
        unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        free: (UnsafeMutablePointer<Message>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
        _ body: (UnsafeMutablePointer<Message>) throws -> Result
    ) throws -> Result {
        let message = bytes.withUnsafeBufferPointer { buffer in
            unpack(nil, buffer.count, buffer.baseAddress ?? UnsafePointer(bitPattern: 1))
        }
        guard let message else {
            throw GRPCStatus(.invalidArgument, "malformed \(name): not a valid protobuf encoding of this message")
        }
        defer { free(message, nil) }
        return try body(message)
    }

    /// Encodes a message with its generated `get_packed_size` and `pack` functions.
    static func encode<Message>(
        _ message: UnsafePointer<Message>,
        size: (UnsafePointer<Message>?) -> Int,
        pack: (UnsafePointer<Message>?, UnsafeMutablePointer<UInt8>?) -> Int
    ) -> [UInt8] {
        let count = size(message)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = count == 0 ? 0 : pack(message, buffer.baseAddress)
        }
    }
}

extension ProtobufCBinaryData {
    /// The bytes as a Swift array (copied).
    var bytes: [UInt8] {
        guard len > 0, let data else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: len))
    }
}

/// Reads a protobuf-c string field (NUL-terminated; protobuf-c uses an empty static string for
/// absent fields).
func wireString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

/// The C memory behind one protobuf-c message tree while it is built and packed.
///
/// protobuf-c messages are C structs linked by pointers (nested messages, repeated fields,
/// bytes), so a response made of Swift values needs somewhere to put them. Everything is
/// bump-allocated from a few blocks and freed at once when the arena goes away, which keeps a
/// large Range or watch batch to a handful of mallocs. Used on one thread only.
final class WireArena {
    private static let blockSize = 32 * 1024
    private var blocks: [UnsafeMutableRawPointer] = []
    private var cursor: UnsafeMutableRawPointer? = nil
    private var remaining = 0

    init() {}

    deinit {
        for block in blocks { free(block) }
    }

    /// Runs `body` with a fresh arena; everything allocated in it is freed on return.
    static func with<R>(_ body: (WireArena) throws -> R) rethrows -> R {
        let arena = WireArena()
        return try withExtendedLifetime(arena) { try body(arena) }
    }

    /// Uninitialized, 16-byte aligned room for `count` values of `T`.
    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let size = max(1, (MemoryLayout<T>.stride * count + 15) & ~15)
        if size > remaining {
            if size > Self.blockSize / 4 {
                // Large arrays get a block of their own so the current block is not wasted.
                guard let block = malloc(size) else { fatalError("out of memory") }
                blocks.append(block)
                return block.bindMemory(to: T.self, capacity: count)
            }
            guard let block = malloc(Self.blockSize) else { fatalError("out of memory") }
            blocks.append(block)
            cursor = block
            remaining = Self.blockSize
        }
        let pointer = cursor!
        cursor = pointer + size
        remaining -= size
        return pointer.bindMemory(to: T.self, capacity: count)
    }

    /// A message struct initialized by its generated `__init` function.
    func message<T>(_ type: T.Type, _ initialize: (UnsafeMutablePointer<T>?) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = allocate(T.self)
        initialize(pointer)
        return pointer
    }

    /// An array of message pointers for a repeated field.
    func pointers<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?> {
        allocate(UnsafeMutablePointer<T>?.self, count: count)
    }

    /// A copy of `bytes` as protobuf-c bytes (empty means absent, as proto3 encodes it).
    func bytes(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        guard !bytes.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        let pointer = allocate(UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: bytes.count) }
        return ProtobufCBinaryData(len: bytes.count, data: pointer)
    }

    /// A NUL-terminated copy of `string`.
    func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        var utf8 = Array(string.utf8)
        utf8.append(0)
        let pointer = allocate(CChar.self, count: utf8.count)
        utf8.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { pointer.update(from: $0.baseAddress!, count: utf8.count) }
        }
        return pointer
    }
}
