import Foundation
import Subprocess
import Basics
import RolloutConfig
import RolloutJournal

/// The plan's hooks: commands around each host's reboot (drain it from the load balancer, put it
/// back) and on a halt. Each run is journaled before it starts and with its outcome (`hook_run`),
/// so a resume never runs a finished hook again and runs again one whose outcome is unknown.
extension Orchestrator {
    /// Longest output a local hook may print before it is stopped (what is kept is the end, 4 KiB).
    static let hookOutputLimit = 1 << 20

    enum HookOutcome: Equatable {
        case done
        /// The first hook with `on_error: fail` that failed, and why.
        case failed(String)
        /// The driver must stop: the hooks not yet run run on the next resume.
        case stopped
    }

    /// Runs the hooks of `phase` for `host` (nil: the rollout's, for `on_halt`), in order, each at
    /// most once; stops at the first that fails with `on_error: fail`.
    func runHooks(_ phase: HookSpec.Phase, host name: String?, wave: Int?, extra: [String: String] = [:]) async throws -> HookOutcome {
        let hooks = plan.hooks[phase]
        guard !hooks.isEmpty else { return .done }
        let key = name ?? ""
        let waveNumber = wave ?? 0
        for (i, hook) in hooks.enumerated() {
            if let done = try journal.hookRun(rolloutID, host: key, phase: phase.rawValue, wave: waveNumber, index: i) {
                switch done.status {
                case .ok, .warned: continue
                case .failed: return .failed("hook \(phase.rawValue)[\(i)] failed: \(done.error ?? done.exitStatus.map { "exit \($0)" } ?? "failed")")
                case .running: say(name, "hook \(phase.rawValue)[\(i)]: its outcome is unknown (the driver stopped while it ran) — running it again")
                }
            }
            guard !stopping() else { return .stopped }
            try await journal.hookStarting(rolloutID, host: key, phase: phase.rawValue, wave: waveNumber, index: i, command: hook.run)
            var env = ["ROLLCTL_ROLLOUT": rolloutID, "ROLLCTL_RELEASE": plan.kernel.release, "ROLLCTL_WAVE": "\(waveNumber)",
                       "ROLLCTL_PHASE": phase.rawValue]
            if let name {
                env["ROLLCTL_HOST"] = name
                env["ROLLCTL_ADDRESS"] = await connections.address(name)
            }
            env.merge(extra) { a, _ in a }
            let result = hook.on == .local ? await Self.runLocal(hook, environment: env)
                                           : await runOnHost(hook, name ?? "", environment: env)
            let failed = result.error != nil || result.exitStatus != 0
            let status: HookRunRow.Status = !failed ? .ok : hook.onError == .warn ? .warned : .failed
            try await journal.hookEnded(rolloutID, host: key, phase: phase.rawValue, wave: waveNumber, index: i, status: status,
                                        exitStatus: result.exitStatus, output: result.output, error: result.error)
            let why = result.error ?? "exit \(result.exitStatus ?? -1)"
            let last = result.output.split(separator: "\n").last.map { ": \($0.prefix(200))" } ?? ""
            switch status {
            case .ok: say(name, "hook \(phase.rawValue)[\(i)] ok")
            case .warned: say(name, "hook \(phase.rawValue)[\(i)] failed (\(why)\(last)) — on_error: warn, going on", problem: true)
            case .failed, .running: return .failed("hook \(phase.rawValue)[\(i)] failed: \(why)\(last)")
            }
        }
        return .done
    }

    /// The plan's on_halt hooks (local), with the halt's reason and wave in `ROLLCTL_REASON` and
    /// `ROLLCTL_WAVE`; a failure is reported. Run once per rollout (journaled).
    public func haltHooks(reason: String) async {
        guard !plan.hooks.onHalt.isEmpty else { return }
        let wave = (try? journal.waves(rolloutID))?.first { $0.state == .failed }?.number
        do {
            if case .failed(let why) = try await runHooks(.onHalt, host: nil, wave: wave, extra: ["ROLLCTL_REASON": reason]) { say(nil, why, problem: true) }
        } catch {
            say(nil, "on_halt hooks: \(error)", problem: true)
        }
    }

    /// committed → the plan's after_commit hooks: a failure is reported, the host stays committed.
    /// Also run at the wave's end for every committed host (a resume finishes what a stop cut short).
    func afterCommitHooks(_ name: String, wave: Int?) async throws {
        guard !plan.hooks.afterCommit.isEmpty else { return }
        if case .failed(let why) = try await runHooks(.afterCommit, host: name, wave: wave) {
            say(name, "\(why) — the host stays committed", problem: true)
        }
    }

    struct HookResult: Sendable {
        var exitStatus: Int?
        var output: String
        /// Why it did not run to an exit status (timeout, no connection, too much output).
        var error: String?
    }

    /// Over the host's SSH session: the variables exported (values shell-quoted), then the command
    /// as the plan gives it, in `sh`.
    func runOnHost(_ hook: Hook, _ name: String, environment: [String: String]) async -> HookResult {
        let exports = environment.sorted { $0.key < $1.key }.map { "export \($0.key)=\(shellQuote($0.value))" }.joined(separator: "; ")
        let command = exports + "; sh -c " + shellQuote(hook.run)
        do {
            let r = try await connections.host(name).run(command, timeout: hook.timeout)
            return HookResult(exitStatus: r.exitSignal == nil ? Int(r.exitStatus) : 128, output: r.stdout + r.stderr,
                              error: r.exitSignal.map { "killed by SIG\($0)" })
        } catch {
            await connections.drop(name)
            return HookResult(exitStatus: nil, output: "", error: describe(error))
        }
    }

    /// On rollctl's machine: `/bin/sh -c COMMAND` with the variables in its environment (never in
    /// the command's text), stdout and stderr together, killed at the timeout.
    static func runLocal(_ hook: Hook, environment: [String: String]) async -> HookResult {
        let env = Environment.inherit.updating(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), $0.value as String?) }))
        return await withTaskGroup(of: HookResult?.self) { group in
            group.addTask {
                do {
                    let r = try await Subprocess.run(.path("/bin/sh"), arguments: ["-c", hook.run], environment: env, input: .none,
                                                     output: .string(limit: hookOutputLimit), error: .combinedWithOutput)
                    let code: Int
                    switch r.terminationStatus {
                    case .exited(let c): code = Int(c)
                    case .signaled(let s): code = 128 + Int(s)
                    }
                    return HookResult(exitStatus: code, output: r.standardOutput, error: nil)
                } catch is CancellationError {
                    return nil
                } catch {
                    return HookResult(exitStatus: nil, output: "", error: "\(error)")
                }
            }
            group.addTask {
                try? await Task.sleep(for: hook.timeout)
                return nil
            }
            // The first to finish wins; cancelling the run makes swift-subprocess kill the shell.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? HookResult(exitStatus: nil, output: "", error: "timed out after \(PlanFormat.duration(hook.timeout))")
        }
    }
}
