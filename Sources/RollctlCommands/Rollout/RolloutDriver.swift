import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

/// Runs a rollout in the foreground: signals stop it cleanly, progress goes to the console.
enum RolloutDriver {
    /// The rollout service over `journal`, its log on the console, stopped by `stop`.
    static func service(_ journal: Journal, json: Bool, log: LogOptions, stop: StopFlag? = nil) -> RolloutService {
        RolloutService(journal: journal, sshConfig: SSHConfig.load(), stopRequested: { stop?.isSet ?? false }, logger: log.logger(json: json))
    }

    /// Drives the rollout; maps the outcome to the documented exit code.
    static func drive(_ orchestrator: Orchestrator, with service: RolloutService, json: Bool) async throws {
        let console = Console.shared
        // Uploads of kernel.packages in flight, shown under the live view (the log says when each ended).
        let uploads = UploadBoard()
        orchestrator.onUploadProgress { uploads.update($0) }
        // The live view on a terminal (stderr), redrawn every second from the journal; log lines
        // go above it. Not on a pipe, with TERM=dumb or --json (the log lines alone then).
        let ticker = Task {
            guard console.stderrIsTTY, !json, ProcessInfo.processInfo.environment["TERM"] != "dumb" else { return }
            let view = LiveView(journal: orchestrator.journal, rolloutID: orchestrator.rolloutID, console: console)
            while !Task.isCancelled {
                let size = console.terminalSize ?? (80, 24)
                // Half the terminal at most: the log scrolls above it.
                var frame = view.frame(columns: size.columns, rows: max(6, size.rows / 2))
                if let line = uploads.line() { frame.append(String(line.prefix(max(20, size.columns - 1)))) }
                console.live(frame)
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { ticker.cancel() }
        let outcome: RolloutOutcome
        do { outcome = try await service.drive(orchestrator) } catch let e as LeaseHeld { throw refusal(e) }
        ticker.cancel()
        console.clearProgress()
        switch outcome {
        case .completed:
            if json { console.out(JSONLine.encode(["type": "result", "rollout": orchestrator.rolloutID, "outcome": "completed"])) }
        case .halted(let reason):
            if json {
                console.out(JSONLine.encode(["type": "result", "rollout": orchestrator.rolloutID, "outcome": "halted", "reason": reason]))
            } else {
                console.out("")
                console.out(console.paint("Rollout \(orchestrator.rolloutID) HALTED: \(reason)", .red))
                RolloutShow.renderHosts(try orchestrator.journal.hosts(orchestrator.rolloutID))
                console.out("Details: rollctl rollout show \(orchestrator.rolloutID)")
            }
            throw ExitCode(ExitStatus.halted)
        case .interrupted:
            if json { console.out(JSONLine.encode(["type": "result", "rollout": orchestrator.rolloutID, "outcome": "interrupted"])) }
            throw ExitCode(ExitStatus.interrupted)
        case .aborted:
            throw ExitCode(ExitStatus.interrupted)
        }
    }

    /// Another live process drives the rollout: say who, exit 1, touch nothing.
    static func refusal(_ e: LeaseHeld) -> ExitCode {
        Console.shared.error("refused: \(e)")
        Console.shared.err("  hint: wait for it to finish, or stop it with `rollctl rollout abort \(e.rolloutID)`")
        return ExitCode(ExitStatus.hostFailure)
    }
}

/// Set by SIGINT/SIGTERM: the orchestrator finishes the step in flight and stops.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var sources: [DispatchSourceSignal] = []

    func install() {
        lock.lock(); let installed = !sources.isEmpty; lock.unlock()
        guard !installed else { return }
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock(); let first = !self.stopped; self.stopped = true; self.lock.unlock()
                if first {
                    Console.shared.warn("stopping after the steps in flight (signal \(sig)); the journal stays consistent; resume later")
                } else {
                    Console.shared.warn("already stopping; waiting for in-flight steps")
                }
            }
            s.resume()
            sources.append(s)
        }
    }

    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
}

/// `plan apply` without --dry-run: plan, journal, run.
enum ApplyRun {
    static func run(planPath: String, inventoryPath: String?, journal: JournalOption, parallel: Int, json: Bool, log: LogOptions,
                    at: String? = nil, allowKnownBad: Bool = false, metrics: MetricsOption = MetricsOption(),
                    leaseTTL: Duration = .seconds(60)) async throws {
        let console = Console.shared
        let sshConfig = SSHConfig.load()
        let loaded = try PlanLoader.loadChecked(path: planPath, inventoryPath: inventoryPath, sshConfig: sshConfig)
        let startAt = try PlanApply.startAt(at, plan: loaded.plan)
        try KnownBadCheck.refuse(loaded.plan, journal: journal, allowed: allowKnownBad, existingOnly: false)
        if loaded.inventory.defaults.hostKeyPolicy == .off {
            console.warn("host_key_policy is 'off' in \(loaded.inventory.path): host keys are NOT verified")
        }
        let stop = StopFlag()
        var service = RolloutService(journal: try journal.open(), sshConfig: sshConfig, stopRequested: { stop.isSet },
                                     logger: log.logger(json: json))
        service.leaseTTL = leaseTTL
        let createdID = OnceBox<String>()
        let endpoint = try await metrics.start(journal: service.journal, rolloutID: { createdID.get() })
        let created: RolloutService.Created
        do {
            created = try await service.create(loaded, parallel: parallel, startAt: startAt)
        } catch let e as Journal.LockConflict {
            console.error("refused: \(e)")
            console.err("  hint: wait for it, or `rollctl rollout resume \(e.holder.id)` / `rollctl rollout abort \(e.holder.id)`")
            throw ExitCode(ExitStatus.hostFailure)
        }
        createdID.set(created.id)
        let (plan, layout, id, path) = (loaded.plan, created.layout, created.id, service.journal.path)
        let hostsInWaves = layout.waves.reduce(0) { $0 + $1.hosts.count }
        if !json {
            console.out("rollout \(id): plan '\(plan.name)' → \(plan.kernel.release); \(layout.waves.count) waves, \(hostsInWaves) hosts, \(layout.skipped.count) skipped; journal \(path)"
                        + (startAt.map { "; starts at \(TimeText.iso($0))" } ?? ""))
            for s in layout.skipped { console.out("  skipped \(s.host.name): \(s.reason)") }
        } else {
            console.out(JSONLine.encode(["type": "rollout", "rollout": id, "plan": plan.name, "release": plan.kernel.release,
                                         "waves": layout.waves.count, "hosts": hostsInWaves, "skipped": layout.skipped.count, "journal": path]))
        }
        stop.install()
        do {
            try await RolloutDriver.drive(created.orchestrator, with: service, json: json)
        } catch {
            await endpoint?.close()
            throw error
        }
        await endpoint?.close()
    }
}

/// The uploads in flight, for one line of the live view: how many hosts, bytes sent of the
/// total, and the slowest hosts first.
final class UploadBoard: @unchecked Sendable {
    private let lock = NSLock()
    private var active: [String: UploadProgress] = [:]

    func update(_ p: UploadProgress) {
        lock.lock(); defer { lock.unlock() }
        let key = p.host + "\u{0}" + p.file
        if p.finished { active.removeValue(forKey: key) } else { active[key] = p }
    }

    func line() -> String? {
        lock.lock(); defer { lock.unlock() }
        guard !active.isEmpty else { return nil }
        let sent = active.values.reduce(UInt64(0)) { $0 + $1.sent }, total = active.values.reduce(UInt64(0)) { $0 + $1.total }
        func pct(_ a: UInt64, _ b: UInt64) -> Int { b == 0 ? 100 : Int(Double(a) * 100 / Double(b)) }
        let slowest = active.values.sorted { pct($0.sent, $0.total) < pct($1.sent, $1.total) }.prefix(4)
            .map { "\($0.host) \(pct($0.sent, $0.total))%" }.joined(separator: ", ")
        return "uploading to \(active.count) host\(active.count == 1 ? "" : "s"): \(Quantity.formatBytes(sent)) of \(Quantity.formatBytes(total)) (\(pct(sent, total))%) — \(slowest)"
    }
}
