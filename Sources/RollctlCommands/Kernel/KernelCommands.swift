import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import RolloutJournal

struct KernelGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Kernels known to be bad: list them, block one, unblock one.",
        discussion: """
        A release is recorded as known bad when a rollout halts because its gate failed or its hosts did not boot \
        it (another kernel came up, or none within the reboot timeout), with the rollout, the hosts and the halt's \
        reason. `plan validate` and `plan apply` refuse a plan targeting a known-bad release (exit 2) unless \
        --allow-known-bad.
        """,
        subcommands: [KernelList.self, KernelBlock.self, KernelUnblock.self]
    )
}

struct KernelList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The known-bad kernel releases, with their evidence.")
    @OptionGroup var journal: JournalOption
    @Flag(help: "One JSON line per release.") var json = false

    func run() async throws {
        let c = Console.shared
        let kernels = try journal.open().knownBadKernels()
        if json {
            for k in kernels {
                c.out(JSONLine.encode(["release": k.release, "source": k.source.rawValue, "rollout": k.rolloutID as Any, "hosts": k.hosts,
                                       "evidence": k.evidence, "recorded_at": k.recordedAt, "recorded_by": k.recordedBy]))
            }
            return
        }
        if kernels.isEmpty { c.out("no kernel is known bad"); return }
        for k in kernels { c.out("\(k.release): \(k.summary)") }
    }
}

struct KernelBlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "block", abstract: "Record a release as known bad, by hand.")
    @OptionGroup var journal: JournalOption
    @Argument(help: "The kernel release, as /proc/sys/kernel/osrelease shows it.") var release: String
    @Option(help: "Why (shown to whoever plans to roll it).") var reason: String

    func run() async throws {
        let j = try journal.open()
        guard !release.isEmpty, release.count <= 200, release.allSatisfy({ $0.isASCII && !$0.isWhitespace && !$0.isNewline }) else {
            throw InputError(file: "RELEASE", "'\(release.prefix(80).filter { $0.isASCII && !$0.isNewline })' is not a kernel release")
        }
        guard !reason.trimmed.isEmpty else { throw InputError(file: "--reason", "say why it is blocked") }
        if try j.recordKnownBad(release, source: .manual, rolloutID: nil, hosts: [], evidence: reason, by: Journal.whoami()) {
            Console.shared.out("kernel \(release) blocked: a plan targeting it is refused unless --allow-known-bad")
        } else {
            Console.shared.out("kernel \(release) is already known bad: \(try j.knownBad(release)?.summary ?? "")")
        }
    }
}

struct KernelUnblock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unblock", abstract: "Forget that a release is known bad.")
    @OptionGroup var journal: JournalOption
    @Argument(help: "The kernel release.") var release: String

    func run() async throws {
        if try journal.open().unblockKernel(release) {
            Console.shared.out("kernel \(release) unblocked")
        } else {
            throw InputError(file: "RELEASE", "kernel \(release) is not known bad", hint: "rollctl kernel list")
        }
    }
}

/// `plan validate` and `plan apply`: a plan targeting a known-bad release is bad input, with the
/// evidence. `existingOnly`: look only when a SQLite journal's file exists (validate and the
/// dry-run create none); a PostgreSQL journal is always asked (a team's known-bad kernels are there).
enum KnownBadCheck {
    static func refuse(_ plan: RolloutConfig.Plan, journal: JournalOption, allowed: Bool, existingOnly: Bool) throws {
        let location = try journal.location()
        if existingOnly, case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) { return }
        guard let bad = try JournalOption.open(location).knownBad(plan.kernel.release) else { return }
        if allowed {
            Console.shared.warn("kernel \(plan.kernel.release) is known bad (\(bad.summary)); going on: --allow-known-bad")
            return
        }
        let (line, column) = PlanLines(text: plan.text).position(of: "kernel.release")
        throw InputErrors([InputError(file: plan.path, line: line, column: column, "kernel \(plan.kernel.release) is known bad: \(bad.summary)",
                                      hint: "roll a fixed release, or `rollctl kernel unblock \(plan.kernel.release)`, or --allow-known-bad")])
    }
}
