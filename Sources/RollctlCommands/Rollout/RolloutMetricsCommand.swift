import ArgumentParser
import Foundation
import Basics
import RolloutJournal
import Engine
import WebAPI

/// `rollctl rollout metrics ID`: rollctl's own metrics of one rollout, as `/metrics` serves them.
struct RolloutMetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "A rollout's metrics in the Prometheus text format (hosts by state, waves, gate verdicts, reboot durations, notices).",
        discussion: "The same page `plan apply --metrics-listen` serves during a run, read from the journal: for a finished rollout, or to push to a Pushgateway."
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id.") var id: String

    func run() async throws {
        let (j, _) = try journal.rollout(id)
        for line in try RolloutMetrics.page(journal: j, rolloutID: id).split(separator: "\n") { Console.shared.out(String(line)) }
    }
}

/// `--metrics-listen HOST:PORT`: serve the run's metrics while it is driven.
struct MetricsOption: ParsableArguments {
    @Option(name: .customLong("metrics-listen"),
            help: ArgumentHelp("Serve the rollout's metrics at http://HOST:PORT/metrics while this process drives it (Prometheus text format; loopback unless you name another address).",
                               valueName: "host:port"))
    var listen: String?

    func validate() throws {
        if let l = listen, HTTPEndpoint.parseListen(l) == nil {
            throw ValidationError("--metrics-listen must be HOST:PORT (e.g. 127.0.0.1:9465), found '\(l)'")
        }
    }

    /// Binds the listener before any host is touched: a port in use is bad input (exit 2).
    /// `rolloutID()` names the rollout once it exists (plan apply creates it after the bind).
    func start(journal: Journal, rolloutID: @escaping @Sendable () -> String?) async throws -> HTTPEndpoint? {
        guard let l = listen, let (host, port) = HTTPEndpoint.parseListen(l) else { return nil }
        do {
            let endpoint = try await MetricsEndpoint.start(host: host, port: port) {
                guard let id = rolloutID() else { return "# no rollout yet\n" }
                do { return try RolloutMetrics.page(journal: journal, rolloutID: id) } catch { return "# journal unreadable: \(error)\n" }
            }
            Console.shared.err("metrics: http://\(host.contains(":") ? "[\(host)]" : host):\(endpoint.port)/metrics")
            return endpoint
        } catch {
            Console.shared.error("cannot listen on \(l) for --metrics-listen: \(error)")
            Console.shared.err("  hint: choose a free port, or leave --metrics-listen out; nothing was started")
            throw ExitCode(ExitStatus.badInput)
        }
    }
}

/// A value set once, read from any thread.
final class OnceBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T) { lock.withLock { value = v } }
    func get() -> T? { lock.withLock { value } }
}
