import Foundation
import Basics
import NetIO
import WebAPI

/// The webhook channel: one HTTP POST of a JSON notice (schema `rollctl.notice/v1`,
/// docs/notifications.md) per customer, wave and kind, through rollctl's one HTTP client
/// (`WebClient`, on AsyncHTTPClient): `https://` verified against the system's trust store (or
/// `tls_ca_file`) and the URL's host, one deadline for the whole POST, the answer read only
/// up to a small bound, redirects refused.
public struct Webhook: Sendable {
    public var url: String
    public var timeout: Duration
    /// Trusted certificates (PEM) for https; nil: the system's trust store.
    public var tlsCAFile: String?

    public init(url: String, timeout: Duration = .seconds(30), tlsCAFile: String? = nil) {
        self.url = url
        self.timeout = timeout
        self.tlsCAFile = tlsCAFile
    }

    /// The endpoint `url` names, or why it cannot be posted to: a permanent `config` failure.
    static func endpoint(_ url: String) throws(NoticeDeliveryError) -> String {
        do {
            _ = try WebClient.check(url)
            return url
        } catch {
            throw NoticeDeliveryError(stage: .config, "webhook url: \(error.message)", permanent: true)
        }
    }

    /// The most of an answer read: a receiver says yes or no, it sends no pages.
    static let maxAnswer = 64 << 10

    /// POSTs `body`. Returns the status line (`HTTP/1.1 200 OK`). A 2xx is delivered; 408, 429
    /// and 5xx are worth a retry; other statuses (and redirects) are permanent.
    ///
    /// The endpoint is hostile (issue 14): `timeout` is one deadline for the whole POST; the status
    /// decides once the head is in, and the rest is read (at most `maxAnswer`, within the deadline)
    /// only for a clean connection. A failure once the request may have been sent (no
    /// answer in time, the connection broken) says the notice may have been accepted: the retry
    /// carries the same `Idempotency-Key`.
    func post(_ body: [UInt8], messageID: String) async throws(NoticeDeliveryError) -> String {
        let target = try Self.endpoint(url)
        let response: WebResponse
        do {
            response = try await WebClient.send(.POST, target, headers: [
                ("Content-Type", "application/json"), ("Idempotency-Key", messageID), ("X-Rollctl-Message-Id", messageID),
                ("User-Agent", "rollctl-notices"),
            ], body: body, timeout: timeout, maxBody: Self.maxAnswer, caFile: tlsCAFile, readBody: false)
        } catch {
            switch error.kind {
            case .badURL: throw NoticeDeliveryError(stage: .config, error.message, permanent: true)
            case .connect: throw NoticeDeliveryError(stage: .connecting, error.message)
            case .tls: throw NoticeDeliveryError(stage: .tls, error.message, permanent: error.message.contains("certificate"))
            case .redirect: throw NoticeDeliveryError(stage: .http, error.message, permanent: true)
            case .timeout, .tooLarge, .transport: throw NoticeDeliveryError(stage: .http, error.message, mayHaveBeenAccepted: true)
            }
        }
        let status = "HTTP/1.1 \(response.status) \(response.reason)"
        switch response.status {
        case 200..<300: return status
        case 408, 429, 500..<600:
            throw NoticeDeliveryError(stage: .http, "the webhook answered \(response.status)", reply: status)
        default:
            throw NoticeDeliveryError(stage: .http, "the webhook refused the notice", reply: status, permanent: true)
        }
    }
}

/// The JSON body of a webhook notice (schema `rollctl.notice/v1`).
public struct WebhookNotice: Sendable, Codable, Equatable {
    public struct CustomerInfo: Sendable, Codable, Equatable {
        public var id: String
        public var name: String
        public var email: String
    }
    public var schema = "rollctl.notice/v1"
    public var kind: String
    public var messageID: String
    public var rollout: String
    public var plan: String
    public var wave: Int
    public var kernel: String
    public var company: String
    public var customer: CustomerInfo
    public var hosts: [String]
    public var windowStart: String?
    public var windowEnd: String?
    public var subject: String
    public var body: String
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case schema, kind, rollout, plan, wave, kernel, company, customer, hosts, subject, body
        case messageID = "message_id", windowStart = "window_start", windowEnd = "window_end", createdAt = "created_at"
    }

    func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? e.encode(self)) ?? Data("{}".utf8))
    }
}
