import Foundation
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Basics

/// The methods rollctl's calls use.
public enum WebMethod: String, Sendable {
    case GET, POST, PUT, DELETE
    var nio: HTTPMethod {
        switch self {
        case .GET: .GET
        case .POST: .POST
        case .PUT: .PUT
        case .DELETE: .DELETE
        }
    }
}

/// An HTTP response, its body read whole (within the request's bound).
public struct WebResponse: Sendable {
    public var status: Int
    /// The status line's reason phrase (`OK`, `Service Unavailable`).
    public var reason: String = ""
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request got no response (or a response it could not use).
public struct WebError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The URL cannot be asked (scheme, host, credentials in it).
        case badURL
        /// No connection: refused, unreachable, or the connect timed out.
        case connect
        /// TLS failed: certificate not trusted, wrong host, handshake.
        case tls
        /// The whole request outran its deadline.
        case timeout
        /// The body was larger than the caller allows.
        case tooLarge
        /// The server answered with a redirect; rollctl follows none.
        case redirect
        /// The connection broke or the server spoke something else.
        case transport
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }
}

/// The one HTTP client of rollctl (Prometheus, Alertmanager, webhooks), on AsyncHTTPClient.
///
/// Every request carries one deadline, connect to last body byte; a body is read only up to
/// the caller's bound; redirects are refused, not followed (a monitoring API or a webhook that
/// redirects is misconfigured, and following one can carry a request elsewhere); `https` is
/// verified against the system's trust store (or a CA file) and the URL's host. Credentials in
/// a URL (`user:pass@`) are refused: they would land in logs and the journal.
public enum WebClient {
    /// One client for the process: its connection pool and NIO's event loops are shared, and it
    /// lives as long as the process (never shut down, so never used after a shutdown).
    static let shared: HTTPClient = {
        var config = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                              timeout: .init(connect: .seconds(10), read: .seconds(60)))
        config.connectionPool = .init(idleTimeout: .seconds(30))
        // Every caller has its own retry policy (the next gate sample, the next look for alerts,
        // the notices' backoff): a refused connection is reported at once, not retried until the deadline.
        config.connectionPool.retryConnectionEstablishment = false
        config.decompression = .disabled
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
    }()

    /// The URL checked: http or https, a host, no credentials.
    public static func check(_ url: String) throws(WebError) -> URL {
        guard let u = URL(string: url), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw WebError(.badURL, "\"\(url)\" is not an http:// or https:// URL")
        }
        guard let host = u.host, !host.isEmpty else { throw WebError(.badURL, "\"\(url)\" has no host") }
        guard u.user == nil && u.password == nil else {
            throw WebError(.badURL, "\"\(redacted(url))\" carries credentials; rollctl keeps none in URLs")
        }
        return u
    }

    /// The URL with any `user:password@` replaced, for messages.
    public static func redacted(_ url: String) -> String {
        guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://"), scheme.upperBound < at else { return url }
        return String(url[..<scheme.upperBound]) + "…@" + String(url[url.index(after: at)...])
    }

    /// Sends one request and reads its response; `timeout` bounds all of it. With `readBody`
    /// false the answer's status decides alone: a broken or endless body after the head is
    /// no error (a webhook's receiver says yes in its status line).
    public static func send(_ method: WebMethod = .GET, _ url: String, headers: [(String, String)] = [],
                            body: [UInt8]? = nil, timeout: Duration, maxBody: Int = 1 << 20,
                            caFile: String? = nil, readBody: Bool = true) async throws(WebError) -> WebResponse {
        _ = try check(url)
        var request = HTTPClientRequest(url: url)
        request.method = method.nio
        request.headers.add(name: "User-Agent", value: "rollctl")
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            request.tlsConfiguration = tls
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(clamping: timeout.nanoseconds))
        let ends = ContinuousClock.now.advanced(by: timeout)
        let shown = redacted(url)
        let prepared = request
        do {
            // AsyncHTTPClient's deadline covers the request up to the answer's head; the race
            // bounds the body too (a body that drips a byte a minute ends at the deadline).
            return try await withThrowingTaskGroup(of: WebResponse?.self) { group in
                group.addTask {
                    let response = try await shared.execute(prepared, deadline: deadline)
                    let status = Int(response.status.code)
                    if (300..<400).contains(status) {
                        let to = response.headers.first(name: "Location").map { " to \(redacted($0))" } ?? ""
                        throw WebError(.redirect, "\(shown) answered \(status), a redirect\(to); rollctl follows none: give the final URL")
                    }
                    let headers = response.headers.map { ($0.name, $0.value) }
                    // Only the status matters: the body is left unread (the client drops the connection).
                    guard readBody else { return WebResponse(status: status, reason: response.status.reasonPhrase, headers: headers, body: []) }
                    let bytes = try await response.body.collect(upTo: maxBody)
                    return WebResponse(status: status, reason: response.status.reasonPhrase, headers: headers, body: Array(buffer: bytes))
                }
                group.addTask {
                    try? await Task.sleep(until: ends, clock: .continuous)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                guard let first else { throw WebError(.timeout, "\(shown): no complete answer in time") }
                return first
            }
        } catch let e as WebError {
            throw e
        } catch {
            throw classify(error, url: shown, maxBody: maxBody)
        }
    }

    /// AsyncHTTPClient's and NIO's errors, sorted into what a user acts on.
    static func classify(_ error: any Error, url: String, maxBody: Int) -> WebError {
        if error is NIOTooManyBytesError {
            return WebError(.tooLarge, "\(url): the response is larger than \(Quantity.formatBytes(UInt64(maxBody)))")
        }
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return WebError(.timeout, "\(url): no complete answer in time")
            case .connectTimeout:
                return WebError(.connect, "\(url): connecting timed out")
            case .remoteConnectionClosed:
                return WebError(.transport, "\(url): the server closed the connection")
            default:
                return WebError(.transport, "\(url): \(e)")
            }
        }
        if let e = error as? NIOConnectionError {
            let reasons = e.connectionErrors.map { "\($0.target): \(describe($0.error))" }
            let dns = e.dnsAAAAError ?? e.dnsAError
            let why = reasons.isEmpty ? (dns.map { "name lookup failed: \($0)" } ?? "no address") : reasons.joined(separator: "; ")
            return WebError(.connect, "\(url): cannot connect (\(why))")
        }
        if let e = error as? IOError { return WebError(.connect, "\(url): \(describe(e))") }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError || "\(type(of: error))".contains("SSL") {
            let text = "\(error)"
            let verify = text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") || error is NIOSSLExtraError
            return WebError(.tls, "\(url): TLS failed: " + (verify ? "certificate verify failed (\(text))" : text))
        }
        if error is ChannelError { return WebError(.transport, "\(url): \(error)") }
        if let e = error as? HTTPParserError { return WebError(.transport, "\(url): not a valid HTTP response (\(e))") }
        return WebError(.transport, "\(url): \(error)")
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        return "\(error)"
    }
}

/// Query strings for the APIs: `name=value` pairs, percent-encoded.
public func queryString(_ items: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return items.map { k, v in
        "\(k.addingPercentEncoding(withAllowedCharacters: allowed) ?? k)=\(v.addingPercentEncoding(withAllowedCharacters: allowed) ?? v)"
    }.joined(separator: "&")
}

/// `base` and `path` joined with one slash between them.
public func joinURL(_ base: String, _ path: String) -> String {
    var b = base
    while b.hasSuffix("/") { b.removeLast() }
    return b + (path.hasPrefix("/") ? path : "/" + path)
}
