// Reloads the TLS certificate on SIGHUP and when its files change, without a restart.
import Dispatch
import Foundation
import PierGRPC

/// Owns a SIGHUP source and a timer that polls the files' modification times.
final class TLSReloader: @unchecked Sendable {  // sources are created in init and touched only on `queue`
    private let queue = DispatchQueue(label: "pier.tls-reload")
    private var sources: [any DispatchSourceProtocol] = []

    init(provider: TLSContextProvider, interval: Double) {
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        hangup.setEventHandler { provider.reload(force: true) }
        hangup.resume()
        sources.append(hangup)
        if interval > 0 {
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + interval, repeating: interval)
            timer.setEventHandler { provider.reload() }
            timer.resume()
            sources.append(timer)
        }
    }

    func stop() {
        queue.sync {
            for source in sources { source.cancel() }
            sources.removeAll()
        }
    }
}
