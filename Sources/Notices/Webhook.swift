import Foundation
import Basics
import NetIO

/// The webhook channel: one HTTP/1.1 POST of a JSON notice (schema
/// `rollctl.notice/v1`, docs/notifications.md) per customer, wave and kind.
///
/// Written on POSIX sockets like the SMTP dialogue rather than with
/// AsyncHTTPClient: a notice is one small POST, and AsyncHTTPClient (with
/// swift-nio) would add minutes to every build on the 2-core CI. `https://`
/// uses the system's OpenSSL like SMTP STARTTLS (`TLSSession`): certificate
/// verified against the system trust store and the URL's host.
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

    /// The endpoint `url` names (`HTTPURL`, http or https), or why it cannot be
    /// posted to: a permanent `config` failure.
    static func endpoint(_ url: String) throws(NoticeDeliveryError) -> HTTPURL {
        do {
            return try HTTPURL.parse(url, allowHTTPS: true)
        } catch {
            let message = switch error.part {
            case .scheme: "webhook url must start with http:// or https://"
            case .host, .substitution: "webhook url needs a host (and no user:password@)"
            case .port: "bad port in webhook url"
            case .path: "webhook url path must be ASCII without spaces (percent-encode it)"
            }
            throw NoticeDeliveryError(stage: .config, message, permanent: true)
        }
    }

    /// POSTs `body` (blocking: call from a dedicated thread). Returns the status
    /// line (`HTTP/1.1 200 OK`). A 2xx is delivered; 408, 429 and 5xx are worth
    /// a retry; other statuses are permanent.
    ///
    /// The endpoint is hostile (issue 14): `timeout` is one deadline for the
    /// whole POST, connect to response, and the response is read by the site
    /// probe's `HTTPResponseParser` under `HTTPResponseLimits.standard` (one
    /// parser for both, no second hand-rolled reader). The status decides once
    /// the head is in; the body is then read to its end for a clean close, for
    /// at most `drainTime` more, its failures ignored.
    func post(_ body: [UInt8], messageID: String) throws(NoticeDeliveryError) -> String {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let target = try Self.endpoint(url)
        let conn: LineConnection
        do { conn = try LineConnection.connect(host: target.host, port: Int(target.port), deadline: deadline) } catch {
            throw NoticeDeliveryError(stage: .connecting, error.description)
        }
        if target.tls {
            do { try conn.startTLS(caFile: tlsCAFile, deadline: deadline) } catch {
                throw NoticeDeliveryError(stage: .tls, error.description, permanent: error.description.contains("certificate verify failed"))
            }
        }
        let head = "POST \(target.path) HTTP/1.1\r\nHost: \(target.authority)\r\nUser-Agent: rollctl-notices\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            + "Idempotency-Key: \(messageID)\r\nX-Rollctl-Message-Id: \(messageID)\r\nConnection: close\r\n\r\n"
        do {
            try conn.send(Array(head.utf8) + body, deadline: deadline, phase: "sending the POST")
        } catch {
            throw NoticeDeliveryError(stage: .http, error.description)
        }
        var response = HTTPResponseParser()
        while response.head == nil {
            let progress: HTTPResponseParser.Progress
            do {
                if let bytes = try conn.receive(deadline: deadline, phase: "waiting for the response") {
                    progress = response.feed(bytes)
                } else {
                    progress = response.finish()
                }
            } catch {
                throw NoticeDeliveryError(stage: .http, error.description, mayHaveBeenAccepted: true)
            }
            if case .malformed(let reason) = progress, response.head == nil {
                throw NoticeDeliveryError(stage: .http, "bad response: \(reason)", mayHaveBeenAccepted: true)
            }
        }
        let status = response.head?.statusLine ?? ""
        let code = response.head?.status ?? 0
        // Drain the rest (headers and a small body) so the server's close is clean.
        let drainUntil = min(deadline, ContinuousClock.now.advanced(by: Self.drainTime))
        while response.progress == .needMore {
            do {
                if let bytes = try conn.receive(deadline: drainUntil, phase: "reading the response") {
                    response.feed(bytes)
                } else {
                    response.finish()
                }
            } catch { break }
        }
        switch code {
        case 200..<300: return status
        case 408, 429, 500..<600:
            throw NoticeDeliveryError(stage: .http, "the webhook answered \(code)", reply: status)
        default:
            throw NoticeDeliveryError(stage: .http, "the webhook refused the notice", reply: status, permanent: true)
        }
    }

    /// The longest the body of the response is read after its head.
    static let drainTime = Duration.seconds(2)
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
