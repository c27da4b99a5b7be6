#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// TLS for SMTP STARTTLS, from the system's OpenSSL 3 (`libssl.so.3`, which
/// libssh2 already pulls in), loaded at run time with `dlopen`: no TLS stack to
/// compile (swift-nio-ssl builds BoringSSL: minutes on a 2-core CI), and the
/// distribution's security updates apply. TLS 1.2 at least; the server's
/// certificate is verified against the system trust store (or a given CA file)
/// and must match the host name or IP address rollctl connected to.
///
/// Used on one thread at a time over a non-blocking socket: every
/// WANT_READ/WANT_WRITE is a `poll` bounded by the caller's deadline.
final class TLSSession {
    private let lib: OpenSSL
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer

    struct Failure: Error { var message: String; var wantRead: Bool = false; var wantWrite: Bool = false; var closed: Bool = false }

    /// Handshake on `fd`; `wait(events)` polls the socket or throws at the deadline.
    init(fd: Int32, host: String, caFile: String?, wait: (Int16) throws(LineConnection.Failure) -> Void) throws(LineConnection.Failure) {
        let lib: OpenSSL
        switch OpenSSL.shared {
        case .success(let l): lib = l
        case .failure(let e): throw LineConnection.Failure(beforeConnect: false, description: e.description)
        }
        self.lib = lib
        guard let method = lib.TLS_client_method(), let ctx = lib.SSL_CTX_new(method) else {
            throw LineConnection.Failure(beforeConnect: false, description: "TLS: cannot create a context: \(lib.errors())")
        }
        _ = lib.SSL_CTX_ctrl(ctx, 123 /* SSL_CTRL_SET_MIN_PROTO_VERSION */, 0x0303 /* TLS1_2_VERSION */, nil)
        let trusted = caFile.map { lib.SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? lib.SSL_CTX_set_default_verify_paths(ctx)
        guard trusted == 1 else {
            lib.SSL_CTX_free(ctx)
            throw LineConnection.Failure(beforeConnect: false, description: "TLS: cannot load trusted certificates\(caFile.map { " from \($0)" } ?? ""): \(lib.errors())")
        }
        lib.SSL_CTX_set_verify(ctx, 1 /* SSL_VERIFY_PEER */, nil)
        guard let ssl = lib.SSL_new(ctx) else {
            lib.SSL_CTX_free(ctx)
            throw LineConnection.Failure(beforeConnect: false, description: "TLS: cannot create a session: \(lib.errors())")
        }
        self.ctx = ctx
        self.ssl = ssl
        var v4 = in_addr(), v6 = in6_addr()
        let isIP = inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
        if isIP {
            _ = lib.X509_VERIFY_PARAM_set1_ip_asc(lib.SSL_get0_param(ssl), host)
        } else {
            _ = host.withCString { lib.SSL_ctrl(ssl, 55 /* SSL_CTRL_SET_TLSEXT_HOSTNAME */, 0, UnsafeMutableRawPointer(mutating: $0)) }
            _ = lib.SSL_set1_host(ssl, host)
        }
        _ = lib.SSL_set_fd(ssl, fd)
        while true {
            let rc = lib.SSL_connect(ssl)
            if rc == 1 { break }
            do throws(Failure) {
                try check(rc)
            } catch {
                if error.wantRead || error.wantWrite {
                    try wait(error.wantRead ? Int16(POLLIN) : Int16(POLLOUT))
                    continue
                }
                let verify = lib.SSL_get_verify_result(ssl)
                let why = verify != 0 ? "certificate verify failed: \(String(cString: lib.X509_verify_cert_error_string(verify)))" : error.message
                throw LineConnection.Failure(beforeConnect: false, description: "TLS handshake with \(host) failed: \(why)")
            }
        }
    }

    deinit {
        lib.SSL_free(ssl)
        lib.SSL_CTX_free(ctx)
    }

    /// Maps an OpenSSL return value to want-read / want-write / closed / an error.
    private func check(_ rc: Int32) throws(Failure) {
        let code = lib.SSL_get_error(ssl, rc)
        switch code {
        case 2: throw Failure(message: "", wantRead: true)
        case 3: throw Failure(message: "", wantWrite: true)
        case 6: throw Failure(message: "closed by the peer", closed: true)
        case 5:
            let e = errno
            throw Failure(message: e == 0 ? "connection closed during TLS" : String(cString: strerror(e)), closed: e == 0)
        default: throw Failure(message: lib.errors())
        }
    }

    /// Bytes written, or a want/closed/error failure.
    func write(_ bytes: [UInt8], from offset: Int) throws(Failure) -> Int {
        let rc = bytes.withUnsafeBytes { lib.SSL_write(ssl, $0.baseAddress! + offset, Int32(min(bytes.count - offset, Int(Int32.max)))) }
        if rc > 0 { return Int(rc) }
        try check(rc)
        return 0
    }

    /// Bytes read (0: the peer closed), or a want/error failure.
    func read(into chunk: inout [UInt8]) throws(Failure) -> Int {
        let rc = chunk.withUnsafeMutableBytes { lib.SSL_read(ssl, $0.baseAddress!, Int32(min($0.count, Int(Int32.max)))) }
        if rc > 0 { return Int(rc) }
        do throws(Failure) { try check(rc) } catch {
            if error.closed { return 0 }
            throw error
        }
        return 0
    }

    func shutdown() { _ = lib.SSL_shutdown(ssl) }
}

/// The few OpenSSL 3 functions STARTTLS needs, resolved once from the system libraries.
package final class OpenSSL: @unchecked Sendable {
    typealias P = OpaquePointer
    let TLS_client_method: @convention(c) () -> P?
    let SSL_CTX_new: @convention(c) (P?) -> P?
    let SSL_CTX_free: @convention(c) (P?) -> Void
    let SSL_CTX_ctrl: @convention(c) (P?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    let SSL_CTX_set_default_verify_paths: @convention(c) (P?) -> Int32
    let SSL_CTX_load_verify_locations: @convention(c) (P?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32
    let SSL_CTX_set_verify: @convention(c) (P?, Int32, UnsafeRawPointer?) -> Void
    let SSL_new: @convention(c) (P?) -> P?
    let SSL_free: @convention(c) (P?) -> Void
    let SSL_set_fd: @convention(c) (P?, Int32) -> Int32
    let SSL_ctrl: @convention(c) (P?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    let SSL_set1_host: @convention(c) (P?, UnsafePointer<CChar>?) -> Int32
    let SSL_get0_param: @convention(c) (P?) -> P?
    let X509_VERIFY_PARAM_set1_ip_asc: @convention(c) (P?, UnsafePointer<CChar>?) -> Int32
    let SSL_connect: @convention(c) (P?) -> Int32
    let SSL_read: @convention(c) (P?, UnsafeMutableRawPointer?, Int32) -> Int32
    let SSL_write: @convention(c) (P?, UnsafeRawPointer?, Int32) -> Int32
    let SSL_get_error: @convention(c) (P?, Int32) -> Int32
    let SSL_get_verify_result: @convention(c) (P?) -> Int
    let SSL_shutdown: @convention(c) (P?) -> Int32
    let ERR_get_error: @convention(c) () -> UInt
    let ERR_error_string_n: @convention(c) (UInt, UnsafeMutablePointer<CChar>?, Int) -> Void
    let X509_verify_cert_error_string: @convention(c) (Int) -> UnsafePointer<CChar>

    package static let shared: Result<OpenSSL, Unavailable> = load()

    package struct Unavailable: Error, CustomStringConvertible { package var description: String }

    private init(ssl: UnsafeMutableRawPointer, crypto: UnsafeMutableRawPointer) throws(OpenSSLMissing) {
        func f<T>(_ lib: UnsafeMutableRawPointer, _ name: String, _: T.Type = T.self) throws(OpenSSLMissing) -> T {
            guard let sym = dlsym(lib, name) else { throw OpenSSLMissing(symbol: name) }
            return unsafeBitCast(sym, to: T.self)
        }
        TLS_client_method = try f(ssl, "TLS_client_method")
        SSL_CTX_new = try f(ssl, "SSL_CTX_new")
        SSL_CTX_free = try f(ssl, "SSL_CTX_free")
        SSL_CTX_ctrl = try f(ssl, "SSL_CTX_ctrl")
        SSL_CTX_set_default_verify_paths = try f(ssl, "SSL_CTX_set_default_verify_paths")
        SSL_CTX_load_verify_locations = try f(ssl, "SSL_CTX_load_verify_locations")
        SSL_CTX_set_verify = try f(ssl, "SSL_CTX_set_verify")
        SSL_new = try f(ssl, "SSL_new")
        SSL_free = try f(ssl, "SSL_free")
        SSL_set_fd = try f(ssl, "SSL_set_fd")
        SSL_ctrl = try f(ssl, "SSL_ctrl")
        SSL_set1_host = try f(ssl, "SSL_set1_host")
        SSL_get0_param = try f(ssl, "SSL_get0_param")
        X509_VERIFY_PARAM_set1_ip_asc = try f(crypto, "X509_VERIFY_PARAM_set1_ip_asc")
        SSL_connect = try f(ssl, "SSL_connect")
        SSL_read = try f(ssl, "SSL_read")
        SSL_write = try f(ssl, "SSL_write")
        SSL_get_error = try f(ssl, "SSL_get_error")
        SSL_get_verify_result = try f(ssl, "SSL_get_verify_result")
        SSL_shutdown = try f(ssl, "SSL_shutdown")
        ERR_get_error = try f(crypto, "ERR_get_error")
        ERR_error_string_n = try f(crypto, "ERR_error_string_n")
        X509_verify_cert_error_string = try f(crypto, "X509_verify_cert_error_string")
    }

    struct OpenSSLMissing: Error { var symbol: String }

    private static func load() -> Result<OpenSSL, Unavailable> {
        let flags = RTLD_NOW | RTLD_GLOBAL
        guard let crypto = dlopen("libcrypto.so.3", flags), let ssl = dlopen("libssl.so.3", flags) else {
            return .failure(Unavailable(description: "STARTTLS needs the system's OpenSSL 3 (libssl3: apt-get install libssl3): \(String(cString: dlerror()))"))
        }
        do { return .success(try OpenSSL(ssl: ssl, crypto: crypto)) } catch {
            return .failure(Unavailable(description: "STARTTLS: libssl.so.3 lacks \(error.symbol)"))
        }
    }

    /// The thread's OpenSSL error queue, drained, as text.
    func errors() -> String {
        var parts: [String] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            parts.append(String(cString: buf))
        }
        return parts.isEmpty ? "unknown TLS error" : parts.joined(separator: "; ")
    }
}
