import ArgumentParser
import Basics

/// `--lease-ttl`: how long the driver's lease lives without a heartbeat.
struct LeaseOption: ParsableArguments {
    @Option(name: .customLong("lease-ttl"),
            help: ArgumentHelp("How long this driver's lease lives without a heartbeat (5s to 1h). It is renewed every sixth of it (at most every 5 s); a driver on another machine may take the rollout over once it lapsed, and this one stops touching hosts when it could not renew it for half of it (see docs/journal.md).",
                               valueName: "duration"))
    var leaseTTL: String = "60s"

    static let range: ClosedRange<Duration> = .seconds(5) ... .seconds(3600)

    func validate() throws {
        guard let d = DurationText.parse(leaseTTL), Self.range.contains(d) else {
            throw ValidationError("--lease-ttl must be a duration from 5s to 1h (e.g. 60s), found '\(leaseTTL)'")
        }
    }

    /// The TTL (`validate` has checked it).
    var ttl: Duration { DurationText.parse(leaseTTL) ?? .seconds(60) }
}
