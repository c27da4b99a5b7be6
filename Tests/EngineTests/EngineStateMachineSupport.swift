import Foundation
import HealthGate
import Testing
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine
import RolloutTesting
import SSH

/// The happy path of one host, as `HostState` documents it (no notices: no `notified`).
let happyPath: [HostState] = [.pending, .checked, .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed]

extension SimFleet {
    /// The plan as `plan apply` would read it: YAML through `PlanLoader` (its minimums hold:
    /// reboot.timeout ≥ 5 s, gate.interval ≥ 100 ms, soak ≥ interval, enough samples for the slope).
    /// The inventory is the fleet's (in memory, at `dir/inventory.yaml`).
    func usePlan(_ yaml: String) throws {
        plan = try PlanLoader.parse(text: yaml, path: dir + "/plan.yaml")
    }

    /// A plan's YAML for this fleet: the kernel, the inventory and `rest` (waves, reboot, gate, on_failure).
    static func yaml(name: String, _ rest: String) -> String {
        "name: \(name)\nkernel:\n  release: \(new)\ninventory: inventory.yaml\n" + rest
    }

    /// Every host's states in order, as its journal events record them: from the state the host
    /// was created in (`pending`, or `skipped`), then the target of every `state` event. An event
    /// of the form "a → b" must start from the state the previous event reached; an event
    /// whose state cannot be read is recorded as an issue.
    func statePaths(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: [HostState]] {
        var paths: [String: [HostState]] = [:]
        for h in try journal.hosts(id) { paths[h.name] = [h.wave == nil ? .skipped : .pending] }
        for e in try journal.events(id) where e.kind == .state {
            guard let host = e.host, var path = paths[host] else {
                Issue.record("state event for no host of the rollout: \(e.message)", sourceLocation: sourceLocation)
                continue
            }
            let words = e.message.split(separator: " ", omittingEmptySubsequences: true)
            func state(_ w: Substring) -> HostState? { HostState(rawValue: String(w.prefix { $0 != ":" })) }
            let target: HostState?
            if words.count >= 3, words[1] == "→" {
                let from = state(words[0])
                #expect(from == path.last, "\(host): event '\(e.message)' starts from \(from?.rawValue ?? "?") but the host was \(path.last!.rawValue)",
                        sourceLocation: sourceLocation)
                target = state(words[2])
            } else {
                target = words.first.flatMap(state)
            }
            guard let target else {
                Issue.record("\(host): state event without a state: '\(e.message)'", sourceLocation: sourceLocation)
                continue
            }
            path.append(target)
            paths[host] = path
        }
        return paths
    }

    /// `statePaths`, checked: every step is a move `HostState.canMove` allows, and every path ends
    /// in the state the host's row holds.
    @discardableResult
    func legalPaths(_ id: String, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: [HostState]] {
        let paths = try statePaths(id, sourceLocation: sourceLocation)
        for h in try journal.hosts(id) {
            let path = paths[h.name] ?? []
            for (a, b) in zip(path, path.dropFirst()) {
                #expect(a.canMove(to: b), "\(context) \(h.name): illegal move \(a.rawValue) → \(b.rawValue) in \(render(path))",
                        sourceLocation: sourceLocation)
            }
            #expect(path.last == h.state, "\(context) \(h.name): events end at \(path.last?.rawValue ?? "-"), the row says \(h.state.rawValue)",
                    sourceLocation: sourceLocation)
        }
        return paths
    }

    func render(_ path: [HostState]) -> String { path.map(\.rawValue).joined(separator: " → ") }

    /// The gate report the journal keeps for a host of a wave.
    func gateReport(_ id: String, wave: Int, host: String) throws -> HostGateReport? {
        guard let row = try journal.gateReports(id).first(where: { $0.wave == wave && $0.host == host }) else { return nil }
        return try JSONDecoder().decode(HostGateReport.self, from: Data(row.report.utf8))
    }

    /// Host names of a wave, in the journal's order (batch, name).
    func names(_ id: String, wave: Int) throws -> [String] { try journal.hosts(id, wave: wave).map(\.name) }
}

/// Where the kill switch stops a driver: before the command reaches the host (the driver died
/// while sending it), or after the host ran it (the driver died before it read the answer).
enum KillPoint: String, Sendable { case before, after }

/// The driver "dies" at its `limit`-th host command: that command (and every later one)
/// never returns, so the orchestrator behind it is as good as killed, while the hosts live
/// on. Records which command it died at.
final class KillSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var commands = 0
    let limit: Int
    let point: KillPoint
    private(set) var diedAt: (host: String, command: String)?
    private var reached: [String: [String]] = [:]
    init(at limit: Int, _ point: KillPoint) { self.limit = limit; self.point = point }

    enum Fate { case answered, runThenDie, die }

    /// What happens to this command: answered until the `limit`-th; that one dies (having run on
    /// the host first, at the `after` point), and so does every later one.
    func fate(_ host: String, _ command: String) -> Fate {
        lock.lock(); defer { lock.unlock() }
        commands += 1
        if commands < limit { reached[host, default: []].append(command); return .answered }
        if commands > limit { return .die }
        diedAt = (host, command)
        if point == .after { reached[host, default: []].append(command); return .runThenDie }
        return .die
    }

    var count: Int { lock.lock(); defer { lock.unlock() }; return commands }
    /// The commands of the (dead) driver that reached `host`, in order.
    func reached(_ host: String) -> [String] { lock.lock(); defer { lock.unlock() }; return reached[host] ?? [] }
    var died: (host: String, command: String)? { lock.lock(); defer { lock.unlock() }; return diedAt }
}

/// A `SimHost` seen through a kill switch.
struct KillableHost: RemoteHost {
    let host: SimHost
    let kill: KillSwitch
    var hostName: String { host.hostName }
    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        switch kill.fate(hostName, command) {
        case .answered: return try await host.run(command, timeout: timeout)
        // The host ran it (a reboot happens), but its answer never reaches the dead driver.
        case .runThenDie: _ = try? await host.run(command, timeout: timeout)
        case .die: break
        }
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        throw CancellationError()
    }
    func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult {
        let fate = kill.fate(hostName, "upload \(remotePath)")
        switch fate {
        case .answered: return try await host.upload(file: localPath, to: remotePath, pacer: pacer, progress: progress)
        case .runThenDie: _ = try? await host.upload(file: localPath, to: remotePath, pacer: pacer, progress: progress)
        case .die: break
        }
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        throw CancellationError()
    }
    func close() async {}
}

/// Counts the connections an orchestrator makes and the commands it sends through them.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return n }
}

struct CountedHost: RemoteHost {
    let host: SimHost
    let tally: Tally
    var hostName: String { host.hostName }
    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        tally.add()
        return try await host.run(command, timeout: timeout)
    }
    func close() async {}
}
