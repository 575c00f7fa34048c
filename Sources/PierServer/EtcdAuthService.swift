// etcdserverpb.Auth: authentication is not implemented yet; answers as an etcd with auth disabled.
import CProtobufC
import PierGRPC
import PierKV
import PierProto

/// Until the auth store exists, Pier behaves as an etcd whose authentication was never
/// enabled: status says so, login is refused with etcd's "not enabled" error, disabling is a
/// no-op, and managing users or roles is UNIMPLEMENTED.
public struct EtcdAuthService: GRPCService {
    public let serviceName = "etcdserverpb.Auth"
    let context: EtcdContext

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let identity = context.identity
        let store = context.store
        var methods: [String: GRPCMethod] = [:]
        for name in ["AuthEnable", "UserAdd", "UserGet", "UserList", "UserDelete", "UserChangePassword",
                     "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList", "RoleDelete",
                     "RoleGrantPermission", "RoleRevokePermission"] {
            methods[name] = .unary { _, _, responder in
                responder.fail(GRPCStatus(.unimplemented, "pier: authentication is not implemented yet (\(name))"))
            }
        }
        methods["Authenticate"] = .unary { _, _, responder in
            responder.fail(EtcdError.authNotEnabled)
        }
        methods["AuthDisable"] = .unary { _, _, responder in
            responder.succeed(EtcdEncode.headerOnly(revision: store.currentRevision, identity))
        }
        methods["AuthStatus"] = .unary { _, _, responder in
            let bytes = WireArena.with { arena in
                var m = Etcdserverpb__AuthStatusResponse()
                etcdserverpb__auth_status_response__init(&m)
                m.header = EtcdEncoder(arena: arena, identity: identity).header(revision: store.currentRevision)
                m.enabled = 0
                return WireMessage.encode(&m, size: etcdserverpb__auth_status_response__get_packed_size,
                                          pack: etcdserverpb__auth_status_response__pack)
            }
            responder.succeed(bytes)
        }
        return methods
    }
}
