// After the TLS handshake, tells the connection whose certificate the client presented.
import NIOCore
import NIOSSL
import NIOTLS

/// Sits behind the TLS handler. When the handshake completes it reads the verified peer
/// certificate's common name and sends it on as a `PeerIdentityEvent`, so calls on this
/// connection carry it (etcd treats it as the user name when no token is given).
public final class PeerIdentityHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer

    public init() {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            let commonName = tls?.peerCertificate?.subjectName.last { $0.type == .commonName }?.value
            context.fireUserInboundEventTriggered(PeerIdentityEvent(commonName: commonName))
        }
        context.fireUserInboundEventTriggered(event)
    }
}
