import Foundation
import Basics

/// When a customer's servers may restart: the one rule used by the maintenance
/// notice, the dry-run and `rollout show`.
///
/// A wave's reboots start no earlier than `rebootsFrom` (the notice's send time plus
/// the lead time). Batches run one after another; a batch takes at most
/// `batchAllowance` (the boot id read before the reboot, settle, the whole reboot
/// timeout, the release read after it), however fast it may go. A customer whose
/// last host is in batch `k` (0-based) of the wave is rebooted by
/// `rebootsFrom + (k + 1) × batchAllowance`; the window then covers the soak and one
/// more reboot, the rollback's, should the gate fail. Any host of the wave may be
/// rebooted as early as `rebootsFrom` (earlier batches may be quick), so that is
/// where every customer's window starts.
public struct MaintenanceWindow: Sendable, Equatable, Codable {
    public var start: Date
    public var end: Date

    public init(start: Date, end: Date) { self.start = start; self.end = end }

    /// The longest one batch may take, reboot to verified.
    public static func batchAllowance(_ plan: Plan) -> Duration {
        plan.reboot.settle + plan.reboot.timeout + Self.commandAllowance * 2
    }

    /// Bound on each of the two reads around a reboot (boot id before, release after).
    public static let commandAllowance: Duration = .seconds(20)

    /// When `count` batches would start and end at the latest, the first no earlier than `from`:
    /// each takes its allowance, and with a schedule each waits for a slot in a window (ending by
    /// the window's end minus the cutoff) and for the interval after the batch before it.
    public static func batchTimes(from: Date, count: Int, plan: Plan) -> [DateInterval] {
        let allowance = batchAllowance(plan)
        var out: [DateInterval] = []
        var t = from
        for _ in 0..<max(0, count) {
            // A plan's windows are checked to hold a batch each (PlanLoader), so a slot exists.
            let start = plan.schedule?.slot(notBefore: t, length: allowance) ?? t
            let end = start.addingTimeInterval(allowance.seconds)
            out.append(DateInterval(start: start, end: end))
            t = end.addingTimeInterval(plan.schedule?.minBatchInterval.seconds ?? 0)
        }
        return out
    }

    /// The window of a customer whose hosts in this wave are in batches up to `lastBatch` (0-based).
    /// With a schedule it opens at the wave's first slot and closes after their last batch's slot.
    public static func forCustomer(rebootsFrom: Date, lastBatch: Int, plan: Plan) -> MaintenanceWindow {
        forCustomer(batchTimes: batchTimes(from: rebootsFrom, count: lastBatch + 1, plan: plan), lastBatch: lastBatch, plan: plan)
    }

    /// The same from the wave's `batchTimes`, computed once for all its customers (a wave of
    /// thousands of batches would otherwise lay them out again for every customer).
    public static func forCustomer(batchTimes times: [DateInterval], lastBatch: Int, plan: Plan) -> MaintenanceWindow {
        let end = times[min(lastBatch, times.count - 1)].end.addingTimeInterval(plan.gate.soak.seconds + batchAllowance(plan).seconds)
        return MaintenanceWindow(start: times[0].start, end: end)
    }

    /// Whether a batch starting `now`, with this customer's last host `batchesLeft` batches
    /// on (1: this batch), still has the customer's reboots and the soak end inside the window.
    /// The window's last batch allowance (for a rollback reboot) is the margin that absorbs
    /// delays before the reboots (sending the notices, a slow lead-time wait): only when those
    /// eat into the planned reboots themselves is the window broken.
    public func holds(now: Date, batchesLeft: Int, plan: Plan) -> Bool {
        holds(batchTimes: Self.batchTimes(from: now, count: max(1, batchesLeft), plan: plan), batchesLeft: batchesLeft, plan: plan)
    }

    /// The same from the remaining batches' `batchTimes` (from now), computed once per check.
    public func holds(batchTimes times: [DateInterval], batchesLeft: Int, plan: Plan) -> Bool {
        let last = times[min(max(1, batchesLeft), times.count) - 1]
        return times[0].start >= start.addingTimeInterval(-1) && last.end.addingTimeInterval(plan.gate.soak.seconds) <= end
    }

    /// `Tue 1 Dec 2026 20:15 UTC` to `20:45 UTC`: minutes, rounded outwards (the start
    /// down, the end up), so the text is never narrower than the window.
    public var humanStart: String { TimeText.human(Self.floorMinute(start)) }
    public var humanEnd: String { TimeText.human(Self.ceilMinute(end)) }

    static func floorMinute(_ d: Date) -> Date { Date(timeIntervalSince1970: (d.timeIntervalSince1970 / 60).rounded(.down) * 60) }
    static func ceilMinute(_ d: Date) -> Date { Date(timeIntervalSince1970: (d.timeIntervalSince1970 / 60).rounded(.up) * 60) }

    /// `2026-12-01T20:15:03Z/2026-12-01T20:45:00Z` (RFC 3339 interval), for machines: the mail's
    /// `X-Rollctl-Window` header, the webhook's fields.
    public var iso: String { TimeText.iso(start) + "/" + TimeText.iso(Self.ceilSecond(end)) }
    package static func ceilSecond(_ d: Date) -> Date { Date(timeIntervalSince1970: d.timeIntervalSince1970.rounded(.up)) }
}
