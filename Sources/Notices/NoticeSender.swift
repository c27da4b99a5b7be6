import Foundation
import Logging
import Basics
import NetIO
import RolloutConfig
import RolloutJournal

/// Sends the customer notices of a rollout through the journal's outbox, so
/// that a crashed or interrupted run never tells a customer twice.
///
/// Per wave and kind (`maintenance`, `done`, `rolled_back`) each customer of the
/// wave's hosts gets one message listing all of their hosts in that wave. Every
/// notice is journaled `pending` (with its rendered payload and a stable
/// Message-ID) before it is sent, then `sent` with the server's reply. A run
/// that finds a notice `sent` skips it; one that finds it `pending` (the last run
/// died between the intent and the journal's "sent") sends the same bytes again,
/// with the same Message-ID, and marks the row `resent_after_crash`: receivers
/// that deduplicate by Message-ID drop the copy.
///
/// Failed sends are retried with exponential backoff. Then the plan decides:
/// `on_failure: block` throws `NoticeError` (the wave must not reboot; the next
/// run retries), `skip` journals the notice `skipped`, logs it, and goes on.
public struct NoticeSender: Sendable {
    /// How often and how patiently a notice is retried.
    public struct RetryPolicy: Sendable, Equatable {
        /// Attempts per notice, the first included.
        public var attempts: Int
        public var firstDelay: Duration
        public var maxDelay: Duration
        public init(attempts: Int = 4, firstDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(60)) {
            self.attempts = max(1, attempts)
            self.firstDelay = firstDelay
            self.maxDelay = maxDelay
        }
    }

    public let spec: NotifySpec
    public let customers: Customers
    public let journal: Journal
    public let rolloutID: String
    public let planName: String
    public let release: String
    public var retry: RetryPolicy
    /// SMTP reply timeout / HTTP timeout.
    public var timeout: Duration
    /// Trusted certificates (PEM) for SMTP STARTTLS and https webhooks; nil: the system's trust store.
    public var tlsCAFile: String?
    /// What was sent and what failed (`notice`, `warning`, `error`); the SMTP dialogue at `debug`.
    let logger: Logger
    let environment: [String: String]

    public init(spec: NotifySpec, customers: Customers, journal: Journal, rolloutID: String, planName: String, release: String,
                retry: RetryPolicy = RetryPolicy(), timeout: Duration = .seconds(60),
                environment: [String: String] = ProcessInfo.processInfo.environment,
                logger: Logger = Logger(label: "rollctl.notices", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.spec = spec
        self.customers = customers
        self.journal = journal
        self.rolloutID = rolloutID
        self.planName = planName
        self.release = release
        self.retry = retry
        self.timeout = timeout
        self.environment = environment
        self.logger = logger
    }

    /// The plan's notice settings, or nil when the plan sends none.
    public init?(plan: Plan, customers: Customers?, journal: Journal, rolloutID: String,
                 logger: Logger = Logger(label: "rollctl.notices", factory: { _ in SwiftLogNoOpLogHandler() })) {
        guard let spec = plan.notify, let customers else { return nil }
        self.init(spec: spec, customers: customers, journal: journal, rolloutID: rolloutID, planName: plan.name, release: plan.kernel.release, logger: logger)
    }

    // MARK: - the orchestrator's calls

    /// Before the wave's first reboot: queues and sends one maintenance notice per
    /// customer of `hosts` (all their hosts in this wave listed) stating `window(theirHosts)`,
    /// skipping any already sent (resume-safe); a notice that failed before is rendered
    /// anew (its window from now). Returns the earliest instant the wave's reboots may
    /// start: the last maintenance notice's journaled send time plus the plan's lead
    /// time (so it holds across a resume); now when no customer was told.
    @discardableResult
    public func maintenance(wave: Int, hosts: [String], window: @escaping @Sendable ([String]) -> MaintenanceWindow) async throws -> Date {
        try queueOwed(.maintenance, wave: wave, hosts: hosts, window: window, renderFailedAgain: true)
        try await deliverUndelivered(wave: wave, kinds: [.maintenance])
        return try earliestReboot(wave: wave)
    }

    /// `maintenance` with one window for every customer.
    @discardableResult
    public func maintenance(wave: Int, hosts: [String], windowStart: Date, windowEnd: Date) async throws -> Date {
        let w = MaintenanceWindow(start: windowStart, end: windowEnd)
        return try await maintenance(wave: wave, hosts: hosts, window: { _ in w })
    }

    /// A corrected window for customers whose first window can no longer hold (a resume
    /// long after, a slow batch): one `rescheduled` notice per customer per wave, never
    /// two. `only`: the customers (ids) to tell. Returns the earliest instant the reboots
    /// may go on: the last corrected notice's send time plus the lead time.
    public func reschedule(wave: Int, hosts: [String], only: Set<String>, window: @escaping @Sendable ([String]) -> MaintenanceWindow) async throws -> Date {
        try queueOwed(.rescheduled, wave: wave, hosts: hosts, only: only, window: window, renderFailedAgain: true)
        try await deliverUndelivered(wave: wave, kinds: [.rescheduled])
        return try earliestReboot(wave: wave, kind: .rescheduled)
    }

    /// The window each customer of the wave was last told (rescheduled over maintenance), by customer id.
    public func promisedWindows(wave: Int) throws -> [String: MaintenanceWindow] {
        var out: [String: MaintenanceWindow] = [:]
        let rows = try journal.notices(rolloutID).filter { $0.wave == wave && $0.status == .sent }
        for kind in [NoticeKind.maintenance, .rescheduled] {
            for r in rows where r.kind == kind {
                if let w = r.window { out[r.customerID] = w }
            }
        }
        return out
    }

    /// Customers (by id) who already had their one corrected notice for the wave.
    public func rescheduledCustomers(wave: Int) throws -> Set<String> {
        Set(try journal.notices(rolloutID).filter { $0.wave == wave && $0.kind == .rescheduled }.map(\.customerID))
    }

    /// The earliest instant the wave's reboots may start, from the journal alone
    /// (sends nothing): the last maintenance notice of the wave journaled `sent`,
    /// plus the lead time; now when none was sent. For a run resumed after its
    /// hosts were staged (past `notified`), so the lead time still holds.
    public func earliestReboot(wave: Int, kind: NoticeKind = .maintenance) throws -> Date {
        let sent = try journal.notices(rolloutID).filter { $0.wave == wave && $0.kind == kind && $0.status == .sent }
        guard let last = sent.compactMap({ $0.sentAt.flatMap(TimeText.parse) }).max() else { return journal.clock.now }
        return last.addingTimeInterval(spec.leadTime.seconds)
    }

    /// The notices a step owes for `hosts`, rendered now: one per customer who has no
    /// notice of this kind for this wave yet. The caller journals them (`queued`) in the
    /// same transaction as the step that owes them, then calls `deliverUndelivered`.
    /// `only`: just these customers (ids).
    public func owed(_ kind: NoticeKind, wave: Int, hosts: [String], only: Set<String>? = nil,
                     window: (@Sendable ([String]) -> MaintenanceWindow)? = nil, renderFailedAgain: Bool = false) throws -> [Journal.NoticeRow] {
        var byCustomer: [String: [String]] = [:]
        // Each customer's hosts once, in the order given (sets, not a search of the list so far: a
        // customer with thousands of hosts in a wave made that quadratic).
        var listed = Set<String>()
        for h in hosts where listed.insert(h).inserted {
            var told = Set<String>()
            for c in customers.customers(onHost: h) where told.insert(c.id).inserted { byCustomer[c.id, default: []].append(h) }
        }
        guard !byCustomer.isEmpty else { return [] }
        let existing = Dictionary(try journal.notices(rolloutID).filter { $0.wave == wave && $0.kind == kind }.map { ($0.customerID, $0) },
                                  uniquingKeysWith: { a, _ in a })
        let hostRows = try journal.noticeHosts(rolloutID, named: hosts)
        let texts = try templates(kind)
        var rows: [Journal.NoticeRow] = []
        for id in byCustomer.keys.sorted() {
            guard let customer = customers.byID[id], let theirHosts = byCustomer[id], only?.contains(id) ?? true else { continue }
            if let e = existing[id], !(renderFailedAgain && e.status == .failed) { continue }
            rows.append(try render(kind, wave: wave, customer: customer, hosts: theirHosts, hostRows: hostRows,
                                   window: window?(theirHosts), texts: texts))
        }
        return rows
    }

    /// `owed` and queue them at once (for steps that own no other journal write).
    func queueOwed(_ kind: NoticeKind, wave: Int, hosts: [String], only: Set<String>? = nil,
                   window: (@Sendable ([String]) -> MaintenanceWindow)?, renderFailedAgain: Bool) throws {
        let rows = try owed(kind, wave: wave, hosts: hosts, only: only, window: window, renderFailedAgain: renderFailedAgain)
        if !rows.isEmpty { try journal.queueNotices(rows) }
    }

    /// After the wave is committed: tells each customer of `hosts` that their servers run the new kernel.
    public func done(wave: Int, hosts: [String]) async throws {
        try queueOwed(.done, wave: wave, hosts: hosts, window: nil, renderFailedAgain: false)
        try await deliverUndelivered(wave: wave, kinds: [.done])
    }

    /// After a rollback touched `hosts`: tells their customers the servers are back on the previous kernel.
    public func rolledBack(wave: Int, hosts: [String]) async throws {
        try queueOwed(.rolledBack, wave: wave, hosts: hosts, window: nil, renderFailedAgain: false)
        try await deliverUndelivered(wave: wave, kinds: [.rolledBack])
    }

    /// Checks what can be checked before the first wave: templates, the channel's
    /// settings, the credentials' source (never their value). Throws `NoticeError`.
    public func preflight() throws {
        for kind in NoticeKind.allCases { _ = try templates(kind) }
        do throws(NoticeDeliveryError) {
            switch spec.channel {
            case let .smtp(_, _, _, starttls, username, passwordEnv, passwordFile):
                if starttls, case .failure(let e) = OpenSSL.shared { throw NoticeDeliveryError(stage: .config, e.description, permanent: true) }
                if let username { _ = try SMTPCredentials.resolve(username: username, passwordEnv: passwordEnv, passwordFile: passwordFile, environment: environment) }
            case let .webhook(url):
                _ = try Webhook.endpoint(url)
            }
        } catch {
            throw NoticeError(kind: nil, wave: nil, failures: [("-", error)], blocking: true)
        }
    }

    // MARK: - the outbox loop

    /// Delivers every notice of the rollout not yet delivered (`queued`, `pending`
    /// from a run that died mid-send, `failed` under `on_failure: block`), of `wave`
    /// (every wave when nil) and `kinds`. Resume calls it first, whatever state the
    /// waves are in, so no owed notice is ever left behind.
    public func deliverUndelivered(wave: Int? = nil, kinds: Set<NoticeKind> = Set(NoticeKind.allCases)) async throws {
        let rows = try journal.undeliveredNotices(rolloutID).filter { r in
            (wave == nil || r.wave == wave) && kinds.contains(r.kind)
        }
        guard !rows.isEmpty else { return }
        let channel = try ChannelSession(spec: spec, timeout: timeout, tlsCAFile: tlsCAFile, environment: environment, logger: logger)
        defer { channel.close() }
        var undelivered: [(String, NoticeDeliveryError)] = []
        var channelDown = false
        var sent = 0
        outbox: for row in rows {
            switch row.status {
            case .pending:
                try journal.markNoticeResend(row)
                logger.notice("\(row.label): was pending when the last run stopped; resending with the same Message-ID")
            case .queued, .failed:
                try journal.markNoticeSending(row)
            case .sent, .skipped:
                continue
            }
            switch try await deliver(row, channel: channel, once: channelDown) {
            case .success(let reply):
                try journal.markNoticeSent(row, reply: reply)
                sent += 1
                logger.notice("\(row.label): sent (\(MailMessage.oneLine(reply)))")
            case .failure(let error):
                if error.stage == .config {
                    try journal.markNoticeUndelivered(row, status: .failed, error: error.description)
                    throw NoticeError(kind: row.kind, wave: row.wave, failures: [(row.customerID, error)], blocking: true)
                }
                if !error.permanent { channelDown = true }
                if spec.blockOnFailure {
                    try journal.markNoticeUndelivered(row, status: .failed, error: error.description)
                    undelivered.append((row.customerID, error))
                    logger.error("\(row.label): NOT delivered: \(error)")
                    // The server is unreachable: stop here; the next run retries from this notice.
                    if !error.permanent { break outbox }
                } else {
                    try journal.markNoticeUndelivered(row, status: .skipped, error: error.description)
                    logger.warning("\(row.label): NOT delivered, skipped (on_failure: skip): \(error)")
                }
            }
        }
        let kindsText = Set(rows.map { $0.kind.rawValue }).sorted().joined(separator: ", ")
        logger.notice("\(wave.map { "wave \($0) " } ?? "")\(kindsText) notices: \(sent) sent now, \(undelivered.count) failed, of \(rows.count) undelivered")
        if !undelivered.isEmpty {
            throw NoticeError(kind: rows.first?.kind, wave: wave, failures: undelivered, blocking: true)
        }
    }

    /// Up to `retry.attempts` tries with exponential backoff (one try when the
    /// channel already failed a notice of this batch, none for a permanent failure).
    func deliver(_ row: Journal.NoticeRow, channel: ChannelSession, once: Bool) async throws -> Result<String, NoticeDeliveryError> {
        let total = once ? 1 : retry.attempts
        var delay = retry.firstDelay
        for attempt in 1...total {
            try journal.noteNoticeAttempt(row)
            switch await channel.deliver(row) {
            case .success(let reply): return .success(reply)
            case .failure(let error):
                let last = attempt == total || error.permanent
                try journal.noteNoticeFailure(row, attempt: attempt, of: total, error: error.description, retryIn: last ? nil : delay)
                if last { return .failure(error) }
                logger.warning("\(row.label): attempt \(attempt)/\(total) failed: \(error); retrying in \(PlanFormat.duration(delay))")
                try await Task.sleep(for: delay)
                delay = min(delay * 2, retry.maxDelay)
            }
        }
        return .failure(NoticeDeliveryError(stage: .retry, "no attempt made"))
    }

    // MARK: - rendering

    /// The subject and body templates of a kind: the plan's folder, else rollctl's defaults.
    func templates(_ kind: NoticeKind) throws -> (subject: String, body: String) {
        var subject = NoticeDefaults.subject(kind), body = NoticeDefaults.body(kind)
        if let dir = spec.templateDir {
            for part in ["subject", "body"] {
                let path = dir + "/" + kind.rawValue + "." + part
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                guard let text = String(data: data, encoding: .utf8) else { throw InputErrors([InputError(file: path, "a template must be UTF-8 text")]) }
                let errors = NoticeTemplate.check(text, file: path)
                if !errors.isEmpty { throw InputErrors(errors) }
                if part == "subject" { subject = text } else { body = text }
            }
        }
        return (subject, body)
    }

    func render(_ kind: NoticeKind, wave: Int, customer: Customer, hosts: [String], hostRows: [String: Journal.NoticeHost],
                window: MaintenanceWindow?, texts: (subject: String, body: String)) throws -> Journal.NoticeRow {
        var previous: [String] = []
        for h in hosts { if let r = hostRows[h]?.releaseBefore, !previous.contains(r) { previous.append(r) } }
        let ctx: [String: NoticeTemplate.Value] = [
            "company": .text(spec.company), "customer_name": .text(customer.name), "customer_id": .text(customer.id),
            "customer_email": .text(customer.email),
            "hosts": .list(hosts.map { ["name": $0, "address": hostRows[$0]?.address ?? ""] }),
            "host_count": .text("\(hosts.count)"),
            "window_start": .text(window?.humanStart ?? ""), "window_end": .text(window?.humanEnd ?? ""),
            "kernel": .text(release), "previous_kernel": .text(previous.joined(separator: ", ")), "plan": .text(planName),
            "wave": .text("\(wave)"), "lead_time": .text(PlanFormat.duration(spec.leadTime)),
        ]
        let subject = MailMessage.oneLine(try NoticeTemplate.renderChecked(texts.subject, ctx).trimmingCharacters(in: .whitespacesAndNewlines))
        let body = try NoticeTemplate.renderChecked(texts.body, ctx)
        let now = journal.clock.now
        switch spec.channel {
        case let .smtp(_, _, from, _, _, _, _):
            let id = Self.messageID(rollout: rolloutID, wave: wave, kind: kind, customer: customer.id, domain: Self.domain(ofEmail: from))
            let message = MailMessage(fromName: spec.company, fromAddress: from, toName: customer.name, toAddress: customer.email,
                                      subject: subject, body: body, date: now, messageID: id,
                                      extraHeaders: [("X-Rollctl-Rollout", rolloutID), ("X-Rollctl-Notice", "\(kind.rawValue); wave=\(wave)")]
                                        + (window.map { [("X-Rollctl-Window", $0.iso)] } ?? []))
            return .init(rolloutID: rolloutID, wave: wave, kind: kind, customerID: customer.id, customerName: customer.name,
                         channel: .smtp, recipient: customer.email, messageID: id, hosts: hosts, subject: subject, payload: message.rendered(),
                         window: window)
        case let .webhook(url):
            let domain = (try? HTTPURL.parse(url, allowHTTPS: true).host) ?? "rollctl.invalid"
            let id = Self.messageID(rollout: rolloutID, wave: wave, kind: kind, customer: customer.id, domain: domain)
            let notice = WebhookNotice(kind: kind.rawValue, messageID: id, rollout: rolloutID, plan: planName, wave: wave, kernel: release,
                                       company: spec.company, customer: .init(id: customer.id, name: customer.name, email: customer.email),
                                       hosts: hosts, windowStart: window.map { TimeText.iso($0.start) },
                                       windowEnd: window.map { TimeText.iso(MaintenanceWindow.ceilSecond($0.end)) },
                                       subject: subject, body: body, createdAt: TimeText.iso(now))
            return .init(rolloutID: rolloutID, wave: wave, kind: kind, customerID: customer.id, customerName: customer.name,
                         channel: .webhook, recipient: url, messageID: id, hosts: hosts, subject: subject,
                         payload: String(decoding: notice.encoded(), as: UTF8.self), window: window)
        }
    }

    /// `<rollctl.{rollout}.{wave}.{kind}.{customer}@{domain}>`: the same for the
    /// same notice in every run. Characters other than letters, digits, `-` and
    /// `_` in the rollout and customer ids are written `=XX` (one-to-one, valid in a msg-id).
    public static func messageID(rollout: String, wave: Int, kind: NoticeKind, customer: String, domain: String) -> String {
        func atom(_ s: String) -> String {
            var out = ""
            for b in s.utf8 {
                let c = Character(UnicodeScalar(b))
                if b < 128 && (c.isLetter || c.isNumber || c == "-" || c == "_") { out.append(c) } else { out += String(format: "=%02X", b) }
            }
            return out.isEmpty ? "_" : out
        }
        let d = domain.isEmpty || !domain.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) ? "rollctl.invalid" : domain
        return "<rollctl.\(atom(rollout)).\(wave).\(kind.rawValue).\(atom(customer))@\(d)>"
    }

    static func domain(ofEmail s: String) -> String {
        s.lastIndex(of: "@").map { String(s[s.index(after: $0)...]) } ?? ""
    }
}

/// Notices that could not be delivered, with the plan saying `on_failure: block`
/// (or a channel that cannot work at all): the wave must not go on.
public struct NoticeError: Error, Sendable, CustomStringConvertible {
    public var kind: NoticeKind?
    public var wave: Int?
    /// Customer id and why.
    public var failures: [(String, NoticeDeliveryError)]
    public var blocking: Bool

    public var description: String {
        let what = kind.map { "\($0.rawValue) notice" } ?? "customer notices"
        let whereText = wave.map { " for wave \($0)" } ?? ""
        let list = failures.prefix(5).map { "\($0.0): \($0.1)" }.joined(separator: "; ")
        let more = failures.count > 5 ? " (and \(failures.count - 5) more)" : ""
        return "\(what)\(whereText) could not be delivered: \(list)\(more). The wave does not reboot until its customers are told; "
            + "fix the channel and resume (rollctl rollout resume), or set notify.on_failure: skip. See rollctl rollout notices."
    }
}

/// An open channel for one batch of notices: an SMTP session reused across
/// messages (reopened after a failure), or the webhook. Used serially.
final class ChannelSession: @unchecked Sendable {
    private let spec: NotifySpec
    private let smtp: SMTPClient?
    private let from: String
    private let webhook: Webhook?
    private var session: SMTPSession?

    init(spec: NotifySpec, timeout: Duration, tlsCAFile: String?, environment: [String: String], logger: Logger? = nil) throws {
        self.spec = spec
        switch spec.channel {
        case let .smtp(host, port, from, starttls, username, passwordEnv, passwordFile):
            var credentials: SMTPCredentials?
            var configError: NoticeDeliveryError?
            if let username {
                do { credentials = try SMTPCredentials.resolve(username: username, passwordEnv: passwordEnv, passwordFile: passwordFile, environment: environment) } catch { configError = error }
            }
            if let configError { throw NoticeError(kind: nil, wave: nil, failures: [("-", configError)], blocking: true) }
            smtp = SMTPClient(host: host, port: port, starttls: starttls, credentials: credentials, timeout: timeout, tlsCAFile: tlsCAFile, logger: logger)
            self.from = from
            webhook = nil
        case let .webhook(url):
            smtp = nil
            from = ""
            webhook = Webhook(url: url, timeout: timeout, tlsCAFile: tlsCAFile)
        }
    }

    func deliver(_ row: Journal.NoticeRow) async -> Result<String, NoticeDeliveryError> {
        if let webhook {
            do { return .success(try await webhook.post(Array(row.payload.utf8), messageID: row.messageID)) } catch { return .failure(error) }
        }
        return await Blocking.run { self.deliverBlocking(row) }
    }

    private func deliverBlocking(_ row: Journal.NoticeRow) -> Result<String, NoticeDeliveryError> {
        do throws(NoticeDeliveryError) {
            guard let smtp else { return .failure(NoticeDeliveryError(stage: .config, "no channel", permanent: true)) }
            if session == nil || !(session?.isUsable ?? false) { session = try smtp.open() }
            return .success(try session!.send(from: from, to: [row.recipient], message: row.payload))
        } catch {
            if let s = session, !s.reset() { session = nil }
            return .failure(error)
        }
    }

    /// QUIT on a thread of its own: the caller does not wait for the server's goodbye.
    func close() {
        guard let s = session else { return }
        session = nil
        let box = SessionBox(s)
        Blocking.detached { box.session.quit() }
    }
}

/// Hands a session to the thread that says goodbye (nobody else holds it any more).
private final class SessionBox: @unchecked Sendable {
    let session: SMTPSession
    init(_ s: SMTPSession) { session = s }
}

/// rollctl's own texts, used when the plan names no template folder (or the
/// folder lacks a kind): the maintenance notice is the dry-run's example text.
package enum NoticeDefaults {
    static let defaultSubject = "Planned maintenance: {{host_count}} of your servers will restart"
    static let defaultBody = """
        Hello {{customer_name}},

        {{company}} is updating the Linux kernel of the servers your services run on.
        The following servers will restart once between {{window_start}} and {{window_end}}:
        {{#hosts}}  - {{name}}
        {{/hosts}}Each restart takes a few minutes. You do not need to do anything.

        New kernel: {{kernel}}

        -- {{company}}
        """

    package static func subject(_ kind: NoticeKind) -> String {
        switch kind {
        case .maintenance: defaultSubject
        case .done: "Maintenance finished: your servers run the new kernel"
        case .rolledBack: "Maintenance undone on {{host_count}} of your servers"
        case .rescheduled: "Maintenance moved: {{host_count}} of your servers will restart later than announced"
        }
    }

    package static func body(_ kind: NoticeKind) -> String {
        switch kind {
        case .maintenance: defaultBody
        case .done:
            """
            Hello {{customer_name}},

            the maintenance is finished: these servers now run the new kernel ({{kernel}}):
            {{#hosts}}  - {{name}}
            {{/hosts}}
            -- {{company}}

            """
        case .rolledBack:
            """
            Hello {{customer_name}},

            a check after the restart did not pass, so we put these servers back on
            their previous kernel ({{previous_kernel}}):
            {{#hosts}}  - {{name}}
            {{/hosts}}
            They are running normally. We will tell you before we try again.

            -- {{company}}

            """
        case .rescheduled:
            """
            Hello {{customer_name}},

            the maintenance we announced could not keep its time. The following servers
            will now restart once between {{window_start}} and {{window_end}}:
            {{#hosts}}  - {{name}}
            {{/hosts}}Each restart takes a few minutes. You do not need to do anything.

            -- {{company}}

            """
        }
    }
}
