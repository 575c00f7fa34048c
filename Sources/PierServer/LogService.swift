// pier.log.v1.Log: topics, produce, fetch/subscribe, consumer groups and work queues over the log engine.
import Dispatch
import Foundation
import Logging
import NIOCore
import PierGRPC
import PierLog

public struct LogService: GRPCService {
    public let serviceName = "pier.log.v1.Log"
    public let engine: LogEngine

    /// Acks a ProduceStream may have outstanding before the server stops reading its requests.
    static let maxOutstandingProduceAcks = 256

    public init(engine: LogEngine) {
        self.engine = engine
    }

    /// Opens (or creates) the log in `directory`, its metadata beside the partitions.
    public static func open(directory: String, logger: Logger) throws -> LogService {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let metadata = try FileLogMetadataStore(path: directory + "/metadata.db")
        let engine = try LogEngine(directory: directory, metadata: metadata)
        logger.info("log opened", metadata: ["directory": "\(directory)", "topics": "\(engine.listTopics().count)"])
        return LogService(engine: engine)
    }

    /// Stops the engine's writer after what is queued (call once the gateway has stopped).
    public func shutdown() {
        engine.shutdown()
    }

    public var methods: [String: GRPCMethod] {
        let engine = self.engine
        return [
            // Admin calls wait for the metadata store, so they run off the event loops.
            "CreateTopic": Self.blocking { _, bytes in
                let r = try LogDecode.createTopic(bytes)
                let d = try await engine.admin { try $0.createTopic(r.topic, partitions: r.partitions, configs: r.configs) }
                return LogEncode.topicResponse(d, kind: .create)
            },
            "DeleteTopic": Self.blocking { _, bytes in
                let topic = try LogDecode.topicName(deleteRequest: bytes)
                try await engine.admin { try $0.deleteTopic(topic) }
                return []
            },
            "ListTopics": Self.unary { _, bytes, responder in
                try LogDecode.emptyListTopicsRequest(bytes)
                responder.succeed(LogEncode.listTopics(engine.listTopics()))
            },
            "DescribeTopic": Self.unary { _, bytes, responder in
                let topic = try LogDecode.topicName(describeRequest: bytes)
                responder.succeed(LogEncode.topicResponse(try engine.describeTopic(topic), kind: .describe))
            },
            "AlterTopicConfig": Self.blocking { _, bytes in
                let r = try LogDecode.alterTopicConfig(bytes)
                let d = try await engine.admin { try $0.alterTopicConfig(r.topic, set: r.set, remove: r.remove) }
                return LogEncode.topicResponse(d, kind: .alter)
            },
            "InitProducer": Self.blocking { _, bytes in
                try LogDecode.emptyInitProducerRequest(bytes)
                return LogEncode.initProducer(try await engine.admin { try $0.initProducerId() })
            },

            // The ack leaves from the writer's group commit: no task, no thread parked per call.
            "Produce": Self.unary { context, bytes, responder in
                let plan = try ProducePlan.decode(bytes, engine: engine)
                let requestId = plan.requestId
                plan.submit(to: engine) { outcomes in
                    // A status other than OK means nothing of the request was stored.
                    if !outcomes.contains(where: { (try? $0.result.get()) != nil }), case .failure(let status) = outcomes[0].result {
                        responder.fail(status)
                        return
                    }
                    context.eventLoop.execute { responder.succeed(LogEncode.produce(outcomes, requestId: requestId)) }
                }
            },
            "ProduceStream": Self.streaming { _, requests, writer in
                try await Self.produceStream(engine: engine, requests: requests, writer: writer)
            },

            "Fetch": Self.unary { context, bytes, responder in
                let r = try LogDecode.fetch(bytes)
                engine.fetch(topic: r.topic, partition: r.partition, offset: r.offset, maxBytes: r.maxBytes,
                             maxWaitMs: Self.wait(r.maxWaitMs, within: context.deadline)) { result in
                    switch result {
                    case .success(let fetched): responder.succeed(LogEncode.fetch(fetched))
                    case .failure(let error): responder.fail(error.grpcStatus)
                    }
                }
            },
            "Subscribe": Self.streaming { _, requests, writer in
                let r = try LogDecode.subscribe(try await requests.single())
                try await LogSubscription.run(r, engine: engine, writer: writer)
            },
            "ListOffsets": Self.blocking { _, bytes in
                let r = try LogDecode.listOffsets(bytes)
                return LogEncode.listOffsets(try engine.listOffsets(topic: r.topic, partitions: r.partitions, spec: r.spec))
            },

            "JoinGroup": Self.streaming { _, requests, writer in
                try await LogGroupSession(engine: engine).run(requests: requests, writer: writer)
            },
            "CommitOffsets": Self.blocking { _, bytes in
                let r = try LogDecode.commitOffsets(bytes)
                try await Self.offload { done in
                    engine.groups.commitOffsets(groupId: r.groupId, memberId: r.memberId, generation: r.generation,
                                                offsets: r.offsets, completion: done)
                }
                return []
            },
            "FetchOffsets": Self.unary { _, bytes, responder in
                let r = try LogDecode.fetchOffsets(bytes)
                responder.succeed(LogEncode.fetchOffsets(engine.groups.fetchOffsets(groupId: r.groupId, partitions: r.partitions)))
            },
            "ListGroups": Self.unary { _, bytes, responder in
                try LogDecode.emptyListGroupsRequest(bytes)
                responder.succeed(LogEncode.listGroups(engine.groups.listGroups()))
            },
            "DescribeGroup": Self.unary { _, bytes, responder in
                let groupId = try LogDecode.groupId(describeRequest: bytes)
                responder.succeed(LogEncode.describeGroup(try engine.groups.describeGroup(groupId)))
            },

            "Receive": Self.blocking { context, bytes in
                let r = try LogQueueWire.receive(bytes)
                let records = try await Self.offload { done in
                    engine.queues.receive(topic: r.topic, queue: r.queue, maxRecords: r.maxRecords,
                                          visibilityTimeoutMs: r.visibilityTimeoutMs,
                                          maxWaitMs: Self.wait(r.maxWaitMs, within: context.deadline), completion: done)
                }
                return LogQueueWire.receiveResponse(records)
            },
            "Ack": Self.blocking { _, bytes in
                let r = try LogQueueWire.ack(bytes)
                let (acked, stale) = try await engine.admin { try $0.queues.ack(topic: r.topic, queue: r.queue, leases: r.leases) }
                return LogQueueWire.ackResponse(acked: acked, stale: stale)
            },
            "Nack": Self.blocking { _, bytes in
                let r = try LogQueueWire.nack(bytes)
                let (nacked, stale) = try await engine.admin {
                    try $0.queues.nack(topic: r.topic, queue: r.queue, leases: r.leases, redeliverAfterMs: r.redeliverAfterMs)
                }
                return LogQueueWire.nackResponse(nacked: nacked, stale: stale)
            },
        ]
    }

    // MARK: ProduceStream

    /// Requests are appended as they arrive (pipelined); acks go back in request order as each
    /// becomes durable. A request the server cannot make sense of ends the stream with its
    /// status after the acks of the requests before it.
    private static func produceStream(engine: LogEngine, requests: RequestStream, writer: ResponseWriter) async throws {
        let acks = ProduceAckQueue<(outcomes: [ProduceOutcome], requestId: UInt64)>(capacity: maxOutstandingProduceAcks)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    while let ack = await acks.next() {
                        try await writer.send(LogEncode.produce(ack.outcomes, requestId: ack.requestId))
                    }
                } catch {
                    acks.cancel()
                    throw error
                }
            }
            var failure: (any Error)? = nil
            do {
                for try await bytes in requests {
                    let plan = try ProducePlan.decode(bytes, engine: engine)
                    let seq = try await acks.reserve()
                    let requestId = plan.requestId
                    plan.submit(to: engine) { outcomes in acks.complete(seq, (outcomes, requestId)) }
                }
            } catch {
                failure = error
            }
            acks.finishInput()
            try await group.waitForAll()
            if let failure { throw failure }
        }
    }

    // MARK: helpers

    /// A long-poll wait that ends a little before the call's deadline, so the client gets an
    /// empty reply rather than DEADLINE_EXCEEDED.
    static func wait(_ ms: Int64, within deadline: NIODeadline?) -> Int64 {
        guard let deadline, ms > 0 else { return ms }
        let left = (deadline - .now()).nanoseconds / 1_000_000 - 50
        return max(0, min(ms, left))
    }

    /// Runs a completion-based engine call on a dispatch thread (it may block on disk).
    static func offload<T: Sendable>(_ start: @escaping @Sendable (@escaping @Sendable (Result<T, LogError>) -> Void) -> Void) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                start { continuation.resume(with: $0.mapError { $0 as any Error }) }
            }
        }
    }

    /// A unary handler on the event loop; anything it throws fails the call with its status.
    static func unary(_ body: @escaping @Sendable (CallContext, [UInt8], UnaryResponder) throws -> Void) -> GRPCMethod {
        .unary { context, bytes, responder in
            do { try body(context, bytes, responder) } catch { responder.fail(logStatus(error)) }
        }
    }

    /// A unary handler in a task, for calls that wait on the metadata store or the disk.
    static func blocking(_ body: @escaping @Sendable (CallContext, [UInt8]) async throws -> [UInt8]) -> GRPCMethod {
        .asyncUnary { context, bytes in
            do { return try await body(context, bytes) } catch { throw logStatus(error) }
        }
    }

    static func streaming(_ body: @escaping @Sendable (CallContext, RequestStream, ResponseWriter) async throws -> Void) -> GRPCMethod {
        .streaming { context, requests, writer in
            do { try await body(context, requests, writer) } catch { throw logStatus(error) }
        }
    }
}
