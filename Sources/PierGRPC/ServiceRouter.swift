// Finds the handler for a `/package.Service/Method` path.

/// An immutable table of services, shared by every connection.
struct ServiceRouter: Sendable {
    enum Lookup {
        case found(GRPCMethod)
        case unknownService
        case unknownMethod
    }

    private let services: [String: [String: GRPCMethod]]
    /// Every method by its full `:path`, so a call is routed without splitting the path.
    private let byPath: [String: (MethodPath, GRPCMethod)]

    init(services: [any GRPCService]) {
        var table: [String: [String: GRPCMethod]] = [:]
        for service in services {
            table[service.serviceName, default: [:]].merge(service.methods) { _, new in new }
        }
        self.services = table
        var byPath: [String: (MethodPath, GRPCMethod)] = [:]
        for (service, methods) in table {
            for (name, method) in methods {
                let path = MethodPath(service: service, method: name)
                byPath[path.description] = (path, method)
            }
        }
        self.byPath = byPath
    }

    /// The method registered for this exact `:path`, if any.
    func route(_ rawPath: String) -> (MethodPath, GRPCMethod)? {
        byPath[rawPath]
    }

    func lookup(_ path: MethodPath) -> Lookup {
        guard let methods = services[path.service] else { return .unknownService }
        guard let method = methods[path.method] else { return .unknownMethod }
        return .found(method)
    }
}
