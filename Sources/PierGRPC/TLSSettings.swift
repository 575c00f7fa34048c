// TLS settings of the gRPC port, named as etcd names its flags.

/// Where the server's certificate, key and trusted CA live; `clientCertAuth` asks every client
/// for a certificate signed by the trusted CA (mutual TLS), as etcd's `--client-cert-auth`.
public struct TLSSettings: Sendable, Equatable {
    public var certFile: String
    public var keyFile: String
    public var trustedCAFile: String?
    public var clientCertAuth: Bool

    public init(certFile: String, keyFile: String, trustedCAFile: String? = nil, clientCertAuth: Bool = false) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.trustedCAFile = trustedCAFile
        self.clientCertAuth = clientCertAuth
    }
}
