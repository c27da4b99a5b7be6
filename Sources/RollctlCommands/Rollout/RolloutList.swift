import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

struct RolloutList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List rollouts, newest first.")
    @OptionGroup var journal: JournalOption
    @Flag(help: "JSON lines.") var json = false

    func run() async throws {
        let j = try journal.open()
        let c = Console.shared
        var table = Table(header: ["ID", "STATE", "PLAN", "KERNEL", "HOSTS", "STARTED", "BY", "DRIVEN BY"])
        for r in try j.rollouts() {
            let hosts = try j.hosts(r.id)
            let done = hosts.filter { $0.state == .committed }.count
            let inWaves = hosts.filter { $0.wave != nil }.count
            // Who drives it now (a live lease: on a shared journal, possibly another machine).
            let driver = r.lease.flatMap { $0.isLive() ? $0 : nil }
            if json {
                let driven: Any = driver.map { ["host": $0.holder.host, "pid": Int($0.holder.pid), "heartbeat": $0.heartbeat] as [String: Any] } ?? NSNull()
                c.out(JSONLine.encode(["id": r.id, "state": r.state.rawValue, "plan": r.planName, "release": r.targetRelease,
                                       "hosts": inWaves, "committed": done, "started_at": r.startedAt, "started_by": r.startedBy,
                                       "driver": driven]))
            } else {
                table.rows.append([r.id, r.state.rawValue, r.planName, r.targetRelease, "\(done)/\(inWaves) committed", r.startedAt, r.startedBy,
                                   driver.map { "\($0.holder)" } ?? "-"])
            }
        }
        if !json { table.render().forEach(c.out) }
    }
}
