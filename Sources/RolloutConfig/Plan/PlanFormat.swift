import Basics

/// Short human renderings used in messages and the dry-run.
public enum PlanFormat {
    /// `90s`, `10m`, `1h30m`, `500ms`.
    public static func duration(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms == 0 { return "0s" }
        if ms < 1000 { return "\(ms)ms" }
        if ms % 1000 != 0 { return "\(Double(ms) / 1000)s" }
        var s = ms / 1000
        var out = ""
        if s >= 86400 && s % 3600 == 0 { out += "\(s / 86400)d"; s %= 86400 }
        if s >= 3600 { out += "\(s / 3600)h"; s %= 3600 }
        if s >= 60 { out += "\(s / 60)m"; s %= 60 }
        if s > 0 { out += "\(s)s" }
        return out
    }

    public static func waveSize(_ w: WaveSize) -> String {
        switch w {
        case .count(let n): "\(n)"
        case .percent(let p): PlanParser.percentText(p)
        }
    }
}
