import Foundation
import Basics

/// One observation of a series: seconds since the start of the gate, and a value
/// (bytes of SUnreclaim).
public struct SeriesPoint: Sendable, Equatable, Codable {
    public var seconds: Double
    public var value: Double
    public init(seconds: Double, value: Double) {
        self.seconds = seconds
        self.value = value
    }
}

/// The growth trend of a series, by Theil–Sen: the median of the slopes between
/// every pair of points. Unlike least squares it ignores a minority of outliers
/// (up to ~29% of the points), so one spike of slab memory during a soak (a
/// burst of connections, a cron job) does not pass for a leak, while a steady
/// leak shows however noisy the series.
public struct SlopeEstimate: Sendable, Equatable, Codable {
    /// The median pairwise slope.
    public var bytesPerHour: Double
    /// Approximate 95% confidence interval of the slope (Sen 1968, normal
    /// approximation of Kendall's S; rough below ~10 points).
    public var lowerBytesPerHour: Double
    public var upperBytesPerHour: Double
    /// Fitted value at `seconds == 0` (median of `value - slope * seconds`).
    public var interceptBytes: Double
    public var points: Int
    /// Time between the first and the last point.
    public var spanSeconds: Double
    /// Time of the last point; projections start from there.
    public var lastSeconds: Double

    public init(bytesPerHour: Double, lowerBytesPerHour: Double, upperBytesPerHour: Double, interceptBytes: Double,
                points: Int, spanSeconds: Double, lastSeconds: Double) {
        self.bytesPerHour = bytesPerHour
        self.lowerBytesPerHour = lowerBytesPerHour
        self.upperBytesPerHour = upperBytesPerHour
        self.interceptBytes = interceptBytes
        self.points = points
        self.spanSeconds = spanSeconds
        self.lastSeconds = lastSeconds
    }

    /// The Theil–Sen estimate, or `nil` with fewer than two distinct times.
    public static func theilSen(_ series: [SeriesPoint]) -> SlopeEstimate? {
        let pts = series.filter { $0.seconds.isFinite && $0.value.isFinite }
        guard pts.count >= 2 else { return nil }
        var slopes: [Double] = []
        slopes.reserveCapacity(pts.count * (pts.count - 1) / 2)
        for i in 0..<pts.count {
            for j in (i + 1)..<pts.count where pts[j].seconds != pts[i].seconds {
                slopes.append((pts[j].value - pts[i].value) / (pts[j].seconds - pts[i].seconds))
            }
        }
        guard !slopes.isEmpty else { return nil }
        slopes.sort()
        let perSecond = median(sorted: slopes)
        let n = Double(pts.count)
        let pairs = Double(slopes.count)
        let c = 1.96 * (n * (n - 1) * (2 * n + 5) / 18).squareRoot()
        let lowerRank = Int(((pairs - c) / 2).rounded(.down))          // 1-based rank
        let upperRank = Int(((pairs + c) / 2).rounded(.up)) + 1
        let lower = slopes[min(max(lowerRank, 1), slopes.count) - 1]
        let upper = slopes[min(max(upperRank, 1), slopes.count) - 1]
        let intercept = median(sorted: pts.map { $0.value - perSecond * $0.seconds }.sorted())
        let times = pts.map(\.seconds)
        return SlopeEstimate(bytesPerHour: perSecond * 3600, lowerBytesPerHour: lower * 3600, upperBytesPerHour: upper * 3600,
                             interceptBytes: intercept, points: pts.count,
                             spanSeconds: times.max()! - times.min()!, lastSeconds: times.max()!)
    }

    /// Ordinary least squares slope in bytes/hour — kept to show what Theil–Sen
    /// protects against (one spike drags it); not used by the gate.
    public static func leastSquaresBytesPerHour(_ series: [SeriesPoint]) -> Double? {
        guard series.count >= 2 else { return nil }
        let n = Double(series.count)
        let mx = series.map(\.seconds).reduce(0, +) / n
        let my = series.map(\.value).reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0
        for p in series {
            sxy += (p.seconds - mx) * (p.value - my)
            sxx += (p.seconds - mx) * (p.seconds - mx)
        }
        return sxx == 0 ? nil : sxy / sxx * 3600
    }

    /// The fitted value at `seconds`.
    public func fitted(atSeconds seconds: Double) -> Double {
        interceptBytes + bytesPerHour / 3600 * seconds
    }

    /// Like Prometheus `predict_linear`: how long after the last point the fitted
    /// line reaches `limit`. `0` when already there, `nil` when it never will
    /// (flat or shrinking).
    public func secondsUntil(reaching limit: Double) -> Double? {
        let now = fitted(atSeconds: lastSeconds)
        if now >= limit { return 0 }
        guard bytesPerHour > 0 else { return nil }
        return (limit - now) / (bytesPerHour / 3600)
    }

    /// "21 points over 10m, 95% CI 1.8 MiB/h … 2.4 MiB/h".
    public var note: String {
        "\(points) points over \(Format.duration(spanSeconds)), 95% CI \(Format.rate(lowerBytesPerHour)) … \(Format.rate(upperBytesPerHour))"
    }

    static func median(sorted v: [Double]) -> Double {
        let m = v.count / 2
        return v.count % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2
    }
}

/// The SUnreclaim growth of a host before its reboot (on the old kernel), to
/// say whether the new kernel leaks less.
public struct GrowthBaseline: Sendable, Equatable, Codable {
    public var bytesPerHour: Double
    /// How it was measured, for the report ("Theil–Sen over 20 samples", …).
    public var method: String
    /// The kernel it was measured on.
    public var release: String?

    public init(bytesPerHour: Double, method: String, release: String? = nil) {
        self.bytesPerHour = bytesPerHour
        self.method = method
        self.release = release
    }

    /// From a slope measured on the old kernel (e.g. a short soak before the reboot).
    public init(_ slope: SlopeEstimate, release: String? = nil) {
        self.init(bytesPerHour: slope.bytesPerHour, method: "Theil–Sen over \(slope.points) samples", release: release)
    }

    /// A one-sample estimate from a survey: SUnreclaim divided by uptime. It
    /// overstates the leak by the slab a freshly booted host already holds
    /// (typically 100–300 MiB), so it is only meaningful after days of uptime;
    /// `nil` below one hour.
    public static func averageSinceBoot(_ facts: HostFacts) -> GrowthBaseline? {
        guard let s = facts.memory.sUnreclaim, let up = facts.uptimeSeconds, up >= 3600 else { return nil }
        return GrowthBaseline(bytesPerHour: Double(s) / (up / 3600),
                              method: "SUnreclaim / uptime (\(Format.duration(up)))", release: facts.release)
    }

    /// From two survey reads of the same boot (e.g. when the plan starts and
    /// just before the host's reboot), timed by the host's own uptime. Cheap
    /// and accurate when they are an hour or more apart; `nil` when they are
    /// not of one boot, lack SUnreclaim, or are less than 10 minutes apart.
    public static func between(_ earlier: HostFacts, _ later: HostFacts) -> GrowthBaseline? {
        guard let id = earlier.bootID, id == later.bootID,
              let s0 = earlier.memory.sUnreclaim, let s1 = later.memory.sUnreclaim,
              let u0 = earlier.uptimeSeconds, let u1 = later.uptimeSeconds, u1 - u0 >= 600 else { return nil }
        return GrowthBaseline(bytesPerHour: (Double(s1) - Double(s0)) / ((u1 - u0) / 3600),
                              method: "two reads \(Format.duration(u1 - u0)) apart", release: later.release)
    }

    /// "slope 2.1 MiB/h vs 2.4 GiB/h before: 99.9% less".
    public func comparison(to current: Double) -> String {
        let head = "slope \(Format.rate(current)) vs \(Format.rate(bytesPerHour)) before"
        guard bytesPerHour > 0 else {
            return current > bytesPerHour ? head + ": grows where the old kernel did not" : head + ": no worse"
        }
        let change = (current - bytesPerHour) / bytesPerHour * 100
        if abs(change) < 0.05 { return head + ": the same" }
        if change < 0 { return head + ": \(Format.percent(min(-change, 100)))% less" }
        return head + ": \(Format.percent(change))% more"
    }
}

/// Human formatting for reports. Binary units, because `/proc/meminfo` counts KiB.
enum Format {
    static func bytes(_ value: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = abs(value)
        var unit = 0
        while v >= 1024 && unit < units.count - 1 {
            v /= 1024
            unit += 1
        }
        let sign = value < 0 ? "-" : ""
        if unit == 0 { return "\(sign)\(Int(v)) B" }
        return sign + String(format: v >= 100 ? "%.0f" : "%.1f", v) + " " + units[unit]
    }

    static func bytes(_ value: UInt64) -> String { bytes(Double(value)) }

    /// A measured number as a person reads it: `0.25`, `1234`, `1.5e+09`, `+Inf`.
    static func number(_ value: Double) -> String {
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value.isNaN { return "NaN" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.4g", value)
    }

    static func rate(_ perHour: Double) -> String { bytes(perHour) + "/h" }

    static func percent(_ value: Double) -> String {
        if value >= 99.9 && value < 100 { return String(format: "%.1f", (value * 10).rounded(.down) / 10) }
        return String(format: value >= 10 ? "%.0f" : "%.1f", value)
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "∞" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m\(s % 60)s" }
        if s < 86400 * 2 { return s % 3600 / 60 == 0 ? "\(s / 3600)h" : "\(s / 3600)h\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }

    static func millis(_ seconds: Double) -> String {
        seconds < 0.01 ? String(format: "%.1f ms", seconds * 1000) : "\(Int((seconds * 1000).rounded())) ms"
    }
}
