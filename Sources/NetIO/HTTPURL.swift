import Foundation
import Basics
/// An HTTP URL rollctl fetches or posts to: `http[s]://host[:port]/path[?query]`,
/// the one URL type of the test-site probe and the webhook channel. The host is a
/// name, an IPv4 literal or a bracketed IPv6 literal; user info is refused; a
/// fragment is dropped (it is never sent). The probe takes only `http` (it
/// measures the host's web stack, not TLS); the webhook also `https`.
public struct HTTPURL: Sendable, Equatable, Codable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    /// Path and query as sent in the request line; always starts with `/`.
    public var path: String
    /// `https`: the connection is TLS (default port 443).
    public var tls: Bool

    /// `port` nil: the scheme's default, 80 or 443.
    public init(host: String, port: UInt16? = nil, path: String = "/", tls: Bool = false) {
        self.host = host
        self.port = port ?? (tls ? 443 : 80)
        self.path = path.hasPrefix("/") ? path : "/" + path
        self.tls = tls
    }

    public var scheme: String { tls ? "https" : "http" }

    /// The `Host:` header value: the port only when it is not the scheme's default.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (tls ? 443 : 80) ? h : "\(h):\(port)"
    }

    public var description: String { "\(scheme)://\(authority)\(path)" }

    /// Parses `text`; throws `HTTPURLError` saying what is wrong with it. Without
    /// `allowHTTPS` only `http://` is accepted ("only http:// URLs are supported").
    public static func parse(_ text: String, allowHTTPS: Bool = false) throws(HTTPURLError) -> HTTPURL {
        func fail(_ part: HTTPURLError.Part, _ reason: String) -> HTTPURLError { HTTPURLError(url: text, part: part, reason: reason) }
        let t = text.trimmed
        let tls = allowHTTPS && t.lowercased().hasPrefix("https://")
        guard tls || t.lowercased().hasPrefix("http://") else {
            throw fail(.scheme, allowHTTPS ? "only http:// and https:// URLs are supported" : "only http:// URLs are supported")
        }
        let rest = t.dropFirst(tls ? "https://".count : "http://".count)
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<pathStart]
        var path = String(rest[pathStart...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.contains("@") else { throw fail(.host, "user info in the URL is not supported") }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail(.host, "unterminated IPv6 literal") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail(.host, "garbage after IPv6 literal") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw fail(.host, "no host") }
        guard !host.contains(where: { $0.isWhitespace || $0 == "/" }) else { throw fail(.host, "invalid host \"\(host)\"") }
        var port: UInt16?
        if let p = portText {
            guard let n = UInt16(p), n > 0 else { throw fail(.port, "invalid port \"\(p)\"") }
            port = n
        }
        guard !path.contains(where: { $0.isWhitespace || $0.isNewline }) else { throw fail(.path, "whitespace in path") }
        guard path.allSatisfy(\.isASCII) else { throw fail(.path, "non-ASCII character in path (percent-encode it)") }
        return HTTPURL(host: String(host), port: port, path: path, tls: tls)
    }

    /// Expands a test-site template such as `http://{address}:8080/health?from={name}`.
    /// `{address}` becomes the host's address (bracketed when it is IPv6),
    /// `{name}` its inventory name; the result must parse as an `http://` URL, so an
    /// inventory value can never smuggle a second host, a header or a space in.
    public static func expand(template: String, address: String, name: String) throws(HTTPURLError) -> HTTPURL {
        let addr = address.contains(":") && !address.hasPrefix("[") ? "[\(address)]" : address
        for value in [address, name] where value.contains(where: { $0.isWhitespace || "/?#@".contains($0) }) {
            throw HTTPURLError(url: template, part: .substitution, reason: "inventory value \"\(value)\" cannot go into a URL")
        }
        let text = template
            .replacingOccurrences(of: "{address}", with: addr)
            .replacingOccurrences(of: "{name}", with: name)
        return try parse(text)
    }
}

/// A URL (or URL template) that cannot be used: which part is wrong and why.
/// The probe reports `reason` (as "test-site URL ...: reason"); the webhook
/// words its own message per `part`.
public struct HTTPURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Part: Sendable, Equatable {
        case scheme, host, port, path
        /// An inventory value put into a template.
        case substitution
    }
    public var url: String
    public var part: Part
    public var reason: String
    public var description: String { "URL \"\(url)\": \(reason)" }
}
