import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1

/// What a read-only endpoint answers for one GET.
public struct HTTPReply: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public init(status: Int = 200, contentType: String, _ text: String) {
        self.init(status: status, contentType: contentType, body: Array(text.utf8))
    }

    public static func notFound(_ text: String = "not found\n") -> HTTPReply {
        HTTPReply(status: 404, contentType: "text/plain; charset=utf-8", text)
    }
}

/// A read-only HTTP/1.1 endpoint on NIO's server pipeline (no hand-written HTTP): `GET`/`HEAD`
/// of a path (query string dropped) answered by `handle`; other methods get 405. Requests are
/// small and bounded by NIO's parser; request bodies are ignored. `handle` runs off the event
/// loop (it may read the journal).
public final class HTTPEndpoint: Sendable {
    public let address: String
    public let port: Int
    private let channel: any Channel

    private init(channel: any Channel, address: String, port: Int) {
        self.channel = channel
        self.address = address
        self.port = port
    }

    /// Binds `host:port` (port 0: any free one; `port` then says which).
    public static func start(host: String, port: Int, handle: @escaping @Sendable (_ path: String) -> HTTPReply) async throws -> HTTPEndpoint {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(Handler(handle: handle))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        return HTTPEndpoint(channel: channel, address: host, port: channel.localAddress?.port ?? port)
    }

    public func close() async {
        try? await channel.close()
    }

    /// `http://127.0.0.1:8080` (IPv6 in brackets).
    public var baseURL: String { "http://\(address.contains(":") ? "[\(address)]" : address):\(port)" }

    /// Parses `host:port` (`127.0.0.1:9465`, `[::1]:9465`, `:9465` for loopback).
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// True for 127.0.0.0/8, ::1 and `localhost`.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let handle: @Sendable (String) -> HTTPReply
        var head: HTTPRequestHead?

        init(handle: @escaping @Sendable (String) -> HTTPReply) { self.handle = handle }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                head = nil
                let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
                let loop = context.eventLoop
                let bound = NIOLoopBound((self, context), eventLoop: loop)
                let handle = self.handle
                // The handler may block (the journal): off the event loop, answered back on it.
                DispatchQueue.global().async {
                    let reply = h.method == .GET || h.method == .HEAD
                        ? handle(path) : HTTPReply(status: 405, contentType: "text/plain; charset=utf-8", "read-only: GET only\n")
                    loop.execute {
                        let (me, context) = bound.value
                        me.respond(context, h, reply)
                    }
                }
            }
        }

        func respond(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ reply: HTTPReply) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: reply.contentType)
            headers.add(name: "Content-Length", value: "\(reply.body.count)")
            headers.add(name: "Cache-Control", value: "no-store")
            headers.add(name: "X-Content-Type-Options", value: "nosniff")
            let keepAlive = h.isKeepAlive
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            let status = HTTPResponseStatus(statusCode: reply.status)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
            if h.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: reply.body)))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive { done.whenComplete { [context] _ in context.close(promise: nil) } }
        }
    }
}

/// `/metrics` alone (plan apply --metrics-listen): `page()` in the Prometheus text format.
public enum MetricsEndpoint {
    public static func start(host: String, port: Int, page: @escaping @Sendable () -> String) async throws -> HTTPEndpoint {
        try await HTTPEndpoint.start(host: host, port: port) { path in
            path == "/metrics" ? HTTPReply(contentType: "text/plain; version=0.0.4; charset=utf-8", page())
                : .notFound("rollctl serves /metrics only\n")
        }
    }
}
