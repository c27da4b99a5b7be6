import ArgumentParser
import Foundation
import RolloutConfig
import RolloutJournal

struct JournalGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Create or update the journal's schema, or move a journal (SQLite into PostgreSQL).",
        subcommands: [JournalMigrate.self, JournalCopy.self]
    )
}

/// `rollctl journal migrate`: the schema brought up to this rollctl's (every command does it on
/// opening; this does only that, e.g. to prepare a PostgreSQL database for a team).
struct JournalMigrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create the journal's tables, or bring them up to this rollctl's schema (each migration once, also with several rollctl starting at once).",
        discussion: "Example: rollctl journal migrate --journal postgres://rollctl@db.example:5432/rollctl?sslmode=verify-full"
    )

    @OptionGroup var journal: JournalOption

    func run() async throws {
        let j = try journal.open()
        let applied = try j.schemaVersions()
        Console.shared.out("journal \(j.path): schema up to date (\(applied.count) migrations, the latest \(applied.last ?? "none"))")
    }
}

/// `rollctl journal copy FROM TO`: every table of one journal into another, empty one.
struct JournalCopy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy every rollout, event, lock, notice and record of one journal into another, empty one (one transaction on the target).",
        discussion: """
        Moves a SQLite journal into PostgreSQL: rollctl journal copy ~/.local/state/rollctl/journal.sqlite postgres://rollctl@db.example/rollctl?sslmode=verify-full
        The target's tables are created if needed and must hold nothing; the journal keeps its identity (the hosts' leases name it). \
        Refused while a rollout of FROM is being driven. Afterwards point --journal or ROLLCTL_JOURNAL at TO.
        """
    )

    @Argument(help: ArgumentHelp("The journal to copy: a SQLite file or a postgres:// URL.", valueName: "from"))
    var from: String

    @Argument(help: ArgumentHelp("The journal to fill: a postgres:// URL or a SQLite file; must be empty.", valueName: "to"))
    var to: String

    @Flag(help: "Allow a PostgreSQL journal on another machine without TLS; also ROLLCTL_JOURNAL_ALLOW_PLAINTEXT=1.")
    var journalAllowPlaintext = false

    func run() async throws {
        let source = try JournalOption.location(from, allowPlaintext: journalAllowPlaintext)
        let target = try JournalOption.location(to, allowPlaintext: journalAllowPlaintext)
        if source == target { throw InputError(file: to, "FROM and TO are the same journal", hint: "name another journal as TO") }
        if case .sqlite(let path) = source, !FileManager.default.fileExists(atPath: path) {
            throw InputError(file: path, "no such journal", hint: "give the path of an existing SQLite journal")
        }
        let (a, b) = (try JournalOption.open(source), try JournalOption.open(target))
        let counts: [(table: String, rows: Int)]
        do { counts = try a.copy(into: b) } catch let e as Journal.CopyRefused {
            throw InputError(file: to, e.message, hint: e.hint)
        }
        let total = counts.reduce(0) { $0 + $1.rows }
        Console.shared.out("copied \(total) rows from \(a.path) to \(b.path): " + counts.map { "\($0.table) \($0.rows)" }.joined(separator: ", "))
    }
}
