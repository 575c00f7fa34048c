// etcdserverpb.Cluster: the membership of a one-member cluster (listing works; changes are refused).
import CProtobufC
import PierGRPC
import PierKV
import PierProto

public struct EtcdClusterService: GRPCService {
    public let serviceName = "etcdserverpb.Cluster"
    let context: EtcdContext

    public init(context: EtcdContext) {
        self.context = context
    }

    public var methods: [String: GRPCMethod] {
        let context = self.context
        let identity = context.identity

        /// Membership changes name a member id; answer as etcd does for ids it does not know,
        /// and refuse to reconfigure the only member.
        func memberChange(unpackID: @escaping @Sendable ([UInt8]) throws -> UInt64,
                          onSelf: GRPCStatus) -> GRPCMethod {
            .unary { _, bytes, responder in
                do {
                    let id = try unpackID(bytes)
                    responder.fail(id == identity.memberID ? onSelf : EtcdError.memberNotFound)
                } catch {
                    responder.fail(etcdStatus(error))
                }
            }
        }

        return [
            "MemberList": .unary { _, _, responder in
                responder.succeed(Self.encodeMembers(context))
            },
            "MemberAdd": .unary { _, _, responder in
                responder.fail(EtcdError.unsupported("adding members"))
            },
            "MemberRemove": memberChange(unpackID: { bytes in
                try WireMessage.decode(bytes, as: "etcdserverpb.MemberRemoveRequest",
                                       unpack: etcdserverpb__member_remove_request__unpack,
                                       free: etcdserverpb__member_remove_request__free_unpacked) { $0.pointee.id }
            }, onSelf: EtcdError.unsupported("removing the only member")),
            "MemberUpdate": memberChange(unpackID: { bytes in
                try WireMessage.decode(bytes, as: "etcdserverpb.MemberUpdateRequest",
                                       unpack: etcdserverpb__member_update_request__unpack,
                                       free: etcdserverpb__member_update_request__free_unpacked) { $0.pointee.id }
            }, onSelf: EtcdError.unsupported("changing the peer URLs of the only member")),
            "MemberPromote": memberChange(unpackID: { bytes in
                try WireMessage.decode(bytes, as: "etcdserverpb.MemberPromoteRequest",
                                       unpack: etcdserverpb__member_promote_request__unpack,
                                       free: etcdserverpb__member_promote_request__free_unpacked) { $0.pointee.id }
            }, onSelf: EtcdError.memberNotLearner),
        ]
    }

    static func encodeMembers(_ context: EtcdContext) -> [UInt8] {
        WireArena.with { arena in
            func strings(_ values: [String]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
                guard !values.isEmpty else { return (0, nil) }
                let array = arena.allocate(UnsafeMutablePointer<CChar>?.self, count: values.count)
                for (i, value) in values.enumerated() { array[i] = arena.cString(value) }
                return (values.count, array)
            }
            var m = Etcdserverpb__MemberListResponse()
            etcdserverpb__member_list_response__init(&m)
            // etcd's cluster responses carry no revision: membership is not KV state.
            m.header = EtcdEncoder(arena: arena, identity: context.identity).header(revision: 0)
            let member = arena.message(Etcdserverpb__Member.self, etcdserverpb__member__init)
            member.pointee.id = context.identity.memberID
            member.pointee.name = arena.cString(context.memberName)
            (member.pointee.n_peerurls, member.pointee.peerurls) = strings(context.peerURLs)
            (member.pointee.n_clienturls, member.pointee.clienturls) = strings(context.clientURLs)
            let members = arena.pointers(Etcdserverpb__Member.self, count: 1)
            members[0] = member
            m.n_members = 1
            m.members = members
            return WireMessage.encode(&m, size: etcdserverpb__member_list_response__get_packed_size,
                                      pack: etcdserverpb__member_list_response__pack)
        }
    }
}
