// Builds the TLS context from files and swaps in a new one when they change, without a restart.
import Foundation
import Logging
import NIOSSL
import Synchronization

/// Holds the current `NIOSSLContext`. New connections take the current one; connections
/// already open keep theirs. `reload()` (on SIGHUP, or when a file's modification time
/// changes) loads the files again and swaps the context only if they load cleanly, so a
/// half-written certificate never takes the port down.
public final class TLSContextProvider: Sendable {
    public let settings: TLSSettings
    private let current: Mutex<(context: NIOSSLContext, stamp: [Double])>
    private let logger: Logger

    public init(settings: TLSSettings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        let context = try Self.makeContext(settings)
        current = Mutex((context, Self.stamp(settings)))
    }

    public var context: NIOSSLContext { current.withLock { $0.context } }

    /// Reloads when forced or when any file's modification time changed; returns true when a
    /// new context is in place.
    @discardableResult
    public func reload(force: Bool = false) -> Bool {
        let stamp = Self.stamp(settings)
        if !force && current.withLock({ $0.stamp == stamp }) { return false }
        do {
            let context = try Self.makeContext(settings)
            current.withLock { $0 = (context, stamp) }
            logger.info("TLS certificate reloaded", metadata: ["cert-file": "\(settings.certFile)"])
            return true
        } catch {
            logger.error("TLS reload failed; keeping the previous certificate: \(error)")
            return false
        }
    }

    private static func makeContext(_ settings: TLSSettings) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(settings.certFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.applicationProtocols = ["h2"]
        configuration.minimumTLSVersion = .tlsv12
        if let ca = settings.trustedCAFile {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
        }
        // etcd verifies client certificates only with --client-cert-auth; a trusted CA alone
        // does not make them mandatory.
        configuration.certificateVerification = settings.clientCertAuth ? .noHostnameVerification : .none
        return try NIOSSLContext(configuration: configuration)
    }

    private static func stamp(_ settings: TLSSettings) -> [Double] {
        [settings.certFile, settings.keyFile, settings.trustedCAFile].map { path in
            guard let path, let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let date = attributes[.modificationDate] as? Date else { return 0 }
            return date.timeIntervalSince1970
        }
    }
}
