// pier.testing.v1.Echo: one method per kind of call, for the gateway's tests (never in pier).
import Foundation
import PierGRPC

/// Echoes requests back in every call shape, and reports what its handlers observed.
struct EchoService: GRPCService {
    let serviceName = "pier.testing.v1.Echo"
    let stats: CallStats

    var methods: [String: GRPCMethod] {
        let stats = self.stats
        return [
            "Unary": .asyncUnary { context, bytes in
                try await stats.track {
                    let request = try EchoRequest(bytes: bytes)
                    try request.failIfAsked()
                    return encodeEchoResponse(payload: request.payload, index: 0,
                                              metadata: Self.echoed(context.metadata))
                }
            },
            "ServerStream": .streaming { context, requests, writer in
                try await stats.track {
                    let request = try EchoRequest(bytes: try await requests.single())
                    let metadata = Self.echoed(context.metadata)
                    for index in 0..<UInt64(request.count) {
                        if index > 0 { try await Self.sleep(milliseconds: request.delayMilliseconds) }
                        try await writer.send(encodeEchoResponse(payload: request.payload, index: index,
                                                                 metadata: index == 0 ? metadata : []))
                    }
                    // Failing after the replies lets tests see messages followed by an error status.
                    try request.failIfAsked()
                }
            },
            "ClientStream": .streaming { context, requests, writer in
                try await stats.track {
                    var payload: [UInt8] = []
                    var count: UInt64 = 0
                    for try await bytes in requests {
                        let request = try EchoRequest(bytes: bytes)
                        try request.failIfAsked()
                        payload += request.payload
                        count += 1
                    }
                    try await writer.send(encodeEchoResponse(payload: payload, index: count,
                                                             metadata: Self.echoed(context.metadata)))
                }
            },
            "Bidi": .streaming { _, requests, writer in
                try await stats.track {
                    var index: UInt64 = 0
                    for try await bytes in requests {
                        let request = try EchoRequest(bytes: bytes)
                        try request.failIfAsked()
                        try await Self.sleep(milliseconds: request.delayMilliseconds)
                        try await writer.send(encodeEchoResponse(payload: request.payload, index: index))
                        index += 1
                    }
                }
            },
            "Slow": .asyncUnary { _, bytes in
                try await stats.track {
                    let request = try EchoRequest(bytes: bytes)
                    try await Self.sleep(milliseconds: request.delayMilliseconds)
                    try request.failIfAsked()
                    return encodeEchoResponse(payload: request.payload, index: 0)
                }
            },
            "Firehose": .streaming { _, requests, writer in
                try await stats.track {
                    let request = try EchoRequest(bytes: try await requests.single())
                    // One encoding reused: the point is the transport's buffering, not encoding.
                    let reply = encodeEchoResponse(payload: request.payload, index: 0)
                    for _ in 0..<request.count {
                        try await writer.send(reply)
                    }
                }
            },
            "Stats": .asyncUnary { _, bytes in
                try decodeEmpty(bytes)
                return encodeSlowStats(cancelled: stats.cancelledCalls, completed: stats.completedCalls,
                                       residentBytes: CallStats.residentBytes())
            },
        ]
    }

    /// Request metadata as "key=value" lines; binary (`-bin`) values in padded base64.
    static func echoed(_ metadata: Metadata) -> [String] {
        metadata.map { entry in
            entry.isBinary ? "\(entry.key)=\(Data(entry.value).base64EncodedString())" : "\(entry.key)=\(entry.text)"
        }
    }

    /// Sleeps in small steps so that cancellation (deadline, RST_STREAM) is noticed promptly.
    static func sleep(milliseconds: UInt32) async throws {
        var remaining = Int(milliseconds)
        while remaining > 0 {
            try Task.checkCancellation()
            let step = min(remaining, 10)
            try await Task.sleep(for: .milliseconds(step))
            remaining -= step
        }
        try Task.checkCancellation()
    }
}

/// A failure the client asked for with `fail_code`: counted as a completed call, not a cancelled one.
struct RequestedFailure: Error {
    let status: GRPCStatus
}

extension EchoRequest {
    func failIfAsked() throws {
        guard failCode != 0 else { return }
        let code = GRPCStatus.Code(rawValue: Int(failCode)) ?? .unknown
        throw RequestedFailure(status: GRPCStatus(code, errorMessage))
    }
}

extension CallStats {
    /// Runs a handler body, counting whether it completed or observed its call being cancelled.
    func track<Result>(_ body: () async throws -> Result) async throws -> Result {
        do {
            let result = try await body()
            recordCompleted()
            return result
        } catch let failure as RequestedFailure {
            recordCompleted()
            throw failure.status
        } catch {
            let status = error as? GRPCStatus
            if Task.isCancelled || error is CancellationError
                || status?.code == .cancelled || status?.code == .deadlineExceeded {
                recordCancelled()
                throw status ?? GRPCStatus(.cancelled, "call cancelled")
            }
            recordCompleted()
            throw error
        }
    }
}
