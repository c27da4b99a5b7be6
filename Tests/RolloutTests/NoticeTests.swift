import Foundation
import Testing
import PostgresTesting
import RolloutTesting
import SSHTesting
@testable import Basics
@testable import NetIO
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Notices

// MARK: - pure pieces: DATA framing, replies, headers, encodings, Message-IDs

@Suite struct NoticeEncodingTests {
    @Test func dataIsDotStuffedWithCRLFAndTerminated() {
        let payload = String(decoding: SMTPClient.dataPayload("Subject: x\n\n.hidden\nline\r\n..two\rlast"), as: UTF8.self)
        #expect(payload == "Subject: x\r\n\r\n..hidden\r\nline\r\n...two\r\nlast\r\n.\r\n")
        #expect(String(decoding: SMTPClient.dataPayload("a\r\n"), as: UTF8.self) == "a\r\n.\r\n")
        #expect(String(decoding: SMTPClient.dataPayload("."), as: UTF8.self) == "..\r\n.\r\n")
    }

    @Test func multiLineRepliesAreJoinedAndCodesChecked() throws {
        func read(_ text: String) -> SMTPReplyReader.Progress {
            var r = SMTPReplyReader()
            return r.feed(Array(text.utf8))
        }
        #expect(read("250-sink.test\r\n250-SIZE 1000\r\n") == .needMore)
        let text = "250-sink.test\r\n250-SIZE 1000\r\n250 HELP\r\n"
        #expect(read(text + "354 next") == .complete(SMTPReply(code: 250, lines: ["sink.test", "SIZE 1000", "HELP"]), used: text.utf8.count))
        guard case .complete(let one, _) = read("250 2.0.0 Ok: queued as 0001\r\n") else { Issue.record("no reply"); return }
        #expect(one.text == "250 2.0.0 Ok: queued as 0001")
        #expect(read("250-a\r\n251 b\r\n") == .malformed("reply lines with different codes (250, 251)"))
        #expect(read("hello\r\n") == .malformed("not an SMTP reply: 'hello'"))
    }

    @Test func quotedPrintableKeepsLinesShortAndEncodesNonASCII() {
        let qp = MailMessage.quotedPrintable(String(repeating: "a", count: 200) + "\nč = x \nend")
        let lines = qp.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 76 })
        #expect(qp.contains("=C4=8D =3D x=20\r\n"))
        #expect(qp.hasSuffix("end\r\n"))
    }

    @Test func subjectsAndNamesAreEncodedWordsWhenNotASCII() {
        let s = MailMessage.encodeHeaderText("Plánovaná údržba: 3 vaše servery se restartují – děkujeme za trpělivost")
        #expect(s.hasPrefix("=?UTF-8?B?"))
        #expect(s.components(separatedBy: "\r\n ").allSatisfy { $0.count <= 75 })
        #expect(MailMessage.encodeHeaderText("plain ascii") == "plain ascii")
        #expect(MailMessage.mailbox("Novak, \"Anna\"", "a@x.org") == "\"Novak, \\\"Anna\\\"\" <a@x.org>")
        #expect(MailMessage.oneLine("evil\r\nBcc: x@y.org") == "evil  Bcc: x@y.org")
    }

    @Test func messageIDsAreStableAndValid() {
        let a = NoticeSender.messageID(rollout: "r-20261129", wave: 2, kind: .rolledBack, customer: "c.0042 x", domain: "example.org")
        #expect(a == "<rollctl.r-20261129.2.rolled_back.c=2E0042=20x@example.org>")
        #expect(a == NoticeSender.messageID(rollout: "r-20261129", wave: 2, kind: .rolledBack, customer: "c.0042 x", domain: "example.org"))
        #expect(NoticeSender.messageID(rollout: "r", wave: 1, kind: .done, customer: "c1", domain: "bad domain") == "<rollctl.r.1.done.c1@rollctl.invalid>")
    }

    @Test func webhookURLs() throws {
        // http or https with a host; the one client (WebAPI.WebClient) checks them.
        for good in ["http://127.0.0.1:8080/hook?x=1", "http://[::1]/", "http://status.example.org", "https://status.example.org/x"] {
            #expect(try Webhook.endpoint(good) == good)
        }
        // Refusals are permanent config failures; credentials never reach a message.
        for (bad, message) in [("ftp://status.example.org/", "is not an http:// or https:// URL"),
                               ("http://u:p@status.example.org/", "\"http://…@status.example.org/\" carries credentials"),
                               ("http:///x", "has no host")] {
            let e = #expect(throws: NoticeDeliveryError.self, "\(bad)") { try Webhook.endpoint(bad) }
            #expect(e?.stage == .config && e?.permanent == true && e?.message.contains(message) == true, "\(bad): \(String(describing: e))")
            #expect(e?.message.contains("u:p") != true)
        }
    }

    @Test func credentialsComeFromTheEnvironmentOrAFileAndAreNeverPrinted() throws {
        let c = try SMTPCredentials.resolve(username: "u", passwordEnv: "PW", passwordFile: nil, environment: ["PW": "s3cret"])
        #expect(c.password == "s3cret" && !"\(c)".contains("s3cret"))
        let file = NSTemporaryDirectory() + "rollctl-pw-\(UUID().uuidString)"
        try "fromfile\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try SMTPCredentials.resolve(username: "u", passwordEnv: nil, passwordFile: file, environment: [:]).password == "fromfile")
        #expect(throws: NoticeDeliveryError.self) { try SMTPCredentials.resolve(username: "u", passwordEnv: "PW", passwordFile: nil, environment: [:]) }
    }
}

// MARK: - against real servers on loopback

/// A journal with one rollout: wave 1 = web-1…web-3, wave 2 = web-4.
/// Customers: anna on web-1, web-2, web-3 (and web-4); bob on web-2; cyril on web-4 only.
final class NoticeFixture: Sendable {
    let dir: String
    /// Removed at deinit when this fixture created it.
    private let owned: Bool
    let journal: Journal
    let customers: Customers
    let rolloutID = "r-notice-test"

    /// The journal's database when on PostgreSQL.
    private let postgres: (server: TestPostgres, database: String)?

    /// A new fixture, or (with `dir`) the one another process created there. `backend`: where
    /// the journal is (a SQLite file in `dir`, or a database of its own on a real PostgreSQL).
    init(_ backend: JournalBackendKind = .sqlite, dir existing: String? = nil) throws {
        let dir = existing ?? NSTemporaryDirectory() + "rollctl-notices-\(UUID().uuidString.prefix(8))"
        self.dir = dir
        owned = existing == nil
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        switch backend {
        case .sqlite:
            postgres = nil
            journal = try Journal(path: dir + "/journal.sqlite")
        case .postgres:
            let server = try TestPostgres.shared()
            let db = try server.createDatabase()
            postgres = (server, db)
            journal = try Journal(location: JournalLocation.parse(server.url(db)))
        }
        let anna = Customer(id: "c0042", name: "Anna Nováková", email: "anna@example.org")
        let bob = Customer(id: "c0007", name: "Bob Smith", email: "bob@example.net")
        let cyril = Customer(id: "c0100", name: "Cyril", email: "cyril@example.com")
        customers = Customers(path: dir + "/customers.csv", rows: [
            ("web-1", anna), ("web-2", anna), ("web-2", bob), ("web-3", anna), ("web-4", anna), ("web-4", cyril),
        ])
        if existing != nil { return }
        let plan = Plan(name: "socket-fix", path: dir + "/plan.yaml", text: "name: socket-fix", kernel: KernelSpec(release: "6.1.0-99-fixed"),
                        inventoryPath: dir + "/inventory.yaml")
        let hosts: [(name: String, address: String, lockKey: String, wave: Int?, batch: Int?, state: HostState, reason: String?)] =
            (1...4).map { i in ("web-\(i)", "10.0.0.\(i)", "\(dir)/web-\(i)", i <= 3 ? 1 : 2, 1, .pending, nil) }
        try journal.createRollout(id: rolloutID, plan: plan, planHash: "h", hosts: hosts, waves: 2)
        try journal.executeRaw("UPDATE host SET release_before = '6.1.0-13-leaky'")
    }

    deinit {
        if owned { try? FileManager.default.removeItem(atPath: dir) }
        if let postgres { _ = try? postgres.server.psql("postgres", "DROP DATABASE IF EXISTS \(postgres.database) WITH (FORCE)") }
    }

    func sender(port: Int, block: Bool = true, leadTime: Duration = .zero, username: String? = nil, environment: [String: String] = [:],
                attempts: Int = 3, timeout: Duration = .seconds(10), starttls: Bool = false, templateDir: String? = nil) -> NoticeSender {
        let spec = NotifySpec(customersPath: customers.path,
                              channel: .smtp(host: "127.0.0.1", port: port, from: "rollctl@hosting.example", starttls: starttls,
                                             username: username, passwordEnv: username == nil ? nil : "SMTP_PASSWORD", passwordFile: nil),
                              leadTime: leadTime, company: "Example Hosting", templateDir: templateDir, blockOnFailure: block)
        return NoticeSender(spec: spec, customers: customers, journal: journal, rolloutID: rolloutID, planName: "socket-fix",
                            release: "6.1.0-99-fixed", retry: .init(attempts: attempts, firstDelay: .milliseconds(50), maxDelay: .milliseconds(200)),
                            timeout: timeout, environment: environment)
    }

    func webhookSender(url: String, block: Bool = true, caFile: String? = nil) -> NoticeSender {
        let spec = NotifySpec(customersPath: customers.path, channel: .webhook(url: url), company: "Example Hosting", blockOnFailure: block)
        var s = NoticeSender(spec: spec, customers: customers, journal: journal, rolloutID: rolloutID, planName: "socket-fix",
                             release: "6.1.0-99-fixed", retry: .init(attempts: 3, firstDelay: .milliseconds(50)), timeout: .seconds(10))
        s.tlsCAFile = caFile
        return s
    }

    func notices() throws -> [Journal.NoticeRow] { try journal.notices(rolloutID) }

    let wave1 = ["web-1", "web-2", "web-3"]
    let start = Date(timeIntervalSince1970: 1_795_960_800) // Sun 29 Nov 2026 14:00 UTC
}

@Suite(.serialized) struct NoticeSMTPTests {
    @Test(arguments: JournalBackendKind.allCases) func oneMaintenanceNoticePerCustomerListingAllTheirHostsInTheWave(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let earliest = try await f.sender(port: sink.port, leadTime: .seconds(3600))
            .maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start.addingTimeInterval(7200))
        let mails = try sink.mails()
        #expect(mails.count == 2)
        let anna = try #require(mails.first { $0.rcpt_tos == ["anna@example.org"] })
        let bob = try #require(mails.first { $0.rcpt_tos == ["bob@example.net"] })
        #expect(anna.mail_from == "rollctl@hosting.example")
        #expect(anna.to == "Anna Nováková <anna@example.org>")
        #expect(anna.from == "Example Hosting <rollctl@hosting.example>")
        #expect(anna.subject == "Planned maintenance: 3 of your servers will restart")
        #expect(bob.subject == "Planned maintenance: 1 of your servers will restart")
        #expect(anna.body.contains("Hello Anna Nováková,"))
        #expect(anna.body.contains("  - web-1\n  - web-2\n  - web-3\n"))
        #expect(!anna.body.contains("web-4"))
        #expect(anna.body.contains("Sun 29 Nov 2026 14:00 UTC") && anna.body.contains("Sun 29 Nov 2026 16:00 UTC"))
        #expect(anna.body.contains("6.1.0-99-fixed"))
        #expect(bob.body.contains("  - web-2\n") && !bob.body.contains("web-1"))
        #expect(anna.content_type == "text/plain" && anna.charset == "utf-8")
        #expect(anna.raw_max_line <= 78)
        #expect(anna.message_id == "<rollctl.r-notice-test.1.maintenance.c0042@hosting.example>")
        // One SMTP session carries the batch.
        #expect(anna.connection == bob.connection)

        let rows = try f.notices()
        #expect(rows.count == 2 && rows.allSatisfy { $0.status == .sent && $0.attempts == 1 && !$0.resentAfterCrash })
        let annaRow = try #require(rows.first { $0.customerID == "c0042" })
        #expect(annaRow.messageID == anna.message_id)
        #expect(annaRow.hosts == ["web-1", "web-2", "web-3"])
        #expect(annaRow.reply?.hasPrefix("250 2.0.0 Ok: queued as ") == true)
        // Lead time: from the journal's send time.
        let sentAt = try #require(rows.compactMap { $0.sentAt.flatMap(TimeText.parse) }.max())
        #expect(abs(earliest.timeIntervalSince(sentAt) - 3600) < 0.01)
    }

    @Test(arguments: JournalBackendKind.allCases) func aResumedRunDoesNotSendASentNoticeAgainAndKeepsTheLeadTime(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let first = try await f.sender(port: sink.port, leadTime: .seconds(600)).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        try await Task.sleep(for: .milliseconds(20))
        // A new process (new sender) resuming the same wave.
        let again = try await f.sender(port: sink.port, leadTime: .seconds(600)).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2)
        #expect(again == first)
        #expect(try f.sender(port: sink.port, leadTime: .seconds(600)).earliestReboot(wave: 1) == first)
        #expect(try f.sender(port: sink.port, leadTime: .seconds(600)).earliestReboot(wave: 2).timeIntervalSinceNow < 1)
        #expect(try f.notices().allSatisfy { $0.attempts == 1 })
    }

    @Test(arguments: JournalBackendKind.allCases) func aPendingNoticeAtResumeIsSentOnceWithTheSameMessageIDAndMarked(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        // Run 1 sent both, then "died" before journaling Anna's as sent: her row is back to pending.
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        try f.journal.executeRaw("UPDATE notice SET status = 'pending', sent_at = NULL, reply = NULL WHERE customer_id = 'c0042'")
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        #expect(mails.count == 3)
        let toAnna = mails.filter { $0.rcpt_tos == ["anna@example.org"] }
        #expect(toAnna.count == 2 && Set(toAnna.map(\.message_id)).count == 1)
        #expect(mails.filter { $0.rcpt_tos == ["bob@example.net"] }.count == 1)
        // The resend is byte-for-byte the journaled payload.
        #expect(try sink.raw("0001") == sink.raw("0003") || sink.raw("0002") == sink.raw("0003"))
        let anna = try #require(try f.notices().first { $0.customerID == "c0042" })
        #expect(anna.status == .sent && anna.resentAfterCrash && anna.attempts == 2)
        #expect(try f.journal.events(f.rolloutID).contains { $0.message.contains("was pending when the last run stopped") })
    }

    @Test(arguments: JournalBackendKind.allCases) func killedBeforeSendingIntentOnlyIsDeliveredExactlyOnce(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        // Run 1 journaled Anna's intent and died before connecting.
        let s = f.sender(port: sink.port)
        let texts = try s.templates(.maintenance)
        let hostRows = try f.journal.noticeHosts(f.rolloutID, named: f.wave1)
        let row = try s.render(.maintenance, wave: 1, customer: f.customers.byID["c0042"]!, hosts: f.wave1, hostRows: hostRows,
                           window: MaintenanceWindow(start: f.start, end: f.start), texts: texts)
        try f.journal.queueNotices([row])
        try f.journal.markNoticeSending(row)
        try await s.maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        #expect(mails.count == 2)
        #expect(mails.filter { $0.rcpt_tos == ["anna@example.org"] }.map(\.message_id) == [row.messageID])
    }

    @Test func serverAcceptedButNeverAnsweredResendsOnceWithTheSameMessageID() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(hangFirst: 1)
        defer { sink.stop() }
        try await f.sender(port: sink.port, timeout: .seconds(1)).maintenance(wave: 1, hosts: ["web-2"], windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        // Bob (c0007) goes first: stored by the server, no answer, resent on a new connection.
        let bob = mails.filter { $0.rcpt_tos == ["bob@example.net"] }
        #expect(bob.count == 2 && bob[0].message_id == bob[1].message_id)
        #expect(mails.filter { $0.rcpt_tos == ["anna@example.org"] }.count == 1)
        let row = try #require(try f.notices().first { $0.customerID == "c0007" })
        #expect(row.status == .sent && row.attempts == 2)
        #expect(row.lastError?.contains("end of data") == true)
    }

    @Test(arguments: JournalBackendKind.allCases) func serverDownRetriesWithBackoffThenBlocks(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let port = closedLoopbackPort()
        let clock = ContinuousClock()
        let began = clock.now
        await #expect(throws: NoticeError.self) {
            try await f.sender(port: port, attempts: 3).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        }
        // 50 ms + 100 ms of backoff at least.
        #expect(clock.now - began >= .milliseconds(150))
        let rows = try f.notices()
        // Blocked at the first customer (c0007); the rest stay queued, not tried.
        #expect(rows.map(\.status) == [.failed, .queued])
        #expect(rows[0].status == .failed && rows[0].attempts == 3 && rows[0].lastError?.contains("connecting") == true)
        #expect(rows[1].attempts == 0)
        let events = try f.journal.events(f.rolloutID).map(\.message)
        #expect(events.contains { $0.contains("attempt 1/3 failed") && $0.contains("retrying in 50ms") })
        #expect(events.contains { $0.contains("attempt 3/3 failed") && $0.contains("giving up") })

        // The server comes back; the resumed run sends everything, the failed one with its Message-ID.
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2)
        #expect(try f.notices().allSatisfy { $0.status == .sent })
        #expect(try sink.mails().contains { $0.message_id == rows[0].messageID })
    }

    @Test(arguments: JournalBackendKind.allCases) func serverDownWithSkipPolicyReportsAndGoesOn(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let lines = LogCapture()
        var s = f.sender(port: closedLoopbackPort(), block: false, attempts: 3)
        s = NoticeSender(spec: s.spec, customers: s.customers, journal: s.journal, rolloutID: s.rolloutID, planName: s.planName, release: s.release,
                         retry: s.retry, timeout: s.timeout, environment: [:], logger: lines.logger())
        let earliest = try await s.maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(earliest.timeIntervalSinceNow < 1)
        let rows = try f.notices()
        #expect(rows.count == 2 && rows.allSatisfy { $0.status == .skipped })
        // The first notice used every attempt; once the server is known down, the next gets one.
        #expect(rows.map(\.attempts).sorted() == [1, 3])
        #expect(lines.lines.contains { $0.message.contains("skipped (on_failure: skip)") && $0.level == .warning })
        #expect(lines.lines.contains { $0.message.hasPrefix("SMTP: ") == false && $0.message.contains("attempt") })
        // Skipped notices are not retried by a resumed run.
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        try await f.sender(port: sink.port, block: false).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().isEmpty)
    }

    @Test func aGreylisted450IsRetriedAfterBackoff() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(greylistFirst: 2)
        defer { sink.stop() }
        try await f.sender(port: sink.port, attempts: 4).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2)
        let rows = try f.notices()
        #expect(rows.allSatisfy { $0.status == .sent })
        let bob = try #require(rows.first { $0.customerID == "c0007" })
        #expect(bob.attempts == 3 && bob.lastError?.contains("450 4.2.0") == true)
        #expect(rows.first { $0.customerID == "c0042" }?.attempts == 1)
    }

    @Test func aRejectedRecipientIsPermanentNotRetriedAndBlocks() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(reject: ["bob@example.net"])
        defer { sink.stop() }
        let error = await #expect(throws: NoticeError.self) {
            try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        }
        #expect(error?.description.contains("550 5.1.1") == true)
        #expect(try sink.mails().map(\.rcpt_tos) == [["anna@example.org"]])
        let bob = try #require(try f.notices().first { $0.customerID == "c0007" })
        #expect(bob.status == .failed && bob.attempts == 1)
    }

    @Test func authPlainWithThePasswordFromTheEnvironmentNeverJournaled() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(auth: "rollctl:pa55-word-xyz")
        defer { sink.stop() }
        try await f.sender(port: sink.port, username: "rollctl", environment: ["SMTP_PASSWORD": "pa55-word-xyz"])
            .maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2 && sink.mails().allSatisfy(\.authenticated))
        // Nowhere in the journal, not even base64-encoded.
        let dump = try Data(contentsOf: URL(fileURLWithPath: f.journal.path)) + ((try? Data(contentsOf: URL(fileURLWithPath: f.journal.path + "-wal"))) ?? Data())
        for needle in ["pa55-word-xyz", Data("\0rollctl\0pa55-word-xyz".utf8).base64EncodedString()] {
            #expect(dump.range(of: Data(needle.utf8)) == nil)
        }

        let f2 = try NoticeFixture()
        let error = await #expect(throws: NoticeError.self) {
            try await f2.sender(port: sink.port, username: "rollctl", environment: ["SMTP_PASSWORD": "wrong"])
                .maintenance(wave: 1, hosts: f2.wave1, windowStart: f2.start, windowEnd: f2.start)
        }
        #expect(error?.description.contains("AUTH") == true)
        #expect(!(error?.description.contains("wrong") ?? true))
        #expect(try f2.notices().first?.attempts == 1)
    }

    @Test func starttlsThenAuthOverTheSystemOpenSSL() async throws {
        let f = try NoticeFixture()
        let cert = try TestCertificate()
        let sink = try LoopbackSink.smtp(auth: "rollctl:tls-pass", tls: cert)
        defer { sink.stop() }
        var s = f.sender(port: sink.port, username: "rollctl", environment: ["SMTP_PASSWORD": "tls-pass"], starttls: true)
        s.tlsCAFile = cert.certPath
        try s.preflight()
        try await s.maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        #expect(mails.count == 2 && mails.allSatisfy { $0.tls && $0.authenticated })
        #expect(try f.notices().allSatisfy { $0.status == .sent && $0.attempts == 1 })
    }

    @Test func starttlsRefusesAnUntrustedCertificateWithoutRetrying() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(tls: try TestCertificate())
        defer { sink.stop() }
        // The system trust store does not know the test's self-signed certificate.
        let error = await #expect(throws: NoticeError.self) {
            try await f.sender(port: sink.port, starttls: true).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        }
        #expect(error?.description.contains("certificate verify failed") == true)
        #expect(try sink.mails().isEmpty)
        #expect(try f.notices().allSatisfy { $0.status == .failed && $0.attempts == 1 })
    }

    @Test func starttlsNeverFallsBackToPlaintext() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let error = await #expect(throws: NoticeError.self) {
            try await f.sender(port: sink.port, starttls: true).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        }
        #expect(error?.description.contains("does not offer STARTTLS") == true)
        #expect(try sink.mails().isEmpty)
    }

    @Test func authLoginWhenPlainIsNotOffered() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(auth: "rollctl:login-pass", loginOnly: true)
        defer { sink.stop() }
        try await f.sender(port: sink.port, username: "rollctl", environment: ["SMTP_PASSWORD": "login-pass"])
            .maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2 && sink.mails().allSatisfy(\.authenticated))
    }

    @Test(arguments: JournalBackendKind.allCases) func doneAndRolledBackNoticesUseTheirTemplates(_ backend: JournalBackendKind) async throws {
        let f = try NoticeFixture(backend)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("plans/templates").path
        let s = f.sender(port: sink.port, templateDir: templates)
        try s.preflight()
        try await s.done(wave: 1, hosts: f.wave1)
        try await s.rolledBack(wave: 2, hosts: ["web-4"])
        try await s.rolledBack(wave: 2, hosts: ["web-4"])
        let mails = try sink.mails()
        #expect(mails.count == 4)
        let done = try #require(mails.first { $0.message_id.contains(".1.done.c0042@") })
        #expect(done.subject == "Maintenance finished: your servers run the new kernel")
        #expect(done.body.contains("web-1 web-2 web-3 now run 6.1.0-99-fixed"))
        let back = try #require(mails.first { $0.message_id.contains(".2.rolled_back.c0100@") })
        #expect(back.subject == "Maintenance undone on 1 of your servers")
        #expect(back.body.contains("previous kernel (6.1.0-13-leaky)") && back.body.contains("  - web-4\n"))
        #expect(try f.notices().count == 4)
    }

    @Test func aNonASCIISubjectArrivesIntact() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let dir = f.dir + "/templates"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "Plánovaná údržba – {{host_count}} servery, {{customer_name}}, {{company}}".write(toFile: dir + "/maintenance.subject", atomically: true, encoding: .utf8)
        try "Dobrý den {{customer_name}},\n.\n{{#hosts}}{{name}} ({{address}})\n{{/hosts}}".write(toFile: dir + "/maintenance.body", atomically: true, encoding: .utf8)
        try await f.sender(port: sink.port, templateDir: dir).maintenance(wave: 1, hosts: ["web-1"], windowStart: f.start, windowEnd: f.start)
        let mail = try #require(try sink.mails().first)
        #expect(mail.subject == "Plánovaná údržba – 1 servery, Anna Nováková, Example Hosting")
        #expect(mail.body == "Dobrý den Anna Nováková,\n.\nweb-1 (10.0.0.1)\n")
    }

    @Test func anUnknownTemplateVariableIsAnErrorBeforeAnythingIsSent() async throws {
        let f = try NoticeFixture()
        let dir = f.dir + "/bad-templates"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "Hi {{customer_nmae}}".write(toFile: dir + "/maintenance.subject", atomically: true, encoding: .utf8)
        let s = f.sender(port: closedLoopbackPort(), templateDir: dir)
        #expect { try s.preflight() } throws: { "\($0)".contains("customer_nmae") && "\($0)".contains("customer_name") }
        await #expect(throws: InputErrors.self) { try await s.maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start) }
        #expect(try f.notices().isEmpty)
    }
}

@Suite(.serialized) struct NoticeWebhookTests {
    @Test func theJSONBodyMatchesTheDocumentedSchema() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.webhook(failFirst: 1)
        defer { sink.stop() }
        let url = "http://127.0.0.1:\(sink.port)/hooks/rollctl"
        try await f.webhookSender(url: url).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start.addingTimeInterval(3600))
        let items = sink.items()
        #expect(items.count == 2)
        let docs = try items.map { try sink.json($0) }
        let anna = try #require(docs.first { ($0["customer"] as? [String: Any])?["id"] as? String == "c0042" })
        #expect(Set(anna.keys) == ["schema", "kind", "message_id", "rollout", "plan", "wave", "kernel", "company", "customer", "hosts",
                                   "window_start", "window_end", "subject", "body", "created_at"])
        #expect(anna["schema"] as? String == "rollctl.notice/v1")
        #expect(anna["kind"] as? String == "maintenance")
        #expect(anna["message_id"] as? String == "<rollctl.r-notice-test.1.maintenance.c0042@127.0.0.1>")
        #expect(anna["rollout"] as? String == "r-notice-test" && anna["plan"] as? String == "socket-fix")
        #expect(anna["wave"] as? Int == 1 && anna["kernel"] as? String == "6.1.0-99-fixed" && anna["company"] as? String == "Example Hosting")
        #expect(anna["customer"] as? [String: String] == ["id": "c0042", "name": "Anna Nováková", "email": "anna@example.org"])
        #expect(anna["hosts"] as? [String] == ["web-1", "web-2", "web-3"])
        #expect(anna["window_start"] as? String == "2026-11-29T14:00:00Z" && anna["window_end"] as? String == "2026-11-29T15:00:00Z")
        #expect((anna["subject"] as? String)?.hasPrefix("Planned maintenance") == true)
        #expect((anna["body"] as? String)?.contains("  - web-3\n") == true)
        let headers = try sink.headers(items[0])
        #expect(headers["content-type"] == "application/json")
        #expect(headers[":path"] == "/hooks/rollctl")
        #expect(headers["idempotency-key"]?.hasPrefix("<rollctl.r-notice-test.1.maintenance.") == true)
        // The first POST got a 503 and was retried.
        let rows = try f.notices()
        #expect(rows.allSatisfy { $0.status == .sent && $0.channel == .webhook })
        #expect(rows.map(\.attempts).sorted() == [1, 2])
        #expect(rows.allSatisfy { $0.reply?.hasPrefix("HTTP/1.") == true && $0.reply?.contains(" 200") == true })
        // Resume: nothing again.
        try await f.webhookSender(url: url).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(sink.items().count == 2)
    }

    @Test func httpsWebhookWithAVerifiedCertificate() async throws {
        let f = try NoticeFixture()
        let cert = try TestCertificate()
        let sink = try LoopbackSink.webhook(tls: cert)
        defer { sink.stop() }
        let url = "https://localhost:\(sink.port)/hook"
        try await f.webhookSender(url: url, caFile: cert.certPath).done(wave: 1, hosts: f.wave1)
        #expect(sink.items().count == 2)
        #expect(try sink.json(sink.items()[0])["kind"] as? String == "done")
        // Untrusted (system store): refused, not retried.
        let f2 = try NoticeFixture()
        let error = await #expect(throws: NoticeError.self) { try await f2.webhookSender(url: url).done(wave: 1, hosts: f2.wave1) }
        #expect(error?.description.contains("certificate verify failed") == true)
        #expect(try f2.notices().allSatisfy { $0.attempts == 1 })
    }

    @Test func aTrustedCertificateForAnotherNameIsRefused() async throws {
        let cert = try TestCertificate(subjectAltName: "DNS:other.example")
        let sink = try LoopbackSink.webhook(tls: cert)
        defer { sink.stop() }
        for host in ["localhost", "127.0.0.1"] {
            let f = try NoticeFixture()
            let error = await #expect(throws: NoticeError.self) {
                try await f.webhookSender(url: "https://\(host):\(sink.port)/", caFile: cert.certPath).done(wave: 1, hosts: f.wave1)
            }
            #expect(error?.description.contains("certificate verify failed") == true, "\(host)")
        }
        #expect(sink.items().isEmpty)
    }

    @Test func aWebhookThatIsDownBlocksAfterRetries() async throws {
        let f = try NoticeFixture()
        await #expect(throws: NoticeError.self) {
            try await f.webhookSender(url: "http://127.0.0.1:\(closedLoopbackPort())/x").done(wave: 1, hosts: f.wave1)
        }
        let rows = try f.notices()
        #expect(rows.map(\.status) == [.failed, .queued] && rows[0].attempts == 3 && rows[1].attempts == 0)
    }
}

@Suite(.serialized) struct NoticeScaleTests {
    /// 500 customers on 50 hosts (each on 1 to 3 of them): exactly one message per
    /// customer, listing exactly their hosts, over one SMTP session.
    @Test func everyCustomerOnceWithExactlyTheirHosts() async throws {
        let dir = NSTemporaryDirectory() + "rollctl-notices-scale-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal(path: dir + "/journal.sqlite")
        let hostNames = (1...50).map { String(format: "web-%03d", $0) }
        let plan = Plan(name: "p", path: dir + "/p.yaml", text: "", kernel: KernelSpec(release: "6.1.0-99"), inventoryPath: dir + "/i.yaml")
        try journal.createRollout(id: "r-scale", plan: plan, planHash: "h",
                                  hosts: hostNames.map { ($0, "10.1.0.1", dir + $0, 1, 1, .pending, nil) }, waves: 1)
        var rows: [(host: String, customer: Customer)] = []
        var expected: [String: [String]] = [:]
        var rng = SystemRandomNumberGenerator()
        for i in 1...500 {
            let c = Customer(id: String(format: "c%04d", i), name: "Customer \(i)", email: "c\(i)@example.org")
            for h in hostNames.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)) {
                rows.append((h, c))
                expected[c.email, default: []].append(h)
            }
        }
        let customers = Customers(path: dir + "/c.csv", rows: rows)
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        let spec = NotifySpec(customersPath: customers.path, channel: .smtp(host: "127.0.0.1", port: sink.port, from: "r@example.net", starttls: false,
                                                                             username: nil, passwordEnv: nil, passwordFile: nil))
        let sender = NoticeSender(spec: spec, customers: customers, journal: journal, rolloutID: "r-scale", planName: "p", release: "6.1.0-99")
        let clock = ContinuousClock()
        let elapsed = try await clock.measure {
            try await sender.maintenance(wave: 1, hosts: hostNames, windowStart: Date(), windowEnd: Date())
        }
        print("notices: 500 customers on 50 hosts sent in \(elapsed)")
        let mails = try sink.mails()
        #expect(mails.count == 500)
        #expect(Set(mails.map(\.connection)).count == 1)
        for m in mails {
            let listed = m.body.split(separator: "\n").filter { $0.hasPrefix("  - ") }.map { String($0.dropFirst(4)) }
            #expect(listed.sorted() == expected[m.rcpt_tos[0]]?.sorted(), "\(m.rcpt_tos)")
        }
        #expect(try journal.notices("r-scale").allSatisfy { $0.status == .sent })
    }
}

// MARK: - kill -9 of a real process mid-send

/// The process that gets killed: this test binary again, running only
/// `NoticeCrashChild` (enabled by ROLLCTL_NOTICE_CHILD), sending wave 1's
/// maintenance notices of the fixture in ROLLCTL_NOTICE_DIR to ROLLCTL_NOTICE_PORT.
@Suite struct NoticeCrashChild {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["ROLLCTL_NOTICE_CHILD"] != nil))
    func sendThenWaitToBeKilled() async throws {
        let env = ProcessInfo.processInfo.environment
        let f = try NoticeFixture(dir: try #require(env["ROLLCTL_NOTICE_DIR"]))
        let port = try #require(env["ROLLCTL_NOTICE_PORT"].flatMap { Int($0) })
        var s = f.sender(port: port, attempts: 50, timeout: .seconds(120))
        s.retry = .init(attempts: 50, firstDelay: .milliseconds(200), maxDelay: .milliseconds(200))
        try await s.maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        try await Task.sleep(for: .seconds(120))
    }
}

@Suite(.serialized) struct NoticeKillTests {
    /// Starts the child on `port`, waits until `ready` holds, kills it with SIGKILL.
    func killChild(_ f: NoticeFixture, port: Int, until ready: () throws -> Bool) throws {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var env = ProcessInfo.processInfo.environment
        env["ROLLCTL_NOTICE_CHILD"] = "1"
        env["ROLLCTL_NOTICE_DIR"] = f.dir
        env["ROLLCTL_NOTICE_PORT"] = "\(port)"
        let pid = try Spawn.start(exe, ["--testing-library", "swift-testing", "--filter", "NoticeCrashChild"], environment: env,
                                  outputPath: f.dir + "/child.log")
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, Spawn.isRunning(pid), !((try? ready()) ?? false) { usleep(20_000) }
        let wasRunning = Spawn.isRunning(pid)
        kill(pid, SIGKILL)
        _ = Spawn.wait(pid)
        #expect(wasRunning, "the child ended before it could be killed: \((try? String(contentsOfFile: f.dir + "/child.log", encoding: .utf8)) ?? "")")
        #expect(try ready(), "the child never reached the point to kill it at")
    }

    @Test func killedAfterTheServerAcceptedResendsOnceWithTheSameMessageID() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp(hangFirst: 1)
        defer { sink.stop() }
        // Killed while the server holds Bob's message and has not answered.
        try killChild(f, port: sink.port) { sink.items().count == 1 }
        // Every customer's notice was queued first; Bob's was being sent.
        #expect(try f.notices().map { "\($0.customerID) \($0.status)" }.sorted() == ["c0007 pending", "c0042 queued"])
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        let bob = mails.filter { $0.rcpt_tos == ["bob@example.net"] }
        #expect(bob.count == 2 && bob[0].message_id == bob[1].message_id)
        #expect(mails.filter { $0.rcpt_tos == ["anna@example.org"] }.count == 1)
        let rows = try f.notices()
        #expect(rows.allSatisfy { $0.status == .sent })
        #expect(rows.first { $0.customerID == "c0007" }?.resentAfterCrash == true)
        #expect(rows.first { $0.customerID == "c0042" }?.resentAfterCrash == false)
    }

    @Test func killedBeforeTheServerSawItDeliversExactlyOnce() async throws {
        let f = try NoticeFixture()
        // The relay is down: the child journals Bob's intent and keeps retrying.
        try killChild(f, port: closedLoopbackPort()) { try f.notices().first.map { $0.attempts >= 2 } ?? false }
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        let mails = try sink.mails()
        let recipients: [String] = mails.flatMap(\.rcpt_tos).sorted()
        #expect(recipients == ["anna@example.org", "bob@example.net"])
        #expect(try f.notices().allSatisfy { $0.status == .sent })
    }

    @Test func killedAfterSentNothingIsSentAgain() async throws {
        let f = try NoticeFixture()
        let sink = try LoopbackSink.smtp()
        defer { sink.stop() }
        try killChild(f, port: sink.port) { try f.notices().count == 2 && f.notices().allSatisfy { $0.status == .sent } }
        try await f.sender(port: sink.port).maintenance(wave: 1, hosts: f.wave1, windowStart: f.start, windowEnd: f.start)
        #expect(try sink.mails().count == 2)
        #expect(try f.notices().allSatisfy { !$0.resentAfterCrash && $0.attempts == 1 })
    }
}
