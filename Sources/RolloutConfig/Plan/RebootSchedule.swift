import Foundation
import Basics

/// When reboots may start: maintenance windows on the customers' wall clock (their time zone,
/// daylight-saving changes included), a cutoff before each window's end, and a pause between
/// batches. The plan's `schedule` section; the orchestrator waits for `slot` before every batch,
/// and `MaintenanceWindow` plans the customers' windows with the same arithmetic.
///
/// A batch starts only inside a window, and only when its allowance (`MaintenanceWindow.
/// batchAllowance`: reboot to verified, at its slowest) ends by `window end − cutoff`. The soak
/// may run past the window (it disturbs nobody). A rollback after a failed gate does not wait for
/// a window: a host must not stay on a bad kernel until the next night, and the customers' window
/// already covers that one reboot.
public struct RebootSchedule: Sendable, Equatable {
    public var timeZone: TimeZone
    /// The zone's name as the plan wrote it (Foundation calls `UTC` `GMT`).
    public var zoneName: String
    /// Empty: reboots may start at any time (only `minBatchInterval` applies).
    public var windows: [Window]
    /// No batch starts if its allowance would end later than this before its window's end.
    public var cutoff: Duration
    /// Time between the end of one batch and the start of the next (storage, caches settle).
    public var minBatchInterval: Duration

    public init(timeZone: TimeZone = TimeZone(identifier: "UTC")!, zoneName: String? = nil, windows: [Window] = [], cutoff: Duration = .zero,
                minBatchInterval: Duration = .zero) {
        self.timeZone = timeZone
        self.zoneName = zoneName ?? (timeZone.identifier == "GMT" ? "UTC" : timeZone.identifier)
        self.windows = windows
        self.cutoff = cutoff
        self.minBatchInterval = minBatchInterval
    }

    /// Days as `Calendar` numbers them (Sunday = 1).
    public enum Weekday: Int, Sendable, CaseIterable, Comparable {
        case sun = 1, mon, tue, wed, thu, fri, sat
        public var name: String { ["sun", "mon", "tue", "wed", "thu", "fri", "sat"][rawValue - 1] }
        public static func < (a: Weekday, b: Weekday) -> Bool { a.rawValue < b.rawValue }
    }

    /// A wall-clock time of day, in seconds since midnight (0 ... 86400; 86400 is "24:00").
    public struct TimeOfDay: Sendable, Equatable, Comparable, CustomStringConvertible {
        public var seconds: Int
        public init(seconds: Int) { self.seconds = seconds }
        public init(hour: Int, minute: Int, second: Int = 0) { seconds = hour * 3600 + minute * 60 + second }
        public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.seconds < b.seconds }
        /// `02:00`, or `02:00:30` when it has seconds.
        public var description: String {
            let h = seconds / 3600, m = seconds / 60 % 60, s = seconds % 60
            return s == 0 ? String(format: "%02d:%02d", h, m) : String(format: "%02d:%02d:%02d", h, m, s)
        }
    }

    /// Reboots may start on `days` from `start` to `end` (local time). An `end` at or before
    /// `start` is on the next day: the window crosses midnight, and `days` names the day it opens.
    public struct Window: Sendable, Equatable, CustomStringConvertible {
        public var days: Set<Weekday>
        public var start: TimeOfDay
        public var end: TimeOfDay
        public init(days: Set<Weekday> = Set(Weekday.allCases), start: TimeOfDay, end: TimeOfDay) {
            self.days = days; self.start = start; self.end = end
        }
        public var crossesMidnight: Bool { end <= start }
        /// Its length on a day without a clock change.
        public var nominalLength: Duration { .seconds(crossesMidnight ? 86400 - start.seconds + end.seconds : end.seconds - start.seconds) }
        /// `mon,tue 02:00–05:00`, `daily 22:00–04:00`.
        public var description: String {
            let d = days.count == 7 ? "daily" : days.sorted { ($0.rawValue + 5) % 7 < ($1.rawValue + 5) % 7 }.map(\.name).joined(separator: ",")
            return "\(d) \(start)–\(end)"
        }
    }

    var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c
    }

    /// The moment `time` on the local day starting at `day` (a start of day). A time the clock
    /// skips (spring forward) becomes the first moment after the gap; a time it shows twice (fall
    /// back) is its first occurrence.
    func moment(_ time: TimeOfDay, on day: Date, _ cal: Calendar) -> Date? {
        if time.seconds >= 86400 { return cal.date(byAdding: .day, value: 1, to: day).map { cal.startOfDay(for: $0) } }
        return cal.date(bySettingHour: time.seconds / 3600, minute: time.seconds / 60 % 60, second: time.seconds % 60, of: day,
                        matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward)
    }

    /// The windows as intervals of real time that end after `from`, up to `days` local days on,
    /// in order, overlapping or touching ones merged. Empty when the schedule has no windows.
    public func openings(from: Date, days: Int = 15) -> [DateInterval] {
        guard !windows.isEmpty else { return [] }
        let cal = calendar
        var out: [DateInterval] = []
        // From the day before: a window that opened yesterday may still be open.
        guard var day = cal.date(byAdding: .day, value: -1, to: cal.startOfDay(for: from)) else { return [] }
        for _ in 0...days {
            let weekday = Weekday(rawValue: cal.component(.weekday, from: day))
            for w in windows where weekday.map(w.days.contains) ?? false {
                guard let s = moment(w.start, on: day, cal) else { continue }
                let endDay = w.crossesMidnight ? cal.date(byAdding: .day, value: 1, to: day).map { cal.startOfDay(for: $0) } : day
                guard let endDay, let e = moment(w.end, on: endDay, cal), e > s, e > from else { continue }
                out.append(DateInterval(start: s, end: e))
            }
            guard let next = cal.date(byAdding: .day, value: 1, to: day) else { break }
            day = cal.startOfDay(for: next)
        }
        out.sort { $0.start < $1.start }
        var merged: [DateInterval] = []
        for o in out {
            if let last = merged.last, o.start <= last.end {
                merged[merged.count - 1] = DateInterval(start: last.start, end: max(last.end, o.end))
            } else {
                merged.append(o)
            }
        }
        return merged
    }

    /// The earliest moment at or after `notBefore` when a batch that may take `length` can start:
    /// inside a window, ending by the window's end minus the cutoff. `notBefore` itself without
    /// windows; nil when no window within two weeks can hold it.
    public func slot(notBefore: Date, length: Duration) -> Date? {
        guard !windows.isEmpty else { return notBefore }
        let need = length.seconds + cutoff.seconds
        for o in openings(from: notBefore) {
            let start = max(o.start, notBefore)
            if start.addingTimeInterval(need) <= o.end { return start }
        }
        return nil
    }

    /// The window open at `moment`, if any.
    public func opening(containing moment: Date) -> DateInterval? {
        openings(from: moment).first { $0.start <= moment && moment < $0.end }
    }

    /// `Europe/Moscow: mon,tue,wed,thu,fri 02:00–05:00; sat,sun 00:00–06:00; cutoff 20m`.
    public var summary: String {
        var parts = ["\(zoneName): " + (windows.isEmpty ? "any time" : windows.map(\.description).joined(separator: "; "))]
        if cutoff > .zero { parts.append("cutoff \(PlanFormat.duration(cutoff))") }
        if minBatchInterval > .zero { parts.append("\(PlanFormat.duration(minBatchInterval)) between batches") }
        return parts.joined(separator: "; ")
    }

    /// A moment a person writes (`plan apply --at`): RFC 3339 with an offset (`2026-12-02T02:00:00+03:00`,
    /// `…Z`), or `YYYY-MM-DD HH:MM[:SS]` (a `T` may stand for the space) on `zone`'s wall clock.
    public static func parseMoment(_ text: String, in zone: TimeZone) -> Date? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let d = TimeText.parse(t) { return d }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = zone
        f.isLenient = false
        for format in ["yyyy-MM-dd HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd'T'HH:mm:ss"] {
            f.dateFormat = format
            if let d = f.date(from: t), f.string(from: d) == t { return d }
        }
        return nil
    }

    /// `Mon 7 Dec 02:00 MSK`: a moment on the schedule's wall clock, for people.
    public func local(_ moment: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = timeZone
        f.dateFormat = "EEE d MMM yyyy HH:mm:ss zzz"
        return f.string(from: moment)
    }
}
