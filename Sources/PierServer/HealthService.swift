// grpc.health.v1.Health: Check and Watch, as load balancers and grpc_health_probe expect.
import CProtobufC
import NIOCore
import PierGRPC
import PierProto
import Synchronization

/// The serving status of each service name ("" is the server as a whole).
public final class HealthStatus: Sendable {
    public enum Status: Sendable { case serving, notServing }

    private struct State {
        var statuses: [String: Status] = [:]
        var watchers: [Int: @Sendable () -> Void] = [:]
        var nextWatcher = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func set(_ service: String, _ status: Status) {
        let watchers = state.withLock { state -> [@Sendable () -> Void] in
            state.statuses[service] = status
            return Array(state.watchers.values)
        }
        for notify in watchers { notify() }
    }

    public func status(of service: String) -> Status? {
        state.withLock { $0.statuses[service] }
    }

    /// Calls `onChange` after every change until the returned token is passed to `unwatch`.
    func watch(_ onChange: @escaping @Sendable () -> Void) -> Int {
        state.withLock { state in
            state.nextWatcher += 1
            state.watchers[state.nextWatcher] = onChange
            return state.nextWatcher
        }
    }

    func unwatch(_ token: Int) {
        _ = state.withLock { $0.watchers.removeValue(forKey: token) }
    }
}

public struct HealthService: GRPCService {
    public let serviceName = "grpc.health.v1.Health"
    let health: HealthStatus

    public init(health: HealthStatus) {
        self.health = health
    }

    public var methods: [String: GRPCMethod] {
        let health = self.health
        return [
            "Check": .unary { _, request, responder in
                do {
                    let service = try Self.decodeService(request)
                    guard let status = health.status(of: service) else {
                        responder.fail(GRPCStatus(.notFound, "unknown service"))
                        return
                    }
                    responder.succeed(Self.encode(status == .serving
                        ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                        : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING))
                } catch let status as GRPCStatus {
                    responder.fail(status)
                } catch {
                    responder.fail(GRPCStatus(.internalError, "\(error)"))
                }
            },
            "Watch": .streaming { _, requests, writer in
                let service = try Self.decodeService(try await requests.single())
                // Each change wakes the loop below; it sends the status only when it differs.
                let (changes, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                let token = health.watch { continuation.yield() }
                defer { health.unwatch(token) }
                continuation.yield()
                var last: Grpc__Health__V1__HealthCheckResponse__ServingStatus? = nil
                for await _ in changes {
                    let current: Grpc__Health__V1__HealthCheckResponse__ServingStatus
                    switch health.status(of: service) {
                    case .serving?: current = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    case .notServing?: current = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                    case nil: current = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                    }
                    if current != last {
                        try await writer.send(Self.encode(current))
                        last = current
                    }
                }
            },
        ]
    }

    private static func decodeService(_ bytes: [UInt8]) throws -> String {
        try WireMessage.decode(bytes, as: "grpc.health.v1.HealthCheckRequest",
                               unpack: grpc__health__v1__health_check_request__unpack,
                               free: grpc__health__v1__health_check_request__free_unpacked) { request in
            wireString(request.pointee.service)
        }
    }

    private static func encode(_ status: Grpc__Health__V1__HealthCheckResponse__ServingStatus) -> [UInt8] {
        var response = Grpc__Health__V1__HealthCheckResponse()
        grpc__health__v1__health_check_response__init(&response)
        response.status = status
        return WireMessage.encode(&response,
                                  size: grpc__health__v1__health_check_response__get_packed_size,
                                  pack: grpc__health__v1__health_check_response__pack)
    }
}
