// Unit tests for splitting DATA bytes into gRPC length-prefixed messages.
import Testing
@testable import PierGRPC

/// A gRPC frame: flag byte, big-endian length, payload.
private func frame(_ payload: [UInt8], flag: UInt8 = 0, declaredLength: Int? = nil) -> [UInt8] {
    let length = UInt32(declaredLength ?? payload.count)
    return [flag, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + payload
}

/// Every complete message currently available.
private func drain(_ deframer: inout MessageDeframer) throws -> [[UInt8]] {
    var messages: [[UInt8]] = []
    while let message = try deframer.next() { messages.append(message) }
    return messages
}

@Suite struct MessageDeframerTests {
    @Test func yieldsSeveralMessagesFromOneChunk() throws {
        var deframer = MessageDeframer(maxMessageBytes: 1024)
        deframer.append(frame([1, 2, 3]) + frame([]) + frame(Array(repeating: 7, count: 300)))
        let messages = try drain(&deframer)
        #expect(messages == [[1, 2, 3], [], Array(repeating: 7, count: 300)])
        #expect(deframer.isAtBoundary)
        #expect(deframer.bufferedBytes == 0)
    }

    @Test func emptyMessageIsAMessage() throws {
        var deframer = MessageDeframer(maxMessageBytes: 16)
        deframer.append(frame([]))
        #expect(try deframer.next() == [])
        #expect(try deframer.next() == nil)
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 64])
    func reassemblesMessagesSplitAcrossChunks(chunkSize: Int) throws {
        let payloads: [[UInt8]] = [Array(0..<10), [], Array(repeating: 0xAB, count: 100)]
        let bytes = payloads.flatMap { frame($0) }
        var deframer = MessageDeframer(maxMessageBytes: 1024)
        var messages: [[UInt8]] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunkSize, bytes.count)
            deframer.append(Array(bytes[offset..<end]))
            messages += try drain(&deframer)
            offset = end
        }
        #expect(messages == payloads)
        #expect(deframer.isAtBoundary)
    }

    @Test func partialMessageIsNotAtBoundary() throws {
        var deframer = MessageDeframer(maxMessageBytes: 1024)
        deframer.append(Array(frame([1, 2, 3, 4]).prefix(7)))
        #expect(try deframer.next() == nil)
        #expect(!deframer.isAtBoundary)

        var headerOnly = MessageDeframer(maxMessageBytes: 1024)
        headerOnly.append([0, 0, 0])
        #expect(try headerOnly.next() == nil)
        #expect(!headerOnly.isAtBoundary)
    }

    @Test func messageOfExactlyTheLimitIsAccepted() throws {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        deframer.append(frame(Array(repeating: 1, count: 100)))
        #expect(try deframer.next()?.count == 100)
    }

    @Test func tooLargeIsRefusedFromTheHeaderAlone() {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        // Only the prefix arrives: the declared length must be refused before any payload.
        deframer.append(Array(frame([], declaredLength: 101)))
        #expect(throws: MessageDeframer.Failure.tooLarge(length: 101, limit: 100)) {
            try deframer.next()
        }
    }

    @Test func hugeDeclaredLengthIsRefused() {
        var deframer = MessageDeframer(maxMessageBytes: 4 * 1024 * 1024)
        deframer.append([0, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: MessageDeframer.Failure.tooLarge(length: Int(UInt32.max), limit: 4 * 1024 * 1024)) {
            try deframer.next()
        }
    }

    @Test func compressedFlagIsRefused() {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        deframer.append(frame([1, 2, 3], flag: 1))
        #expect(throws: MessageDeframer.Failure.compressed) { try deframer.next() }
    }

    @Test(arguments: [UInt8(2), 0x80, 0xFF])
    func unknownFlagIsRefused(flag: UInt8) {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        deframer.append(frame([1], flag: flag))
        #expect(throws: MessageDeframer.Failure.badFlag(flag)) { try deframer.next() }
    }

    @Test func frameMessageWritesFlagLengthAndPayload() {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        frameMessage([9, 8, 7], into: &buffer)
        #expect(buffer.readBytes(length: buffer.readableBytes) == [0, 0, 0, 0, 3, 9, 8, 7])
    }

    @Test func framedOutputDeframesBack() throws {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        let payloads: [[UInt8]] = [[], [1], Array(repeating: 42, count: 70_000)]
        for payload in payloads { frameMessage(payload, into: &buffer) }
        var deframer = MessageDeframer(maxMessageBytes: 100_000)
        deframer.append(buffer.readBytes(length: buffer.readableBytes)!)
        #expect(try drain(&deframer) == payloads)
    }
}

import NIOCore
