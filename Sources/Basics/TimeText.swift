import Foundation

/// Times as rollctl writes them: for people (notices, `rollout show`) and for machines
/// (the journal, mail headers, webhooks).
public enum TimeText {
    /// `Sun 29 Nov 2026 14:00 UTC`: what a customer reads.
    public static func human(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE d MMM yyyy HH:mm 'UTC'"
        return f.string(from: d)
    }

    /// `2026-11-29T14:00:00Z` (RFC 3339, whole seconds).
    public static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    /// RFC 3339 with or without fractional seconds; nil when `s` is neither.
    public static func parse(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}
