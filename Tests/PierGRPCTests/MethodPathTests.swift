// Unit tests for parsing the :path of a gRPC request.
import Testing
@testable import PierGRPC

@Suite struct MethodPathTests {
    @Test func parsesServiceAndMethod() throws {
        let path = try #require(MethodPath(path: "/grpc.health.v1.Health/Check"))
        #expect(path.service == "grpc.health.v1.Health")
        #expect(path.method == "Check")
        #expect(path.description == "/grpc.health.v1.Health/Check")
        #expect(path == MethodPath(service: "grpc.health.v1.Health", method: "Check"))
    }

    @Test(arguments: [
        "", "/", "//", "/Service", "/Service/", "//Method", "Service/Method",
        "/a/b/c", "/Service/Method/", "a/b/c",
    ])
    func rejectsOtherShapes(path: String) {
        #expect(MethodPath(path: path) == nil)
    }
}
