// Finds the handler for a `/package.Service/Method` path.

/// An immutable table of services, shared by every connection.
struct ServiceRouter: Sendable {
    enum Lookup {
        case found(GRPCMethod)
        case unknownService
        case unknownMethod
    }

    private let services: [String: [String: GRPCMethod]]

    init(services: [any GRPCService]) {
        var table: [String: [String: GRPCMethod]] = [:]
        for service in services {
            table[service.serviceName, default: [:]].merge(service.methods) { _, new in new }
        }
        self.services = table
    }

    func lookup(_ path: MethodPath) -> Lookup {
        guard let methods = services[path.service] else { return .unknownService }
        guard let method = methods[path.method] else { return .unknownMethod }
        return .found(method)
    }
}
