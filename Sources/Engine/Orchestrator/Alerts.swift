import Foundation
import Basics
import RolloutConfig
import RolloutJournal
import WebAPI

/// The fleet's Alertmanager: firing alerts hold a batch (`gate.block_on_alerts`), and each
/// rebooted host is silenced from its reboot to its gate's verdict (`silence`).
extension Orchestrator {
    // MARK: - holding a batch

    /// Before a batch that reboots: while alerts matching the plan's matchers fire (for the
    /// batch's hosts, or fleet-wide), or Alertmanager cannot be asked, the batch waits — the
    /// rollout `waiting` with the alerts in its note — and after `max_wait` the rollout halts.
    func holdForAlerts(wave: Int, batch: Int, of total: Int, hosts: [(name: String, address: String)]) async throws -> RolloutOutcome? {
        guard let block = plan.alertBlock, !hosts.isEmpty else { return nil }
        let started = clock.now
        var lastReason: String?
        while true {
            let reason = await firingAlerts(block, hosts: hosts)
            guard let reason else {
                if lastReason != nil {
                    say(nil, "wave \(wave), batch \(batch + 1)/\(total): no matching alert fires any more — going on")
                    try await journal.event(rolloutID, kind: .info, "wave \(wave), batch \(batch + 1): alerts cleared after \(PlanFormat.duration(.seconds(clock.now.timeIntervalSince(started).rounded())))")
                    try journal.setRolloutState(rolloutID, .running, clearingNote: true)
                }
                return nil
            }
            let waited = clock.now.timeIntervalSince(started)
            if waited >= block.maxWait.seconds {
                return try halt(reason: "wave \(wave), batch \(batch + 1): held by Alertmanager for \(PlanFormat.duration(block.maxWait)) (gate.block_on_alerts.max_wait): \(reason)", wave: wave)
            }
            if reason != lastReason {
                let until = started.addingTimeInterval(block.maxWait.seconds)
                say(nil, "wave \(wave), batch \(batch + 1)/\(total): held — \(reason); halting at \(TimeText.iso(until)) if it still holds", problem: true)
                try await journal.event(rolloutID, kind: .info, "wave \(wave), batch \(batch + 1): held by Alertmanager: \(reason)")
                try journal.setRolloutState(rolloutID, .waiting, note: "wave \(wave), batch \(batch + 1)/\(total) held by alerts: \(reason) (until \(TimeText.iso(until)) at most)")
                lastReason = reason
            }
            let next = min(clock.now.addingTimeInterval(block.interval.seconds), started.addingTimeInterval(block.maxWait.seconds))
            if await sleepUnlessStopped(until: next) { return try interrupt() }
        }
    }

    /// Why the batch must wait (the alerts that fire, or why Alertmanager could not say), or nil.
    func firingAlerts(_ block: AlertBlock, hosts: [(name: String, address: String)]) async -> String? {
        let api = AlertmanagerAPI(url: block.url, timeout: .seconds(10), caFile: block.caFile)
        // This rollout's own silences spare the on-call, not rollctl: what they mute still holds.
        let own = Set((try? journal.silences(rolloutID).filter(\.open).compactMap(\.silenceID)) ?? [])
        var found: [String] = []
        do {
            if block.perHost {
                for h in hosts {
                    let alerts = try await api.firing(block.matchers.map { $0.forHost(name: h.name, address: h.address) }, ownSilences: own)
                    found += alerts.map { "\($0.summary) (\(h.name))" }
                    if found.count >= 5 { break }
                }
            } else {
                found = try await api.firing(block.matchers, ownSilences: own).map(\.summary)
            }
        } catch {
            return "Alertmanager cannot be asked (\(error)); an unanswered question holds the batch"
        }
        guard !found.isEmpty else { return nil }
        return "\(found.count >= 5 ? "5 or more" : "\(found.count)") alert\(found.count == 1 ? "" : "s") firing: " + found.prefix(5).joined(separator: ", ")
    }

    // MARK: - silences

    /// Before a host's reboot: a silence for it, unless one this rollout made is open (resume).
    /// Failing to make one is reported and the reboot goes on: a missing silence makes noise,
    /// it hides nothing.
    func silence(_ name: String) async throws {
        guard let spec = plan.silence else { return }
        let address = await connections.address(name)
        let api = AlertmanagerAPI(url: spec.url, timeout: .seconds(10), caFile: spec.caFile)
        let marker = Journal.silenceMarker(rolloutID, host: name)
        if let row = try journal.silences(rolloutID, host: name).first, row.open {
            if row.silenceID != nil { return }
            // Asked before a crash, answer unknown: adopt the one Alertmanager has, if any.
            if let found = try? await api.silences(commentContaining: marker).first(where: { $0.status.state != "expired" }) {
                try await journal.silenceMade(rolloutID, host: name, id: found.id)
                return
            }
        }
        let now = clock.now
        let g = plan.gate
        let span = plan.reboot.timeout + plan.reboot.settle + g.soak + .seconds(900)
        let end = now.addingTimeInterval(span.seconds)
        try await journal.silenceAsked(rolloutID, host: name, endsAt: end)
        do {
            let id = try await api.createSilence(spec.matchers.map { $0.forHost(name: name, address: address) },
                                                 from: now, until: end, createdBy: "rollctl (\(Journal.whoami))",
                                                 comment: "\(spec.comment) — \(plan.name), kernel \(plan.kernel.release) [\(marker)]")
            try await journal.silenceMade(rolloutID, host: name, id: id)
        } catch let e as AlertmanagerError {
            say(name, "no silence made: \(e); rebooting anyway", problem: true)
            try await journal.silenceExpired(rolloutID, host: name, note: "silence not made: \(e)")
        }
    }

    /// Ends the open silences of `hosts` (all of the rollout's when nil). One that cannot be
    /// expired now stays open in the journal: the next call (or a resume) tries again, and its
    /// end time bounds it anyway.
    func expireSilences(_ hosts: [String]? = nil) async throws {
        guard let spec = plan.silence else { return }
        let wanted = hosts.map(Set.init)
        let open = try journal.silences(rolloutID).filter { $0.open && (wanted?.contains($0.host) ?? true) }
        guard !open.isEmpty else { return }
        let api = AlertmanagerAPI(url: spec.url, timeout: .seconds(10), caFile: spec.caFile)
        for row in open {
            var ids = row.silenceID.map { [$0] } ?? []
            if ids.isEmpty {
                // Asked, answer never journaled: whatever Alertmanager made under our marker.
                guard let found = try? await api.silences(commentContaining: row.marker) else { continue }
                ids = found.filter { $0.status.state != "expired" }.map(\.id)
            }
            do {
                for id in ids { try await api.expireSilence(id) }
                try await journal.silenceExpired(rolloutID, host: row.host, note: ids.isEmpty ? "no silence was made" : "silence \(ids.joined(separator: ", ")) expired")
            } catch {
                say(row.host, "silence not expired yet: \(error); it ends by itself at \(row.endsAt)", problem: true)
            }
        }
    }

    /// On (re)start: silences of hosts that are past their gate (or failed) are expired — a
    /// driver that died between a verdict and the expiry leaves none behind.
    func expireSettledSilences() async throws {
        guard plan.silence != nil else { return }
        let open = Set(try journal.silences(rolloutID).filter(\.open).map(\.host))
        guard !open.isEmpty else { return }
        let settled = try journal.hosts(rolloutID).filter { open.contains($0.name) && ![.staged, .rebooting, .up, .verified, .soaking].contains($0.state) }
        try await expireSilences(settled.map(\.name))
    }
}
