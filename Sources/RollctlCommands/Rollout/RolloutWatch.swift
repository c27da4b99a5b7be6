import ArgumentParser
import Foundation
import Basics
import RolloutJournal

/// `rollctl rollout watch ID`: the live view of a rollout another process drives (or drove).
struct RolloutWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Watch a rollout from another terminal: its waves, the current wave's hosts and for how long, what it waits for, failures.",
        discussion: "Read from the journal every second until the rollout is over (or Ctrl-C). On a terminal the view redraws in place and fits its size; otherwise (a pipe, TERM=dumb, --json) a line is printed when something changes."
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "One JSON line per change (state and host counts).") var json = false
    @Option(help: ArgumentHelp("Seconds between two looks.", valueName: "s")) var interval: Double = 1

    func validate() throws {
        guard interval >= 0.1 && interval <= 3600 else { throw ValidationError("--interval must be between 0.1 and 3600 seconds") }
    }

    func run() async throws {
        let (j, _) = try journal.rollout(id)
        let c = Console.shared
        let view = LiveView(journal: j, rolloutID: id, console: c)
        let stop = StopFlag()
        stop.install()
        let live = c.stderrIsTTY && !json && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        var last: String?
        while true {
            let state = try j.rollout(id)?.state
            if live {
                let size = c.terminalSize ?? (80, 24)
                c.live(view.frame(columns: size.columns, rows: size.rows))
            } else if let line = view.plainLine(), line != last {
                last = line
                if json {
                    let hosts = try j.hosts(id)
                    var counts: [String: Int] = [:]
                    for h in hosts where h.wave != nil { counts[h.state.rawValue, default: 0] += 1 }
                    let r = try j.rollout(id)
                    c.out(JSONLine.encode(["type": "watch", "rollout": id, "state": r?.state.rawValue ?? "?", "note": r?.note as Any, "hosts": counts,
                                           "at": TimeText.iso(Date())]))
                } else {
                    c.out("\(TimeText.iso(Date())) \(line)")
                }
            }
            if let state, LiveView.over(state) || stop.isSet { break }
            try? await Task.sleep(for: .seconds(interval))
        }
        if live { c.endLive() }
    }
}
