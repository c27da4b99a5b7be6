/// Durations as people write them — `90s`, `10m`, `1h30m`, `500ms`, `2d` — for plans,
/// gate settings, command-line options and fleetsim's scenarios alike: the one duration
/// parser. A unit is required unless `bareSeconds` (fleetsim's scenarios, JSON settings
/// take `20` as seconds); a plan never takes a bare number for a duration.
public enum DurationText {
    public static func parse(_ text: String, bareSeconds: Bool = false) -> Duration? {
        let t = text.trimmed
        guard !t.isEmpty else { return nil }
        if bareSeconds, let n = Double(t) {
            guard n.isFinite, n >= 0, n < 1e9 else { return nil }
            return .milliseconds(Int64((n * 1000).rounded()))
        }
        var total = Duration.zero
        var number = ""
        var i = t.startIndex
        while i < t.endIndex {
            let c = t[i]
            if c.isNumber || c == "." {
                number.append(c)
                i = t.index(after: i)
                continue
            }
            var unit = ""
            while i < t.endIndex, t[i].isLetter { unit.append(t[i]); i = t.index(after: i) }
            guard let n = Double(number), n.isFinite, n >= 0, n < 1e9 else { return nil }
            let scale: Double
            switch unit.lowercased() {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            case "d": scale = 86400
            default: return nil
            }
            total += .milliseconds(Int64((n * scale * 1000).rounded()))
            number = ""
        }
        guard number.isEmpty else { return nil }
        return total
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }

    /// Nearest whole nanoseconds (saturating; ±292 years).
    public var nanoseconds: Int64 {
        let c = components
        let (s, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return c.seconds < 0 ? .min : .max }
        return s.addingReportingOverflow((c.attoseconds + 500_000_000) / 1_000_000_000).partialValue
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
