import ArgumentParser
import Foundation
import RolloutConfig
import RolloutJournal

/// `rollctl rollout notices ID`: what was sent to whom and when, from the journal's outbox.
struct RolloutNotices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notices",
        abstract: "Customer notices of a rollout: to whom, which hosts, status, server reply, Message-ID.",
        discussion: """
        Status: sent (the server accepted; its reply is shown), pending (journaled, not known \
        delivered: the next run resends it with the same Message-ID), failed (blocks the wave; the \
        next run retries), skipped (not delivered, reported; on_failure: skip). "resent" marks a \
        notice that was pending when a run stopped and was sent again.
        """)
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Option(help: "Only this wave.") var wave: Int?
    @Flag(help: "One JSON document.") var json = false
    @Flag(help: "Also print each notice's subject, Message-ID, hosts and last error.") var verbose = false

    func run() async throws {
        let (j, _) = try journal.rollout(id)
        let rows = try j.notices(id).filter { wave == nil || $0.wave == wave }
        let c = Console.shared
        if json {
            c.out(JSONLine.encode([
                "rollout": id,
                "notices": rows.map { n -> [String: Any] in
                    var o: [String: Any] = [
                        "wave": n.wave, "kind": n.kind.rawValue, "customer_id": n.customerID, "customer_name": n.customerName,
                        "channel": n.channel.rawValue, "recipient": n.recipient, "message_id": n.messageID, "hosts": n.hosts,
                        "subject": n.subject, "status": n.status.rawValue, "attempts": n.attempts,
                        "resent_after_crash": n.resentAfterCrash, "created_at": n.createdAt, "updated_at": n.updatedAt,
                    ]
                    o["reply"] = n.reply; o["last_error"] = n.lastError; o["sent_at"] = n.sentAt
                    return o
                },
            ]))
            return
        }
        if rows.isEmpty {
            c.out("no customer notices recorded for rollout \(id)\(wave.map { " in wave \($0)" } ?? "")")
            return
        }
        var table = Table(header: ["WAVE", "KIND", "CUSTOMER", "TO", "HOSTS", "STATUS", "TRIES", "SENT", "SERVER REPLY / LAST ERROR"])
        for n in rows {
            let status: String = switch n.status {
            case .sent: c.paint(n.resentAfterCrash ? "sent (resent)" : "sent", .green)
            case .pending: c.paint("pending", .yellow)
            case .queued: c.paint("queued", .yellow)
            case .failed: c.paint("failed", .red)
            case .skipped: c.paint("skipped", .yellow)
            }
            table.rows.append(["\(n.wave)", n.kind.rawValue, "\(n.customerID) \(n.customerName)", n.recipient, "\(n.hosts.count)", status,
                               "\(n.attempts)", n.sentAt ?? "-", n.reply ?? n.lastError ?? "-"])
        }
        table.render().forEach { c.out($0) }
        if verbose {
            for n in rows {
                c.out("")
                c.out(c.paint("wave \(n.wave) \(n.kind) → \(n.customerID) <\(n.recipient)>", .bold))
                c.out("  subject:    \(n.subject)")
                c.out("  message-id: \(n.messageID)")
                c.out("  hosts:      \(n.hosts.joined(separator: ", "))")
                if let e = n.lastError { c.out("  last error: \(e)") }
            }
        }
        var counts: [NoticeStatus: Int] = [:]
        for n in rows { counts[n.status, default: 0] += 1 }
        c.out("")
        c.out(NoticeStatus.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }.joined(separator: ", ")
              + ", \(rows.filter(\.resentAfterCrash).count) resent after a stop")
    }
}
