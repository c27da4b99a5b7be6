import Basics
/// Pure parsers of the `/proc` text rollctl reads on hosts. They never throw on
/// odd input: a missing or garbled field is `nil`, and the caller decides
/// whether missing data matters (for the gate it does: no data is no evidence).

/// The fields of `/proc/meminfo` rollctl uses, in bytes.
public struct MemInfo: Sendable, Equatable, Codable {
    public var memTotal: UInt64?
    public var memAvailable: UInt64?
    public var slab: UInt64?
    public var sUnreclaim: UInt64?

    public init(memTotal: UInt64? = nil, memAvailable: UInt64? = nil, slab: UInt64? = nil, sUnreclaim: UInt64? = nil) {
        self.memTotal = memTotal
        self.memAvailable = memAvailable
        self.slab = slab
        self.sUnreclaim = sUnreclaim
    }

    /// SUnreclaim as a share of MemTotal (0...1), when both are known.
    public var sUnreclaimShare: Double? {
        guard let s = sUnreclaim, let t = memTotal, t > 0 else { return nil }
        return Double(s) / Double(t)
    }

    /// Parses `/proc/meminfo` text (`Key:   12345 kB` lines).
    public static func parse(_ text: Substring) -> MemInfo {
        var info = MemInfo()
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let fields = line[line.index(after: colon)...].split(omittingEmptySubsequences: true, whereSeparator: \.isWhitespace)
            // Every field read here is in kB; a line without its unit was cut
            // short (a truncated read), and its number cannot be trusted.
            guard fields.count == 2, fields[1] == "kB", let number = UInt64(fields[0]) else { continue }
            let (product, overflow) = number.multipliedReportingOverflow(by: 1024)
            let bytes: UInt64? = overflow ? nil : product
            switch key {
            case "MemTotal": info.memTotal = bytes
            case "MemAvailable": info.memAvailable = bytes
            case "Slab": info.slab = bytes
            case "SUnreclaim": info.sUnreclaim = bytes
            default: break
            }
        }
        return info
    }
    public static func parse(_ text: String) -> MemInfo { parse(text[...]) }
}

/// `/proc/vmstat` is `name value` per line; rollctl needs `oom_kill`.
public enum VMStat {
    public static func value(_ name: String, in text: Substring) -> UInt64? {
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            let parts = line.split(maxSplits: 1, omittingEmptySubsequences: true, whereSeparator: \.isWhitespace)
            if parts.count == 2, parts[0] == name[...] {
                return UInt64(parts[1].trimmingWhitespace())
            }
        }
        return nil
    }
    public static func oomKill(in text: String) -> UInt64? { value("oom_kill", in: text[...]) }
}

/// `/proc/uptime`: seconds since boot, then idle seconds.
public enum Uptime {
    public static func seconds(in text: String) -> Double? {
        guard let first = text.split(omittingEmptySubsequences: true, whereSeparator: \.isWhitespace).first else { return nil }
        guard let value = Double(first.trimmingWhitespace()), value.isFinite, value >= 0 else { return nil }
        return value
    }
}
