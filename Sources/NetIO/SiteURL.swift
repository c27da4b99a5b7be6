import Foundation
import Basics
/// A plain-HTTP URL the test-site probe can fetch: `http://host[:port]/path[?query]`.
/// The host is a name, an IPv4 literal or a bracketed IPv6 literal. Only `http`
/// is supported: the probe measures the host's web stack, not TLS.
public struct SiteURL: Sendable, Equatable, Codable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    /// Path and query as sent in the request line; always starts with `/`.
    public var path: String

    public init(host: String, port: UInt16 = 80, path: String = "/") {
        self.host = host
        self.port = port
        self.path = path.hasPrefix("/") ? path : "/" + path
    }

    /// The `Host:` header value.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }

    public var description: String { "http://\(authority)\(path)" }

    /// Parses `text`; throws `SiteURLError` saying what is wrong with it.
    public static func parse(_ text: String) throws(SiteURLError) -> SiteURL {
        let t = text.trimmed
        let scheme = "http://"
        guard t.lowercased().hasPrefix(scheme) else {
            throw SiteURLError(url: text, reason: "only http:// URLs are supported")
        }
        let rest = t.dropFirst(scheme.count)
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<pathStart]
        var path = String(rest[pathStart...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.contains("@") else {
            throw SiteURLError(url: text, reason: "user info in the URL is not supported")
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw SiteURLError(url: text, reason: "unterminated IPv6 literal")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw SiteURLError(url: text, reason: "garbage after IPv6 literal") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw SiteURLError(url: text, reason: "no host") }
        guard !host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw SiteURLError(url: text, reason: "invalid host \"\(host)\"")
        }
        var port: UInt16 = 80
        if let p = portText {
            guard let n = UInt16(p), n > 0 else { throw SiteURLError(url: text, reason: "invalid port \"\(p)\"") }
            port = n
        }
        guard !path.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw SiteURLError(url: text, reason: "whitespace in path")
        }
        return SiteURL(host: String(host), port: port, path: path)
    }

    /// Expands a template such as `http://{address}:8080/health?from={name}`.
    /// `{address}` becomes the host's address (bracketed when it is IPv6),
    /// `{name}` its inventory name; the result must parse as a `SiteURL`, so an
    /// inventory value can never smuggle a second host, a header or a space in.
    public static func expand(template: String, address: String, name: String) throws(SiteURLError) -> SiteURL {
        let addr = address.contains(":") && !address.hasPrefix("[") ? "[\(address)]" : address
        for value in [address, name] where value.contains(where: { $0.isWhitespace || "/?#@".contains($0) }) {
            throw SiteURLError(url: template, reason: "inventory value \"\(value)\" cannot go into a URL")
        }
        let text = template
            .replacingOccurrences(of: "{address}", with: addr)
            .replacingOccurrences(of: "{name}", with: name)
        return try parse(text)
    }
}

/// A URL (or URL template) the test-site probe cannot use.
public struct SiteURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var url: String
    public var reason: String
    public var description: String { "test-site URL \"\(url)\": \(reason)" }
}

