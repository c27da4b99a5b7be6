import Foundation
import Basics

/// One Alertmanager matcher (`severity="critical"`, `instance=~"{address}:.*"`), its value may
/// hold `{name}`/`{address}`, put in unquoted and (for `=~`/`!~`) regex-quoted.
public struct AlertMatcher: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Op: String, Sendable, Codable, CaseIterable { case equal = "=", notEqual = "!=", regex = "=~", notRegex = "!~" }
    public var label: String
    public var op: Op
    public var value: String

    public init(label: String, op: Op, value: String) {
        self.label = label
        self.op = op
        self.value = value
    }

    public var isRegex: Bool { op == .regex || op == .notRegex }
    public var isEqual: Bool { op == .equal || op == .regex }
    /// True when the matcher names a host (so it is judged per host, not fleet-wide).
    public var perHost: Bool { Placeholders.mentions(value) }

    /// As Alertmanager's `filter=` writes it.
    public var description: String { "\(label)\(op.rawValue)\"\(Placeholders.escapeString(value))\"" }

    /// The matcher for one host.
    public func forHost(name: String, address: String) -> AlertMatcher {
        var m = self
        m.value = Placeholders.expandValue(value, values: ["name": name, "address": address], regex: isRegex)
        return m
    }

    /// Parses `label op "value"` (or an unquoted value); the reason when it is not one.
    public static func parse(_ text: String) throws(Placeholders.Problem) -> AlertMatcher {
        let s = text.trimmingCharacters(in: .whitespaces)
        var i = s.startIndex
        while i < s.endIndex, s[i].isLetter || s[i].isNumber || s[i] == "_" { i = s.index(after: i) }
        let label = String(s[..<i])
        guard let first = label.first, first.isLetter || first == "_", label.allSatisfy(\.isASCII) else {
            throw Placeholders.Problem(reason: "a matcher starts with a label name, e.g. severity=\"critical\"")
        }
        let rest = s[i...].drop(while: { $0 == " " })
        guard let op = [Op.regex, .notRegex, .notEqual, .equal].first(where: { rest.hasPrefix($0.rawValue) }) else {
            throw Placeholders.Problem(reason: "after '\(label)' comes =, !=, =~ or !~")
        }
        let raw = rest.dropFirst(op.rawValue.count).trimmingCharacters(in: .whitespaces)
        var value = ""
        if raw.hasPrefix("\"") {
            var chars = raw.dropFirst()
            var closed = false
            while let c = chars.first {
                chars = chars.dropFirst()
                if c == "\\", let n = chars.first {
                    chars = chars.dropFirst()
                    value.append(n == "n" ? "\n" : n)
                } else if c == "\"" {
                    closed = true
                    break
                } else {
                    value.append(c)
                }
            }
            guard closed, chars.allSatisfy({ $0 == " " }) else {
                throw Placeholders.Problem(reason: "the value's quotes are not closed, or text follows them")
            }
        } else {
            guard !raw.isEmpty, raw.allSatisfy({ $0.isLetter || $0.isNumber || "_.:/-@".contains($0) }) else {
                throw Placeholders.Problem(reason: "quote the value: \(label)\(op.rawValue)\"...\"")
            }
            value = raw
        }
        return AlertMatcher(label: label, op: op, value: value)
    }
}

/// A firing alert, as the evidence of a hold shows it.
public struct FiringAlert: Sendable, Equatable, Codable {
    public var name: String
    public var labels: [String: String]
    public var startsAt: String?

    public var summary: String {
        let inner = labels.filter { $0.key != "alertname" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return "\(name){\(inner.joined(separator: ","))}"
    }
}

public struct AlertmanagerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Alertmanager's v2 API: active alerts, and silences (create, find, expire).
public struct AlertmanagerAPI: Sendable {
    public var url: String
    public var timeout: Duration
    public var caFile: String?

    public init(url: String, timeout: Duration = .seconds(10), caFile: String? = nil) {
        self.url = url
        self.timeout = timeout
        self.caFile = caFile
    }

    static let maxBody = 4 << 20

    /// Alerts firing now that match every matcher: active, or muted only by silences in
    /// `ownSilences` (rollctl's own, made so the on-call is not paged for a reboot: they must not
    /// hide a problem from rollctl itself). Alerts a person silenced or an inhibition hides are
    /// left out.
    public func firing(_ matchers: [AlertMatcher], ownSilences: Set<String> = []) async throws(AlertmanagerError) -> [FiringAlert] {
        struct Alert: Decodable {
            var labels: [String: String]
            var startsAt: String?
            var status: Status?
            struct Status: Decodable { var state: String?; var silencedBy: [String]?; var inhibitedBy: [String]? }
        }
        var q: [(String, String)] = [("active", "true"), ("silenced", ownSilences.isEmpty ? "false" : "true"), ("inhibited", "false"), ("unprocessed", "true")]
        q += matchers.map { ("filter", $0.description) }
        let body = try await call(.GET, "/api/v2/alerts?" + queryString(q), what: "listing alerts")
        guard let alerts = try? JSONDecoder().decode([Alert].self, from: Data(body)) else {
            throw AlertmanagerError("alertmanager: the alert list is not the v2 API's JSON")
        }
        return alerts.filter { a in
            let state = a.status?.state ?? "active"
            if state == "active" { return true }
            let by = a.status?.silencedBy ?? []
            return state == "suppressed" && !by.isEmpty && (a.status?.inhibitedBy ?? []).isEmpty && by.allSatisfy { ownSilences.contains($0) }
        }
        .prefix(1000)
        .map { FiringAlert(name: $0.labels["alertname"] ?? "?", labels: $0.labels, startsAt: $0.startsAt) }
    }

    /// Creates a silence; its id.
    public func createSilence(_ matchers: [AlertMatcher], from start: Date, until end: Date,
                              createdBy: String, comment: String) async throws(AlertmanagerError) -> String {
        struct Body: Encodable {
            struct M: Encodable { var name: String; var value: String; var isRegex: Bool; var isEqual: Bool }
            var matchers: [M]
            var startsAt: String
            var endsAt: String
            var createdBy: String
            var comment: String
        }
        struct Answer: Decodable { var silenceID: String }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let body = Body(matchers: matchers.map { .init(name: $0.label, value: $0.value, isRegex: $0.isRegex, isEqual: $0.isEqual) },
                        startsAt: f.string(from: start), endsAt: f.string(from: end), createdBy: createdBy, comment: comment)
        let json = (try? JSONEncoder().encode(body)).map { Array($0) } ?? []
        let answer = try await call(.POST, "/api/v2/silences", body: json, what: "creating a silence")
        guard let a = try? JSONDecoder().decode(Answer.self, from: Data(answer)), !a.silenceID.isEmpty, a.silenceID.count < 100 else {
            throw AlertmanagerError("alertmanager: the silence's answer has no id")
        }
        return a.silenceID
    }

    /// A silence as listed: its id, state and comment.
    public struct Silence: Sendable, Decodable {
        public var id: String
        public var comment: String
        public var createdBy: String
        public var status: Status
        public struct Status: Sendable, Decodable { public var state: String }
    }

    /// Silences (all states) whose comment contains `marker`.
    public func silences(commentContaining marker: String) async throws(AlertmanagerError) -> [Silence] {
        let body = try await call(.GET, "/api/v2/silences", what: "listing silences")
        guard let all = try? JSONDecoder().decode([Silence].self, from: Data(body)) else {
            throw AlertmanagerError("alertmanager: the silence list is not the v2 API's JSON")
        }
        return all.filter { $0.comment.contains(marker) }
    }

    /// Expires a silence. One already expired (or gone) is fine: the wanted end holds.
    public func expireSilence(_ id: String) async throws(AlertmanagerError) {
        var allowed = CharacterSet.alphanumerics
        allowed.insert("-")
        let safe = id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id
        do {
            _ = try await call(.DELETE, "/api/v2/silence/\(safe)", what: "expiring silence \(id)")
        } catch {
            if error.message.contains("answered 404") || error.message.contains("already expired") { return }
            throw error
        }
    }

    func call(_ method: WebMethod, _ path: String, body: [UInt8]? = nil, what: String) async throws(AlertmanagerError) -> [UInt8] {
        let response: WebResponse
        do {
            response = try await WebClient.send(method, joinURL(url, path),
                                                headers: body == nil ? [] : [("Content-Type", "application/json")],
                                                body: body, timeout: timeout, maxBody: Self.maxBody, caFile: caFile)
        } catch {
            throw AlertmanagerError("alertmanager, \(what): \(error)")
        }
        guard (200..<300).contains(response.status) else {
            let said = String(response.text.prefix(200)).filter { !$0.isNewline }
            throw AlertmanagerError("alertmanager, \(what): answered \(response.status) \(said)")
        }
        return response.body
    }
}
