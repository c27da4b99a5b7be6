import ArgumentParser
import Foundation
import Basics
import RolloutJournal
import Engine

/// `rollctl rollout report ID --html FILE` / `--json`.
struct RolloutReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "A rollout's report: one self-contained HTML file with charts (--html), or the same data as JSON (--json).",
        discussion: """
        The HTML file has no scripts, fonts or links to fetch: mail it around. It shows who ran which plan, a \
        timeline of every host's states, per wave each host's SUnreclaim over the soak with the limit, the \
        gate's fitted slope and the host's growth on its old kernel, test-site outcomes by class, OOM kills, \
        the verdicts with their evidence, and the notices sent. It reads the journal only: a running rollout's \
        report shows it as far as it got.
        """
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (several: one page with each, e.g. a halted rollout beside the one that fixed it).") var ids: [String]
    @Option(help: ArgumentHelp("Write the HTML report to this file.", valueName: "file")) var html: String?
    @Flag(help: "Print the report's data: one JSON document per rollout.") var json = false

    func validate() throws {
        if html == nil && !json { throw ValidationError("choose --html FILE (a page with charts) or --json (the data)") }
    }

    func run() async throws {
        var reports: [RolloutReport] = []
        for id in ids {
            let (j, _) = try journal.rollout(id)
            reports.append(try RolloutReport.build(journal: j, rolloutID: id))
        }
        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")
            for report in reports { Console.shared.out(String(decoding: try e.encode(report), as: UTF8.self)) }
        }
        if let html {
            do {
                try Data(ReportHTML.render(reports).utf8).write(to: URL(fileURLWithPath: html), options: .atomic)
            } catch {
                Console.shared.error("cannot write \(html): \(error.localizedDescription)")
                throw ExitCode(ExitStatus.badInput)
            }
            if !json { Console.shared.out("report of \(ids.joined(separator: ", ")) written to \(html)") }
        }
    }
}
