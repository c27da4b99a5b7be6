import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import Configuration
import RolloutJournal
import Engine

/// `--journal PATH` (or `ROLLCTL_JOURNAL`), shared by every command that reads or writes the journal.
struct JournalOption: ParsableArguments {
    @Option(help: ArgumentHelp("The journal (SQLite). Default: $ROLLCTL_JOURNAL, else $XDG_STATE_HOME/rollctl/journal.sqlite, else ~/.local/state/rollctl/journal.sqlite.", valueName: "path"))
    var journal: String?

    func open() throws -> Journal {
        let path = journal ?? Journal.defaultPath()
        do { return try Journal(path: path) } catch {
            throw InputError(file: path, "cannot open the journal: \(error)")
        }
    }

    /// The journal and the rollout `id` in it; an unknown id is bad input (exit 2).
    func rollout(_ id: String) throws -> (Journal, Journal.RolloutRow) {
        let j = try open()
        guard let r = try j.rollout(id) else { throw InputError(file: j.path, "no rollout '\(id)' in the journal", hint: "rollctl rollout list") }
        return (j, r)
    }
}

struct RolloutGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Inspect, resume, abort or roll back rollouts recorded in the journal.",
        subcommands: [RolloutList.self, RolloutShow.self, RolloutResume.self, RolloutAbort.self, RolloutRollback.self, RolloutNotices.self]
    )
}

/// Runs a rollout in the foreground: signals stop it cleanly, progress goes to the console.
enum RolloutDriver {
    static func logger(json: Bool) -> @Sendable (RolloutLogLine) -> Void {
        let console = Console.shared
        return { line in
            if json {
                console.out(JSONLine.encode(["type": "event", "time": timestamp(), "host": line.host, "message": line.message, "problem": line.isProblem]))
            } else {
                let who = line.host.map { $0 + " " } ?? ""
                let text = "\(console.paint(timestamp(), .dim)) \(who)\(line.message)"
                console.out(line.isProblem ? console.paint(text, .red) : text)
            }
        }
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: Date())
    }

    /// The rollout service over `journal`, its progress on the console, stopped by `stop`.
    static func service(_ journal: Journal, json: Bool, stop: StopFlag? = nil) -> RolloutService {
        RolloutService(journal: journal, sshConfig: SSHConfig.load(), stopRequested: { stop?.isSet ?? false }, log: logger(json: json))
    }

    /// Drives the rollout; maps the outcome to the documented exit code.
    static func drive(_ orchestrator: Orchestrator, with service: RolloutService, json: Bool) async throws {
        let console = Console.shared
        // Live status line on a terminal (stderr): wave, hosts per state, elapsed.
        let ticker = Task {
            guard console.stderrIsTTY, !json else { return }
            let start = ContinuousClock.now
            while !Task.isCancelled {
                if let hosts = try? orchestrator.journal.hosts(orchestrator.rolloutID),
                   let waves = try? orchestrator.journal.waves(orchestrator.rolloutID) {
                    let current = waves.first { $0.state == .running }?.number ?? waves.filter { $0.state == .passed }.count
                    var counts: [HostState: Int] = [:]
                    for h in hosts where h.wave != nil { counts[h.state, default: 0] += 1 }
                    let parts = HostState.allCases.compactMap { st in counts[st].map { "\(st.rawValue) \($0)" } }
                    let secs = (ContinuousClock.now - start).components.seconds
                    console.progress("wave \(current)/\(waves.count) · \(parts.joined(separator: " · ")) · \(secs / 60)m\(String(format: "%02d", secs % 60))s")
                }
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
    static func run(planPath: String, inventoryPath: String?, journal: JournalOption, parallel: Int, json: Bool) async throws {
        let console = Console.shared
        let sshConfig = SSHConfig.load()
        let loaded = try PlanLoader.loadChecked(path: planPath, inventoryPath: inventoryPath, sshConfig: sshConfig)
        if loaded.inventory.defaults.hostKeyPolicy == .off {
            console.warn("host_key_policy is 'off' in \(loaded.inventory.path): host keys are NOT verified")
        }
        let stop = StopFlag()
        let service = RolloutService(journal: try journal.open(), sshConfig: sshConfig, stopRequested: { stop.isSet },
                                     log: RolloutDriver.logger(json: json))
        let created: RolloutService.Created
        do {
            created = try await service.create(loaded, parallel: parallel)
        } catch let e as Journal.LockConflict {
            console.error("refused: \(e)")
            console.err("  hint: wait for it, or `rollctl rollout resume \(e.holder.id)` / `rollctl rollout abort \(e.holder.id)`")
            throw ExitCode(ExitStatus.hostFailure)
        }
        let (plan, layout, id, path) = (loaded.plan, created.layout, created.id, service.journal.path)
        let hostsInWaves = layout.waves.reduce(0) { $0 + $1.hosts.count }
        if !json {
            console.out("rollout \(id): plan '\(plan.name)' → \(plan.kernel.release); \(layout.waves.count) waves, \(hostsInWaves) hosts, \(layout.skipped.count) skipped; journal \(path)")
            for s in layout.skipped { console.out("  skipped \(s.host.name): \(s.reason)") }
        } else {
            console.out(JSONLine.encode(["type": "rollout", "rollout": id, "plan": plan.name, "release": plan.kernel.release,
                                         "waves": layout.waves.count, "hosts": hostsInWaves, "skipped": layout.skipped.count, "journal": path]))
        }
        stop.install()
        try await RolloutDriver.drive(created.orchestrator, with: service, json: json)
    }
}

struct RolloutList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List rollouts, newest first.")
    @OptionGroup var journal: JournalOption
    @Flag(help: "JSON lines.") var json = false

    func run() async throws {
        let j = try journal.open()
        let c = Console.shared
        var table = Table(header: ["ID", "STATE", "PLAN", "KERNEL", "HOSTS", "STARTED", "BY"])
        for r in try j.rollouts() {
            let hosts = try j.hosts(r.id)
            let done = hosts.filter { $0.state == .committed }.count
            let inWaves = hosts.filter { $0.wave != nil }.count
            if json {
                c.out(JSONLine.encode(["id": r.id, "state": r.state.rawValue, "plan": r.planName, "release": r.targetRelease,
                                       "hosts": inWaves, "committed": done, "started_at": r.startedAt, "started_by": r.startedBy]))
            } else {
                table.rows.append([r.id, r.state.rawValue, r.planName, r.targetRelease, "\(done)/\(inWaves) committed", r.startedAt, r.startedBy])
            }
        }
        if !json { table.render().forEach(c.out) }
    }
}

struct RolloutShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Waves, hosts, states, gate verdicts and events of a rollout.")
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Flag(help: "One JSON document.") var json = false
    @Flag(help: "Also list every event.") var events = false

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let hosts = try j.hosts(id), waves = try j.waves(id), gates = try j.gateReports(id)
        let c = Console.shared
        if json {
            let doc: [String: Any?] = [
                "id": r.id, "state": r.state.rawValue, "plan": r.planName, "plan_path": r.planPath, "plan_hash": r.planHash,
                "release": r.targetRelease, "started_at": r.startedAt, "started_by": r.startedBy, "updated_at": r.updatedAt, "note": r.note,
                "waves": waves.map { ["number": $0.number, "state": $0.state.rawValue, "verdict": $0.verdict as Any] },
                "windows": try Self.windows(j, id).map { ["wave": $0.0, "start": TimeText.iso($0.1.start), "end": TimeText.iso($0.1.end)] },
                "driver": r.lease.map { ["host": $0.holder.host, "pid": Int($0.holder.pid), "since": $0.since, "heartbeat": $0.heartbeat, "live": $0.isLive()] as [String: Any] },
                "locked": try j.lockedHosts(id),
                "hosts": hosts.map { h -> [String: Any] in
                    var o: [String: Any] = ["name": h.name, "address": h.address, "state": h.state.rawValue, "reboots": h.reboots]
                    o["wave"] = h.wave; o["batch"] = h.batch; o["reason"] = h.reason
                    o["release_before"] = h.releaseBefore; o["release_after"] = h.releaseAfter
                    o["boot_id_before"] = h.bootIDBefore; o["boot_id_after"] = h.bootIDAfter
                    return o.compactMapValues { $0 }
                },
                "gate": gates.map { g -> [String: Any] in
                    ["wave": g.wave, "host": g.host, "verdict": g.verdict,
                     "report": (try? JSONSerialization.jsonObject(with: Data(g.report.utf8))) ?? g.report]
                },
                "events": events ? try j.events(id).map { ["at": $0.at, "host": $0.host as Any, "kind": $0.kind, "message": $0.message] } : nil,
            ]
            c.out(JSONLine.encode(doc))
            return
        }
        c.out(c.paint("rollout \(r.id)", .bold) + "  \(r.state.rawValue)  plan '\(r.planName)' → \(r.targetRelease)")
        c.out("started \(r.startedAt) by \(r.startedBy); updated \(r.updatedAt)")
        if let note = r.note { c.out("note: \(note)") }
        c.out("")
        for w in waves {
            let n = hosts.filter { $0.wave == w.number }.count
            c.out("wave \(w.number): \(w.state.rawValue)\(w.verdict.map { ", gate \($0)" } ?? ""), \(n) host\(n == 1 ? "" : "s")")
        }
        c.out("")
        if let lease = r.lease {
            c.out("driven by \(lease.holder) since \(lease.since), last heartbeat \(lease.heartbeat)\(lease.isLive() ? "" : " (that process is gone: `rollctl rollout resume \(r.id)` takes over)")")
        }
        for (wave, w) in try Self.windows(j, id) {
            c.out("wave \(wave): customers told reboots happen between \(w.humanStart) and \(w.humanEnd)")
        }
        c.out("")
        Self.renderHosts(hosts)
        Self.renderAdvice(r, hosts, locked: try j.lockedHosts(id))
        let failedGates = gates.filter { $0.verdict != "pass" }
        for g in failedGates {
            if let data = g.report.data(using: .utf8), let report = try? JSONDecoder().decode(HostGateReport.self, from: data) {
                c.out("")
                c.out(c.paint("gate \(g.verdict) — wave \(g.wave), \(g.host):", .bold))
                report.render().split(separator: "\n").forEach { c.out("  " + $0) }
            }
        }
        if events {
            c.out("")
            for e in try j.events(id) { c.out("\(e.at)  \(e.host ?? "-")  \(e.kind)  \(e.message)") }
        }
    }

    /// Per wave, the widest window its customers were told (maintenance, or rescheduled when corrected).
    static func windows(_ j: Journal, _ id: String) throws -> [(Int, MaintenanceWindow)] {
        var out: [Int: MaintenanceWindow] = [:]
        for n in try j.notices(id) where n.status == .sent && (n.kind == NoticeKind.maintenance.rawValue || n.kind == NoticeKind.rescheduled.rawValue) {
            guard let w = n.window else { continue }
            if let o = out[n.wave] { out[n.wave] = MaintenanceWindow(start: min(o.start, w.start), end: max(o.end, w.end)) } else { out[n.wave] = w }
        }
        return out.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// What to do, for each host that still needs a person or a command.
    static func renderAdvice(_ r: Journal.RolloutRow, _ hosts: [Journal.HostRow], locked: [String]) {
        let c = Console.shared
        var lines: [String] = []
        let live = r.lease?.isLive() ?? false
        for h in hosts {
            let todo: String?
            switch h.state {
            case .rollbackFailed:
                let down = ["connect_refused", "connect_timeout", "host_unreachable", "did not come back", "connection_lost"].contains { (h.reason ?? "").contains($0) }
                todo = down ? "power-cycle it (boot-once brings it up on its old kernel), then `rollctl rollout rollback \(r.id) --failed`"
                            : "fix the cause above, then `rollctl rollout rollback \(r.id) --hosts \(h.name)`"
            case .failed where h.releaseBefore != nil:
                todo = "`rollctl rollout rollback \(r.id) --hosts \(h.name)` puts it back on \(h.releaseBefore!)"
            case .staged, .rebooting, .up, .verified, .soaking, .healthy, .rollingBack:
                todo = live ? nil : r.state == .halted || r.state == .aborted
                    ? "`rollctl rollout rollback \(r.id) --hosts \(h.name)`"
                    : "`rollctl rollout resume \(r.id)` continues it (or `rollctl rollout abort \(r.id)`, then rollback)"
            default: todo = nil
            }
            if let todo { lines.append("  \(h.name)\(locked.contains(h.name) ? " (locked)" : ""): \(todo)") }
        }
        guard !lines.isEmpty else { return }
        c.out("")
        c.out(c.paint("What to do", .bold))
        lines.forEach(c.out)
    }

    static func renderHosts(_ hosts: [Journal.HostRow]) {
        let c = Console.shared
        var table = Table(header: ["HOST", "WAVE", "STATE", "KERNEL BEFORE", "KERNEL AFTER", "REBOOTS", "REASON"])
        for h in hosts {
            let state = [.failed, .rollbackFailed].contains(h.state) ? c.paint(h.state.rawValue, .red) : h.state.rawValue
            table.rows.append([h.name, h.wave.map(String.init) ?? "-", state, h.releaseBefore ?? "-", h.releaseAfter ?? "-", "\(h.reboots)", h.reason ?? ""])
        }
        table.render().forEach(c.out)
    }
}

struct RolloutResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue an interrupted rollout exactly where the journal says it stopped.",
        discussion: "A host journaled as rebooting is judged by its boot id: it is not rebooted again if it already did. The plan text stored in the journal is used, not the file as it is now."
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "JSON lines.") var json = false

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let stop = StopFlag()
        let service = RolloutDriver.service(j, json: json, stop: stop)
        let resumption: RolloutService.Resumption
        do { resumption = try await service.resume(r) } catch let e as LeaseHeld {
            throw RolloutDriver.refusal(e)
        } catch let e as RolloutService.Refusal {
            Console.shared.error(e.description)
            throw ExitCode(ExitStatus.halted)
        }
        switch resumption {
        case .over(let state):
            // Nothing to drive; notices an earlier run owed were still delivered.
            Console.shared.out("rollout \(id) is \(state.rawValue); nothing to resume")
        case let .ready(o, previous):
            stop.install()
            if !json { Console.shared.out("resuming rollout \(id) (was \(previous.state.rawValue)\(previous.lease.map { ", driven by \($0.holder) which is gone" } ?? ""))") }
            try await RolloutDriver.drive(o, with: service, json: json)
        }
    }
}

struct RolloutAbort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Stop a rollout for good: no new host is touched; hosts stay as they are; locks are released.",
        discussion: """
        A running driver is asked to stop after its steps in flight: on this machine by SIGTERM to that very \
        process (its pid and start time are in the journal, so an unrelated process that reused the pid is never \
        signalled), on any machine through the journal, which the driver reads at every heartbeat. Use \
        `rollctl rollout rollback ID` to put changed hosts back on their previous kernel (it takes the locks again). \
        A completed rollout cannot be aborted.
        """
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id.") var id: String
    @Option(help: ArgumentHelp("How long to wait for a running driver to stop.", valueName: "duration")) var wait: String = "90s"

    func run() async throws {
        let (j, _) = try journal.rollout(id)
        let c = Console.shared
        guard let limit = YAMLReader.parseDuration(wait) else { throw InputError(file: "--wait", "'\(wait)' is not a duration like 90s") }
        let who = ProcessInfo.processInfo.environment["USER"] ?? "admin"
        let result: RolloutService.Abort
        do {
            result = try await RolloutDriver.service(j, json: false).abort(id, wait: limit, by: "\(who)@\(ProcessInfo.processInfo.hostName)") { signalled in
                switch signalled {
                case .sigterm(let holder): c.out("asked \(holder) to stop after its in-flight steps (SIGTERM)")
                case .journal(let holder): c.out("asked \(holder) to stop through the journal (it reads it at its next heartbeat)")
                case .none: break
                }
            }
        } catch let e as RolloutService.Refusal {
            c.error(e.description)
            throw ExitCode(ExitStatus.hostFailure)
        } catch let e as LeaseHeld {
            throw RolloutDriver.refusal(e)
        }
        if result.alreadyAborted { c.out("rollout \(id) is already aborted"); return }
        c.out("rollout \(id) aborted; locks released")
        if !result.keptHostLeases.isEmpty {
            c.warn("host leases not removed (they expire by themselves, or `rollctl fleet unlock HOST --force`): \(result.keptHostLeases.joined(separator: ", "))")
        }
        if !result.changed.isEmpty {
            c.out("\(result.changed.count) host(s) were mid-rollout (\(result.changed.joined(separator: ", "))); `rollctl rollout rollback \(id)` restores their previous kernel")
        }
    }
}

struct RolloutRollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Put hosts this rollout changed back on the kernel they ran before, and restore their boot default.",
        discussion: """
        Without options: every host the rollout changed, except committed hosts of waves that passed (those run \
        the new kernel as intended; --all includes them). --failed retries only hosts whose rollback failed \
        (e.g. after you power-cycled a host that hung: it comes up on its old kernel, as boot-once intends, and is \
        then simply marked rolled back). --hosts names hosts. The hosts are listed first; on a terminal rollctl \
        asks before it reboots anything, unless --yes. Exit 1 when a host's rollback fails.
        """
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "Also revert committed hosts of passed waves.") var all = false
    @Flag(help: "Only hosts whose rollback failed.") var failed = false
    @Option(help: ArgumentHelp("Only these hosts (comma-separated).", valueName: "names")) var hosts: String?
    @Flag(name: .shortAndLong, help: "Do not ask.") var yes = false
    @Flag(help: "JSON lines.") var json = false

    func validate() throws {
        if [all, failed, hosts != nil].filter({ $0 }).count > 1 { throw ValidationError("--all, --failed and --hosts exclude each other") }
    }

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let c = Console.shared
        let stop = StopFlag()
        let service = RolloutDriver.service(j, json: json, stop: stop)
        let selection: Orchestrator.RollbackSelection =
            failed ? .failed : all ? .all : hosts.map { .hosts($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) } ?? .changed
        let (o, targets): (Orchestrator, [Journal.HostRow])
        do { (o, targets) = try service.rollbackTargets(r, selection) } catch let e as LeaseHeld { throw RolloutDriver.refusal(e) }
        defer { o.releaseLease() }
        if targets.isEmpty {
            c.out("nothing to roll back in rollout \(id)" + (selection == .changed ? " (committed hosts of passed waves stay; --all reverts them too)" : ""))
            _ = try await service.rollback(o, [])
            return
        }
        c.out("will roll back \(targets.count) host\(targets.count == 1 ? "" : "s") to their previous kernel (rebooting those that run another):")
        for h in targets { c.out("  \(h.name)  \(h.state.rawValue)  \(h.releaseAfter ?? h.releaseBefore ?? "?") → \(h.releaseBefore ?? "?")\(h.reason.map { "  (\($0))" } ?? "")") }
        if !yes && !json && isatty(0) == 1 {
            c.out("Proceed? [y/N] ")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                c.out("nothing done")
                throw ExitCode(ExitStatus.hostFailure)
            }
        }
        stop.install()
        let left = try await service.rollback(o, targets.map(\.name))
        let after = try j.hosts(id)
        RolloutShow.renderHosts(after)
        RolloutShow.renderAdvice(try j.rollout(id) ?? r, after, locked: try j.lockedHosts(id))
        if !left.isEmpty { throw ExitCode(ExitStatus.hostFailure) }
    }
}
