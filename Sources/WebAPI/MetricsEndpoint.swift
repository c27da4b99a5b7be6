import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1

/// A read-only `/metrics` listener on NIO's HTTP/1 server (no hand-written HTTP): `GET /metrics`
/// answers `page()` in the Prometheus text format, anything else 404 (405 for other methods).
/// Requests are small and bounded by NIO's parser; bodies sent to it are ignored.
public final class MetricsEndpoint: Sendable {
    public let address: String
    public let port: Int
    private let channel: any Channel

    private init(channel: any Channel, address: String, port: Int) {
        self.channel = channel
        self.address = address
        self.port = port
    }

    /// Binds `host:port` (port 0: any free one; `port` then says which).
    public static func start(host: String, port: Int, page: @escaping @Sendable () -> String) async throws -> MetricsEndpoint {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(Handler(page: page))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        return MetricsEndpoint(channel: channel, address: host, port: channel.localAddress?.port ?? port)
    }

    public func close() async {
        try? await channel.close()
    }

    /// Parses `host:port` (`127.0.0.1:9465`, `[::1]:9465`, `:9465` for loopback).
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let page: @Sendable () -> String
        var head: HTTPRequestHead?

        init(page: @escaping @Sendable () -> String) { self.page = page }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                head = nil
                let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
                let (status, body, type): (HTTPResponseStatus, String, String)
                if path != "/metrics" {
                    (status, body, type) = (.notFound, "rollctl serves /metrics only\n", "text/plain; charset=utf-8")
                } else if h.method != .GET && h.method != .HEAD {
                    (status, body, type) = (.methodNotAllowed, "GET /metrics\n", "text/plain; charset=utf-8")
                } else {
                    (status, body, type) = (.ok, page(), "text/plain; version=0.0.4; charset=utf-8")
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: type)
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                let keepAlive = h.isKeepAlive
                if !keepAlive { headers.add(name: "Connection", value: "close") }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
                if h.method != .HEAD {
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                }
                let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
                if !keepAlive { done.whenComplete { [context] _ in context.close(promise: nil) } }
            }
        }
    }
}
