import Foundation
import Yams
import Basics

// The `schedule` section: maintenance windows in a time zone, the cutoff, the spacing of batches.

extension PlanLoader {
    static let scheduleKeys = ["time_zone", "windows", "cutoff", "min_batch_interval"]
    static let windowKeys = ["days", "start", "end"]
    static let dayNames: [String: RebootSchedule.Weekday] = [
        "mon": .mon, "tue": .tue, "wed": .wed, "thu": .thu, "fri": .fri, "sat": .sat, "sun": .sun,
        "monday": .mon, "tuesday": .tue, "wednesday": .wed, "thursday": .thu, "friday": .fri, "saturday": .sat, "sunday": .sun,
    ]
}

extension PlanParser {
    /// The schedule and, for the check that every window holds a batch, each window's node.
    func parseSchedule(_ node: Node) -> (RebootSchedule, [Node])? {
        guard let pairs = r.mapping(node, "schedule", allowed: PlanLoader.scheduleKeys) else { return nil }
        var s = RebootSchedule()
        var nodes: [Node] = []
        for (k, _, v) in pairs {
            switch k {
            case "time_zone":
                guard let name = r.string(v, "schedule.time_zone") else { continue }
                if let tz = TimeZone(identifier: name), name.contains("/") || name == "UTC" || name == "GMT" {
                    s.timeZone = tz
                    s.zoneName = name
                } else {
                    let near = nearest(name, in: TimeZone.knownTimeZoneIdentifiers)
                    r.error(v, "schedule.time_zone '\(Inventory.printable(name))' is not a time zone name" + (near.map { " (did you mean '\($0)'?)" } ?? ""),
                            hint: "an IANA name such as Europe/Moscow or America/New_York, or UTC")
                }
            case "windows":
                guard case let .sequence(seq) = v else {
                    r.error(v, "schedule.windows must be a list like [{days: [mon, tue], start: \"02:00\", end: \"05:00\"}], found \(r.kind(v))")
                    continue
                }
                if seq.isEmpty { r.error(v, "schedule.windows is empty: leave it out to allow reboots at any time") }
                for item in seq {
                    if let w = parseWindow(item) { s.windows.append(w); nodes.append(item) }
                }
            case "cutoff": if let d = duration(v, "schedule.cutoff", max: .seconds(12 * 3600)) { s.cutoff = d }
            case "min_batch_interval": if let d = duration(v, "schedule.min_batch_interval", max: .seconds(24 * 3600)) { s.minBatchInterval = d }
            default: break
            }
        }
        return (s, nodes)
    }

    func parseWindow(_ node: Node) -> RebootSchedule.Window? {
        guard let pairs = r.mapping(node, "a window of schedule.windows", allowed: PlanLoader.windowKeys) else { return nil }
        var days = Set(RebootSchedule.Weekday.allCases)
        var start: RebootSchedule.TimeOfDay?, end: RebootSchedule.TimeOfDay?
        var ok = true
        for (k, _, v) in pairs {
            switch k {
            case "days":
                guard let names = r.stringList(v, "window days") else { ok = false; continue }
                var set = Set<RebootSchedule.Weekday>()
                for n in names {
                    let key = n.lowercased()
                    if key == "daily" { set.formUnion(RebootSchedule.Weekday.allCases); continue }
                    if let d = PlanLoader.dayNames[key] { set.insert(d); continue }
                    let near = nearest(key, in: Array(PlanLoader.dayNames.keys).sorted())
                    r.error(v, "window days: '\(Inventory.printable(n))' is not a day" + (near.map { " (did you mean '\($0)'?)" } ?? ""),
                            hint: "mon, tue, wed, thu, fri, sat, sun, or daily")
                    ok = false
                }
                if names.isEmpty { r.error(v, "window days is empty: leave it out for every day"); ok = false }
                days = set
            case "start": start = timeOfDay(v, "window start", allowMidnightEnd: false); if start == nil { ok = false }
            case "end": end = timeOfDay(v, "window end", allowMidnightEnd: true); if end == nil { ok = false }
            default: break
            }
        }
        let keys = Set(pairs.map(\.key))
        if !keys.contains("start") { r.error(node, "a window needs a 'start' (local time, like \"02:00\")"); ok = false }
        if !keys.contains("end") { r.error(node, "a window needs an 'end' (local time, like \"05:00\"; before the start: the next day)"); ok = false }
        guard ok, let start, let end else { return nil }
        if start == end {
            r.error(node, "a window starting and ending at \(start) is empty", hint: "for all day write start: \"00:00\", end: \"24:00\"")
            return nil
        }
        return RebootSchedule.Window(days: days, start: start, end: end)
    }

    /// `HH:MM` or `HH:MM:SS` on a 24-hour clock; `24:00` only as an end.
    func timeOfDay(_ node: Node, _ what: String, allowMidnightEnd: Bool) -> RebootSchedule.TimeOfDay? {
        guard let text = r.string(node, what) else { return nil }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let numbers = parts.map { p -> Int? in p.count == 2 && p.allSatisfy(\.isASCII) ? Int(p) : nil }
        guard (2...3).contains(parts.count), numbers.allSatisfy({ $0 != nil }) else {
            r.error(node, "\(what) must be a time like \"02:00\" or \"02:00:30\" (24-hour clock), found '\(Inventory.printable(text))'",
                    hint: "quote it: start: \"02:00\"")
            return nil
        }
        let h = numbers[0]!, m = numbers[1]!, s = numbers.count == 3 ? numbers[2]! : 0
        if h == 24 && m == 0 && s == 0 {
            if allowMidnightEnd { return RebootSchedule.TimeOfDay(seconds: 86400) }
            r.error(node, "\(what) 24:00 is only an end: write 00:00")
            return nil
        }
        guard h < 24, m < 60, s < 60 else {
            r.error(node, "\(what) '\(Inventory.printable(text))' is not a time of day (00:00 to 23:59\(allowMidnightEnd ? ", or 24:00" : ""))")
            return nil
        }
        return RebootSchedule.TimeOfDay(hour: h, minute: m, second: s)
    }

    /// Every window must hold one batch (its allowance) plus the cutoff, or no batch could ever start in it.
    func checkWindowsHoldABatch(_ schedule: RebootSchedule, _ nodes: [Node], reboot: RebootSpec) {
        let allowance = reboot.settle + reboot.timeout + MaintenanceWindow.commandAllowance * 2
        for (w, node) in zip(schedule.windows, nodes) where w.nominalLength < allowance + schedule.cutoff {
            r.error(node, "the window \(w) is \(fmt(w.nominalLength)) long: a batch may take \(fmt(allowance)) (reboot.settle + reboot.timeout + \(fmt(MaintenanceWindow.commandAllowance * 2)) for the reads around it)"
                    + (schedule.cutoff > .zero ? " and the cutoff keeps the last \(fmt(schedule.cutoff))" : "") + ", so no batch could ever start in it",
                    hint: "make the window longer, or shorten reboot.timeout or schedule.cutoff")
        }
    }
}
