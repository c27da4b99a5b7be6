import Foundation
import Basics
import RolloutConfig
import RolloutJournal

/// The live view of a rollout on a terminal (`plan apply`, `rollout resume`, `rollout watch`),
/// read from the journal: where it is, every host of the current wave with its state and for
/// how long, what it waits for and until when, failures with their reasons, elapsed and an
/// estimate. It fits the terminal: a wave too big for it collapses to counts per state with
/// the hosts that need attention listed.
struct LiveView {
    let journal: Journal
    let rolloutID: String
    let console: Console
    /// The plan's soak (parsed once from the journal's plan text), for "soaking 12s of 20s".
    let soak: Double?
    /// The plan's SUnreclaim growth limit (bytes per hour): a slope over it so far is shown in yellow.
    let growthLimit: Double?

    init(journal: Journal, rolloutID: String, console: Console = .shared) {
        self.journal = journal
        self.rolloutID = rolloutID
        self.console = console
        let plan = (try? journal.rollout(rolloutID)).flatMap { $0 }.flatMap { try? PlanLoader.parse(text: $0.planText, path: $0.planPath, checkFiles: false) }
        soak = plan?.gate.soak.seconds
        growthLimit = plan?.gate.sUnreclaimGrowthMaxPerHour.map(Double.init)
    }

    static let attention: Set<HostState> = [.failed, .rollingBack, .rollbackFailed]
    static let moving: Set<HostState> = [.rebooting, .up, .verified, .soaking, .staged, .notified, .checked]

    /// The view's lines for a terminal of `columns` × `rows` (at most `rows - 1` lines, each at
    /// most `columns - 1` characters wide), coloured when the console colours.
    func frame(columns: Int, rows: Int, now: Date = Date()) -> [String] {
        guard let r = try? journal.rollout(rolloutID), let hosts = try? journal.hosts(rolloutID), let waves = try? journal.waves(rolloutID) else {
            return ["rollout \(rolloutID): the journal cannot be read"]
        }
        let width = max(20, columns - 1)
        func fit(_ s: String) -> String { s.count <= width ? s : String(s.prefix(width - 1)) + "…" }
        func paint(_ s: String, _ c: Console.Color) -> String { console.paint(s, c, tty: console.stderrIsTTY) }
        let started = TimeText.parse(r.startedAt) ?? now
        let elapsed = now.timeIntervalSince(started)
        let total = hosts.filter { $0.wave != nil }.count
        let done = hosts.filter { $0.wave != nil && ($0.state.isTerminal) }.count
        // What matters first: a narrow terminal cuts the end of the line.
        var head = "rollout \(r.id) · \(r.state.rawValue) · \(Self.duration(elapsed)) elapsed"
        if done > 0 && done < total && !Self.over(r.state) {
            head += " · about \(Self.duration(elapsed / Double(done) * Double(total - done))) left"
        }
        head += " · \(r.planName) → \(r.targetRelease)"
        var lines = [paint(fit(head), .bold)]

        let current = waves.first { $0.state != .passed } ?? waves.last
        let waveText = waves.map { w -> String in
            let mark = w.state == .passed ? "✔" : w.state == .running ? "▶" : (w.state == .failed || w.state == .rolledBack) ? "✘" : "·"
            return "\(mark)\(w.number)"
        }.joined(separator: " ")
        var counts: [HostState: Int] = [:]
        for h in hosts where h.wave != nil { counts[h.state, default: 0] += 1 }
        let countText = HostState.allCases.compactMap { s in counts[s].map { "\(s.rawValue) \($0)" } }.joined(separator: " · ")
        lines.append(fit("waves \(waveText) · hosts \(done)/\(total) done · \(countText)"))
        if let note = r.note, r.state == .waiting || r.state == .paused || r.state == .halted || r.state == .interrupted {
            var text = "\(r.state == .paused ? "paused" : r.state == .waiting ? "waiting" : "note"): \(note)"
            if let until = Self.until(note), until > now { text += " — in \(Self.duration(until.timeIntervalSince(now)))" }
            lines.append(paint(fit(text), r.state == .halted ? .red : .yellow))
        }

        // The current wave's hosts, or (too many for the terminal) the ones that need attention.
        let inWave = hosts.filter { $0.wave == current?.number }
        // What the gate has seen so far, for the wave's soaking (and just judged) hosts.
        let soaked = current.flatMap { w in inWave.contains { $0.state == .soaking || $0.state == .healthy }
                                              ? try? journal.soakProgress(rolloutID, wave: w.number) : nil } ?? [:]
        let room = max(1, rows - 1 - lines.count - 2)
        func row(_ h: Journal.HostRow) -> String {
            let since = TimeText.parse(h.updatedAt).map { now.timeIntervalSince($0) } ?? 0
            var state = h.state.rawValue
            if h.state == .soaking, let soak { state += " \(Self.duration(min(since, soak)))/\(Self.duration(soak))" }
            let name = h.name.count > 24 ? String(h.name.prefix(23)) + "…" : h.name
            var text = name.padding(toLength: max(12, min(24, inWave.map(\.name.count).max() ?? 12)), withPad: " ", startingAt: 0)
            text += "  " + state.padding(toLength: 18, withPad: " ", startingAt: 0) + "  " + Self.duration(since).padding(toLength: 7, withPad: " ", startingAt: 0)
            if let reason = h.reason, Self.attention.contains(h.state) || h.state == .rolledBack || h.state == .skipped { text += "  " + reason }
            else if let p = soaked[h.name], h.state == .soaking || h.state == .healthy { text += "  " + Self.soakText(p) }
            let line = fit(text)
            if Self.attention.contains(h.state) { return paint(line, .red) }
            if h.state == .committed { return paint(line, .green) }
            if h.state == .soaking, let p = soaked[h.name], Self.worrying(p, growthLimit: growthLimit) { return paint(line, .yellow) }
            return line
        }
        if let w = current {
            lines.append(paint(fit("wave \(w.number)/\(waves.count) — \(w.state.rawValue)\(w.verdict.map { ", gate \($0)" } ?? ""): \(inWave.count) host\(inWave.count == 1 ? "" : "s")"), .dim))
        }
        if inWave.count <= room {
            lines += inWave.map(row)
        } else {
            var waveCounts: [HostState: Int] = [:]
            for h in inWave { waveCounts[h.state, default: 0] += 1 }
            lines.append(fit("  " + HostState.allCases.compactMap { s in waveCounts[s].map { "\(s.rawValue) \($0)" } }.joined(separator: " · ")))
            let soakingNow = Set(inWave.lazy.filter { $0.state == .soaking }.map(\.name))
            if let summary = Self.soakSummary(soaked.values.filter { soakingNow.contains($0.host) }) {
                lines.append(fit("  " + summary))
            }
            // Soaking hosts whose gate readings worry (growth over the limit, site failures, OOM kills) need attention too.
            let worrying = inWave.filter { $0.state == .soaking && soaked[$0.name].map { Self.worrying($0, growthLimit: growthLimit) } == true }
            let shown = inWave.filter { Self.attention.contains($0.state) } + worrying + inWave.filter { [.rebooting, .up].contains($0.state) }
            lines += shown.prefix(max(0, room - 1)).map(row)
            if shown.count > room - 1 { lines.append(fit("  … \(shown.count - (room - 1)) more that need attention or are rebooting")) }
        }
        // Failures of earlier waves stay visible.
        let earlier = hosts.filter { $0.wave != current?.number && Self.attention.contains($0.state) }
        if !earlier.isEmpty && lines.count < rows - 1 {
            lines.append(paint(fit("failed in earlier waves: " + earlier.map { "\($0.name) (\($0.reason ?? $0.state.rawValue))" }.joined(separator: ", ")), .red))
        }
        return Array(lines.prefix(max(1, rows - 1)))
    }

    /// Plain lines for a log (not a terminal): one line when something changed.
    func plainLine(now: Date = Date()) -> String? {
        guard let r = try? journal.rollout(rolloutID), let hosts = try? journal.hosts(rolloutID) else { return nil }
        var counts: [HostState: Int] = [:]
        for h in hosts where h.wave != nil { counts[h.state, default: 0] += 1 }
        let countText = HostState.allCases.compactMap { s in counts[s].map { "\(s.rawValue) \($0)" } }.joined(separator: " · ")
        return "\(r.id) \(r.state.rawValue) · \(countText)" + (r.note.map { " · \($0)" } ?? "")
    }

    /// `SUnreclaim 312 MiB +40 MiB/h · site 58/60 · 1 OOM`: what the gate saw of one host so far.
    static func soakText(_ p: SoakProgress) -> String {
        var parts: [String] = []
        if let s = p.sUnreclaimBytes {
            var t = "SUnreclaim \(Quantity.formatBytes(s))"
            if let slope = p.slopeBytesPerHour { t += " \(slope < 0 ? "-" : "+")\(Quantity.formatBytes(UInt64(abs(slope).rounded())))/h" }
            parts.append(t)
        } else if p.samples > 0 {
            parts.append("SUnreclaim unread")
        }
        if p.siteTotal > 0 { parts.append("site \(p.siteOK)/\(p.siteTotal)") }
        if p.oomKills > 0 { parts.append("\(p.oomKills) OOM") }
        return parts.joined(separator: " · ")
    }

    /// Readings a person would look at before the verdict: growth over the limit, failed site requests, OOM kills.
    static func worrying(_ p: SoakProgress, growthLimit: Double?) -> Bool {
        if let limit = growthLimit, let slope = p.slopeBytesPerHour, slope > limit { return true }
        return p.siteOK < p.siteTotal || p.oomKills > 0
    }

    /// One line for a wave too big to list: the highest SUnreclaim, the steepest growth, site and OOM totals.
    static func soakSummary(_ rows: [SoakProgress]) -> String? {
        guard !rows.isEmpty else { return nil }
        var parts = ["soak \(rows.count) host\(rows.count == 1 ? "" : "s")"]
        if let top = rows.filter({ $0.sUnreclaimBytes != nil }).max(by: { $0.sUnreclaimBytes! < $1.sUnreclaimBytes! }) {
            parts.append("SUnreclaim up to \(Quantity.formatBytes(top.sUnreclaimBytes!)) (\(top.host))")
        }
        if let steep = rows.filter({ $0.slopeBytesPerHour != nil }).max(by: { $0.slopeBytesPerHour! < $1.slopeBytesPerHour! }) {
            let slope = steep.slopeBytesPerHour!
            parts.append("steepest \(slope < 0 ? "-" : "+")\(Quantity.formatBytes(UInt64(abs(slope).rounded())))/h (\(steep.host))")
        }
        let total = rows.reduce(0) { $0 + $1.siteTotal }
        if total > 0 { parts.append("site \(rows.reduce(0) { $0 + $1.siteOK })/\(total)") }
        let oom = rows.reduce(UInt64(0)) { $0 + $1.oomKills }
        if oom > 0 { parts.append("\(oom) OOM") }
        return parts.joined(separator: " · ")
    }

    static func over(_ s: RolloutState) -> Bool { [.completed, .aborted, .rolledBack, .halted].contains(s) }

    /// The first "until <ISO time>" in a note (waits say until when).
    static func until(_ note: String) -> Date? {
        guard let r = note.range(of: "until ") else { return nil }
        let rest = note[r.upperBound...].prefix(40)
        let token = rest.prefix { !$0.isWhitespace && $0 != ")" && $0 != "," }
        return TimeText.parse(String(token))
    }

    /// `45s`, `3m20s`, `1h5m`: the project's one rendering (`PlanFormat.duration`), whole seconds.
    static func duration(_ seconds: Double) -> String { PlanFormat.duration(.seconds(Int(max(0, seconds).rounded()))) }
}
