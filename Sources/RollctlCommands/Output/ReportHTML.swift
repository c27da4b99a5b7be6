import Foundation
import Basics
import RolloutConfig
import HealthGate
import Engine

/// `rollctl rollout report ID --html FILE`: one self-contained HTML file (no script, font or
/// request to anywhere) a person can mail around. Charts are inline SVG drawn here; colours
/// follow the reader's light or dark mode, and the page prints. Every text from the journal
/// (host names, reasons, the plan) is escaped.
enum ReportHTML {
    /// One page for one or more rollouts (the demo puts the leaky kernel's halted rollout beside
    /// the fixed one's).
    static func render(_ reports: [RolloutReport]) -> String {
        var body = ""
        if reports.count > 1 {
            body += "<nav><b>\(reports.count) rollouts:</b> " + reports.map { "<a href=\"#\(esc($0.id))\">\(esc($0.id))</a> (\(esc($0.release)), \(esc($0.state)))" }.joined(separator: " · ") + "</nav>"
        }
        for r in reports { body += "<article id=\"\(esc(r.id))\" class=\"rollout\">" + article(r) + "</article>" }
        let title = reports.map { "\($0.id) — \($0.plan)" }.joined(separator: ", ")
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light dark">
        <title>rollctl: \(esc(title))</title>
        <style>\(css)</style></head>
        <body>\(body)</body></html>

        """
    }

    static func article(_ r: RolloutReport) -> String {
        var body = ""
        body += "<header><h1>Rollout \(esc(r.id))</h1>"
        body += "<p class=\"lead\">Plan <b>\(esc(r.plan))</b> → kernel <b>\(esc(r.release))</b> · <span class=\"state s-\(esc(r.state))\">\(esc(r.state))</span></p>"
        body += "<p>Started \(esc(r.startedAt)) by \(esc(r.startedBy)); last change \(esc(r.updatedAt)); \(esc(duration(r.durationSeconds))) journaled. "
        body += "\(r.hosts.count) hosts in \(r.waves.count) waves.</p>"
        if let note = r.note { body += "<p class=\"note\">\(esc(note))</p>" }
        body += "</header>"
        body += summary(r)
        body += timeline(r)
        for w in r.waves { body += wave(w) }
        body += notices(r)
        body += "<section><h2>The plan</h2><p class=\"muted\">\(esc(r.planPath))</p><pre>\(esc(r.planText))</pre></section>"
        body += "<footer>Written by rollctl from the journal at \(esc(r.generatedAt)).</footer>"
        return body
    }

    // MARK: sections

    static func summary(_ r: RolloutReport) -> String {
        var counts: [String: Int] = [:]
        for h in r.hosts { counts[h.state, default: 0] += 1 }
        var out = "<section><h2>Hosts by state</h2><table class=\"counts\"><tr>"
        for (s, n) in counts.sorted(by: { $0.key < $1.key }) { out += "<td><span class=\"chip\" style=\"background:\(stateColour(s))\"></span>\(esc(s)) <b>\(n)</b></td>" }
        out += "</tr></table>"
        let attention = r.hosts.filter { ["failed", "rolled_back", "rollback_failed", "rolling_back"].contains($0.state) }
        if !attention.isEmpty {
            out += "<h3>Hosts that need attention</h3><table><tr><th>host</th><th>wave</th><th>state</th><th>reason</th></tr>"
            for h in attention.prefix(200) {
                out += "<tr><td>\(esc(h.name))</td><td>\(h.wave.map(String.init) ?? "–")</td><td>\(esc(h.state))</td><td>\(esc(h.reason ?? ""))</td></tr>"
            }
            out += "</table>"
        }
        return out + "</section>"
    }

    /// Every host's states over the rollout's time, one row each (the first `timelineLimit`).
    static func timeline(_ r: RolloutReport) -> String {
        let total = max(1, r.durationSeconds)
        let hosts = r.hosts.prefix(RolloutReport.timelineLimit).map { h -> RolloutReport.Host in
            var h = h
            if h.segments.isEmpty { h.segments = [.init(state: h.state, from: 0, to: total)] }
            return h
        }
        guard !hosts.isEmpty else { return "" }
        let rowH = 14.0, left = 130.0, width = 900.0, plot = width - left - 10
        let height = Double(hosts.count) * rowH + 30
        var svg = "<svg class=\"chart timeline\" viewBox=\"0 0 \(width) \(fmt(height))\" role=\"img\" aria-label=\"host states over time\">"
        for (i, h) in hosts.enumerated() {
            let y = Double(i) * rowH + 4
            svg += "<text class=\"label\" x=\"\(fmt(left - 6))\" y=\"\(fmt(y + rowH * 0.75))\" text-anchor=\"end\">\(esc(h.name))</text>"
            svg += "<g class=\"series\" data-host=\"\(esc(h.name))\">"
            for s in h.segments {
                let x = left + s.from / total * plot, w = max(1, (s.to - s.from) / total * plot)
                svg += "<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(rowH - 3))\" fill=\"\(stateColour(s.state))\"><title>\(esc(h.name)): \(esc(s.state)) \(esc(duration(s.from)))–\(esc(duration(s.to)))</title></rect>"
            }
            svg += "</g>"
        }
        let axisY = Double(hosts.count) * rowH + 8
        for k in 0...4 {
            let t = total * Double(k) / 4, x = left + Double(k) / 4 * plot
            svg += "<line class=\"grid\" x1=\"\(fmt(x))\" y1=\"0\" x2=\"\(fmt(x))\" y2=\"\(fmt(axisY))\"/>"
            svg += "<text class=\"label\" x=\"\(fmt(x))\" y=\"\(fmt(axisY + 14))\" text-anchor=\"middle\">\(esc(duration(t)))</text>"
        }
        svg += "</svg>"
        let states = Array(Set(hosts.flatMap { $0.segments.map(\.state) })).sorted()
        var legend = "<p class=\"legend\">"
        for s in states { legend += "<span><span class=\"chip\" style=\"background:\(stateColour(s))\"></span>\(esc(s))</span> " }
        legend += "</p>"
        let more = r.hosts.count > hosts.count ? "<p class=\"muted\">The first \(hosts.count) of \(r.hosts.count) hosts; the counts above cover all.</p>" : ""
        return "<section><h2>Timeline</h2>\(legend)\(svg)\(more)</section>"
    }

    static func wave(_ w: RolloutReport.Wave) -> String {
        var out = "<section class=\"wave\" data-wave=\"\(w.number)\"><h2>Wave \(w.number) — \(esc(w.state))"
        if let v = w.verdict { out += " · gate <span class=\"verdict v-\(esc(v))\">\(esc(v))</span>" }
        out += "</h2>"
        guard !w.soaks.isEmpty else { return out + "<p class=\"muted\">No gate ran for this wave.</p></section>" }
        out += "<h3>SUnreclaim over the soak</h3>" + slabChart(w)
        out += "<h3>Test site by outcome</h3>" + siteChart(w)
        out += "<h3>Verdicts and evidence</h3><table><tr><th>host</th><th>verdict</th><th>growth</th><th>old kernel</th><th>OOM kills</th><th>why</th></tr>"
        for s in w.soaks {
            let why = s.findings.filter { $0.status == .fail || $0.status == .inconclusive }.map { "\($0.check): \($0.summary)" }
            out += "<tr><td>\(esc(s.host))</td><td class=\"verdict v-\(esc(s.verdict))\">\(esc(s.verdict))</td>"
            out += "<td>\(s.slopePerHour.map { esc(rate($0)) } ?? "–")</td><td>\(s.baselinePerHour.map { esc(rate($0)) + (s.baselineRelease.map { " (\(esc($0)))" } ?? "") } ?? "–")</td>"
            out += "<td>\(s.oomKills.map(String.init) ?? "–")</td><td>\(s.verdict == "soaking" ? "soaking: no verdict yet" : why.isEmpty ? "all checks passed" : why.map(esc).joined(separator: "<br>"))</td></tr>"
        }
        out += "</table><details><summary>Every finding</summary><table><tr><th>host</th><th>check</th><th>status</th><th>summary</th></tr>"
        for s in w.soaks {
            for f in s.findings { out += "<tr><td>\(esc(s.host))</td><td>\(esc(f.check))</td><td>\(esc(f.status.rawValue))</td><td>\(esc(f.summary))</td></tr>" }
        }
        return out + "</table></details></section>"
    }

    /// Each host's SUnreclaim (solid), the gate's fitted line (dotted), the host's growth on its
    /// old kernel from the first sample (dashed grey) and the ceiling (red).
    static func slabChart(_ w: RolloutReport.Wave) -> String {
        let soaks = w.soaks.filter { !$0.sunreclaim.isEmpty }
        guard !soaks.isEmpty else { return "<p class=\"muted\">No SUnreclaim was read.</p>" }
        let width = 900.0, height = 320.0, left = 70.0, right = 20.0, top = 16.0, bottom = 36.0
        // A wave still soaking is drawn against its whole planned soak: the lines grow across.
        let tMax = max(1, w.soakSeconds ?? 0, soaks.flatMap { $0.sunreclaim.map(\.t) }.max() ?? 1)
        let values = soaks.flatMap { $0.sunreclaim.map(\.v) }
        var yMin = values.min() ?? 0, yMax = values.max() ?? 1
        let limit = soaks.compactMap(\.limitBytes).min()
        var limitOff = false
        if let l = limit { if l <= yMax * 3 { yMax = max(yMax, l) } else { limitOff = true } }
        for s in soaks {
            guard let first = s.sunreclaim.first else { continue }
            for rate in [s.baselinePerHour, s.growthLimitPerHour].compactMap({ $0 }) {
                yMax = max(yMax, min(first.v + rate * (tMax - first.t) / 3600, (values.max() ?? 1) * 3))
            }
        }
        let pad = max(1, (yMax - yMin) * 0.08)
        yMin = max(0, yMin - pad); yMax += pad
        func x(_ t: Double) -> Double { left + t / tMax * (width - left - right) }
        func y(_ v: Double) -> Double { top + (1 - (v - yMin) / (yMax - yMin)) * (height - top - bottom) }
        var svg = "<svg class=\"chart slab\" viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" role=\"img\" aria-label=\"SUnreclaim per host over the soak\">"
        for k in 0...4 {
            let v = yMin + (yMax - yMin) * Double(k) / 4
            svg += "<line class=\"grid\" x1=\"\(fmt(left))\" y1=\"\(fmt(y(v)))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(y(v)))\"/>"
            svg += "<text class=\"label\" x=\"\(fmt(left - 6))\" y=\"\(fmt(y(v) + 4))\" text-anchor=\"end\">\(esc(bytes(v)))</text>"
            let t = tMax * Double(k) / 4
            svg += "<text class=\"label\" x=\"\(fmt(x(t)))\" y=\"\(fmt(height - bottom + 16))\" text-anchor=\"middle\">\(esc(duration(t)))</text>"
        }
        if let l = limit, !limitOff {
            svg += "<line class=\"limit\" x1=\"\(fmt(left))\" y1=\"\(fmt(y(l)))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(y(l)))\"><title>limit \(esc(bytes(l)))</title></line>"
            svg += "<text class=\"label limit-label\" x=\"\(fmt(width - right))\" y=\"\(fmt(y(l) - 4))\" text-anchor=\"end\">limit \(esc(bytes(l)))</text>"
        }
        for (i, s) in soaks.enumerated() {
            let colour = palette[i % palette.count]
            let pts = s.sunreclaim.map { "\(fmt(x($0.t))),\(fmt(y($0.v)))" }.joined(separator: " ")
            svg += "<g class=\"series\" data-host=\"\(esc(s.host))\" data-verdict=\"\(esc(s.verdict))\">"
            svg += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"><title>\(esc(s.host)) (\(esc(s.verdict)))</title></polyline>"
            if let slope = s.slopePerHour, let b = s.interceptBytes, let first = s.sunreclaim.first, let last = s.sunreclaim.last {
                let v0 = b + slope * first.t / 3600, v1 = b + slope * last.t / 3600
                svg += "<line class=\"fit\" x1=\"\(fmt(x(first.t)))\" y1=\"\(fmt(y(clamp(v0, yMin, yMax))))\" x2=\"\(fmt(x(last.t)))\" y2=\"\(fmt(y(clamp(v1, yMin, yMax))))\" stroke=\"\(colour)\"><title>fitted: \(esc(rate(slope)))</title></line>"
            }
            if let g = s.growthLimitPerHour, let first = s.sunreclaim.first, let last = s.sunreclaim.last {
                let v1 = first.v + g * (last.t - first.t) / 3600
                svg += "<line class=\"limit growth-limit\" x1=\"\(fmt(x(first.t)))\" y1=\"\(fmt(y(first.v)))\" x2=\"\(fmt(x(last.t)))\" y2=\"\(fmt(y(clamp(v1, yMin, yMax))))\"><title>growth limit \(esc(rate(g))) from \(esc(s.host))'s first sample</title></line>"
            }
            if let base = s.baselinePerHour, let first = s.sunreclaim.first, let last = s.sunreclaim.last {
                let v1 = first.v + base * (last.t - first.t) / 3600
                svg += "<line class=\"baseline\" x1=\"\(fmt(x(first.t)))\" y1=\"\(fmt(y(first.v)))\" x2=\"\(fmt(x(last.t)))\" y2=\"\(fmt(y(clamp(v1, yMin, yMax))))\"><title>\(esc(s.host)) on its old kernel: \(esc(rate(base)))</title></line>"
            }
            svg += "</g>"
        }
        svg += "</svg>"
        var legend = "<p class=\"legend\">"
        for (i, s) in soaks.enumerated() {
            legend += "<span><span class=\"chip\" style=\"background:\(palette[i % palette.count])\"></span>\(esc(s.host)) <span class=\"verdict v-\(esc(s.verdict))\">\(esc(s.verdict))</span>\(s.slopePerHour.map { " · " + esc(rate($0)) } ?? "")</span> "
        }
        legend += "<span class=\"muted\">solid: measured · dotted: the gate's fitted slope · dashed red: the growth limit from the first sample · dashed grey: the host's growth on its old kernel (average since its boot)"
        if limitOff, let l = limit { legend += " · the limit \(esc(bytes(l))) is far above the chart" }
        legend += "</span></p>"
        return svg + legend
    }

    /// Test-site requests of the wave's hosts per sample, stacked by outcome class.
    static func siteChart(_ w: RolloutReport.Wave) -> String {
        var byIndex: [Int: (t: Double, counts: [String: Int])] = [:]
        for s in w.soaks {
            for (i, p) in s.site.enumerated() {
                var e = byIndex[i] ?? (p.t, [:])
                for (k, n) in p.counts { e.counts[k, default: 0] += n }
                byIndex[i] = e
            }
        }
        let total = byIndex.values.reduce(0) { $0 + $1.counts.values.reduce(0, +) }
        guard total > 0 else {
            // A soaking wave's site results per sample come with its verdict (rollout watch shows the totals so far).
            if w.soakSeconds != nil { return "<p class=\"muted\">The wave is soaking: its test-site chart comes with the verdict (<code>rollctl rollout watch</code> shows the successes so far).</p>" }
            return "<p class=\"muted\">No test-site requests (the plan has none).</p>"
        }
        let classes = SiteOutcome.allCases.map(\.rawValue)
        let width = 900.0, height = 180.0, left = 70.0, right = 20.0, top = 10.0, bottom = 30.0
        let n = byIndex.count, maxCount = max(1, byIndex.values.map { $0.counts.values.reduce(0, +) }.max() ?? 1)
        let bw = (width - left - right) / Double(max(n, 1))
        var svg = "<svg class=\"chart site\" viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" role=\"img\" aria-label=\"test-site outcomes per sample\">"
        for c in classes { svg += "<g class=\"series\" data-class=\"\(c)\">" 
            for i in 0..<n {
                guard let e = byIndex[i], let count = e.counts[c], count > 0 else { continue }
                let below = classes.prefix(while: { $0 != c }).reduce(0) { $0 + (e.counts[$1] ?? 0) }
                let h = Double(count) / Double(maxCount) * (height - top - bottom)
                let yTop = height - bottom - Double(below) / Double(maxCount) * (height - top - bottom) - h
                svg += "<rect x=\"\(fmt(left + Double(i) * bw + 1))\" y=\"\(fmt(yTop))\" width=\"\(fmt(max(1, bw - 2)))\" height=\"\(fmt(h))\" fill=\"\(outcomeColour(c))\"><title>sample \(i) (\(esc(duration(e.t)))): \(count) \(c)</title></rect>"
            }
            svg += "</g>"
        }
        svg += "<text class=\"label\" x=\"\(fmt(left - 6))\" y=\"\(fmt(top + 10))\" text-anchor=\"end\">\(maxCount)</text>"
        svg += "<text class=\"label\" x=\"\(fmt(left - 6))\" y=\"\(fmt(height - bottom))\" text-anchor=\"end\">0</text>"
        svg += "<text class=\"label\" x=\"\(fmt(left))\" y=\"\(fmt(height - 8))\">samples →</text></svg>"
        var sums: [String: Int] = [:]
        for e in byIndex.values { for (k, v) in e.counts { sums[k, default: 0] += v } }
        var legend = "<p class=\"legend\">"
        for c in classes where sums[c] != nil { legend += "<span><span class=\"chip\" style=\"background:\(outcomeColour(c))\"></span>\(c) \(sums[c]!)</span> " }
        return svg + legend + "</p>"
    }

    static func notices(_ r: RolloutReport) -> String {
        guard !r.notices.isEmpty else { return "<section><h2>Customer notices</h2><p class=\"muted\">None (the plan sends none).</p></section>" }
        var out = "<section><h2>Customer notices</h2><table><tr><th>wave</th><th>kind</th><th>customer</th><th>to</th><th>status</th><th>attempts</th><th>subject</th></tr>"
        for n in r.notices {
            out += "<tr><td>\(n.wave)</td><td>\(esc(n.kind))</td><td>\(esc(n.customer))</td><td>\(esc(n.channel)) \(esc(n.recipient))</td><td>\(esc(n.status))</td><td>\(n.attempts)</td><td>\(esc(n.subject))</td></tr>"
        }
        return out + "</table></section>"
    }

    // MARK: helpers

    static func esc(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                if u.value < 0x20 && u != "\n" && u != "\t" { out += "\u{FFFD}" } else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    static func fmt(_ v: Double) -> String { v.isFinite ? String(format: "%.1f", v) : "0" }
    static func clamp(_ v: Double, _ lo: Double, _ hi: Double) -> Double { min(max(v, lo), hi) }
    static func bytes(_ v: Double) -> String { Quantity.formatBytes(UInt64(max(0, v))) }
    static func rate(_ perHour: Double) -> String { (perHour < 0 ? "-" : "") + Quantity.formatBytes(UInt64(abs(perHour))) + "/h" }
    /// `45s`, `3m20s`, `1h5m`: the project's one rendering (`PlanFormat.duration`), whole seconds.
    static func duration(_ seconds: Double) -> String { PlanFormat.duration(.seconds(Int(max(0, seconds).rounded()))) }

    static let palette = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#84cc16", "#f97316", "#6366f1"]

    static func stateColour(_ s: String) -> String {
        switch s {
        case "pending", "checked": return "#9ca3af"
        case "notified", "staged": return "#60a5fa"
        case "rebooting", "up": return "#f59e0b"
        case "verified", "soaking": return "#a78bfa"
        case "healthy", "committed": return "#10b981"
        case "skipped": return "#d1d5db"
        case "failed", "rollback_failed": return "#ef4444"
        case "rolling_back", "rolled_back": return "#fb923c"
        default: return "#6b7280"
        }
    }

    static func outcomeColour(_ c: String) -> String {
        switch c {
        case "ok": return "#10b981"
        case "refused": return "#6b7280"
        case "reset": return "#ef4444"
        case "timeout": return "#f59e0b"
        case "http5xx": return "#8b5cf6"
        default: return "#9ca3af"
        }
    }

    static let css = """
    :root { --fg: #111827; --bg: #ffffff; --muted: #6b7280; --grid: #e5e7eb; --card: #f9fafb; }
    @media (prefers-color-scheme: dark) { :root { --fg: #e5e7eb; --bg: #111827; --muted: #9ca3af; --grid: #374151; --card: #1f2937; } }
    body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); margin: 2rem auto; max-width: 960px; padding: 0 1rem; }
    h1 { font-size: 1.6rem; margin-bottom: .2rem } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid var(--grid) } h3 { font-size: 1rem }
    .lead { font-size: 1.1rem } .muted, footer { color: var(--muted) } .note { background: var(--card); padding: .5rem; border-left: 3px solid #f59e0b }
    table { border-collapse: collapse; width: 100%; margin: .5rem 0 } th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--grid); vertical-align: top }
    table.counts td { border: 0 } pre { background: var(--card); padding: .75rem; overflow: auto; font-size: 12px }
    .chip { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .3em; vertical-align: middle }
    .legend span { margin-right: .8em; white-space: nowrap } .legend span.muted { white-space: normal }
    svg.chart { width: 100%; height: auto; background: var(--card); border-radius: 4px }
    svg .label { fill: var(--muted); font-size: 11px } svg .grid { stroke: var(--grid); stroke-width: 1 }
    svg .limit { stroke: #ef4444; stroke-width: 1.5; stroke-dasharray: 6 3 } svg .limit-label { fill: #ef4444 }
    svg .fit { stroke-width: 1.5; stroke-dasharray: 2 3; opacity: .8 } svg .baseline { stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 6 4 }
    .verdict.v-pass, .state.s-completed { color: #059669 } .verdict.v-fail, .state.s-halted, .state.s-rolled_back { color: #dc2626 } .verdict.v-inconclusive { color: #d97706 }
    @media print { body { margin: 0; max-width: none; color: #000; background: #fff } svg.chart { background: #fff } details { display: block } details > * { display: block } }
    """
}
