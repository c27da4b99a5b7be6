#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenSSL
import Foundation

/// TLS for SMTP STARTTLS and https webhooks, from the system's OpenSSL 3
/// (`COpenSSL`, a system-library target: `libssl-dev`'s headers and
/// `libssl.so.3`, which libssh2 already pulls in): no TLS stack to compile
/// (swift-nio-ssl builds BoringSSL: minutes on a 2-core CI), and the
/// distribution's security updates apply. TLS 1.2 at least; the server's
/// certificate is verified against the system trust store (or a given CA file)
/// and must match the host name or IP address rollctl connected to.
///
/// Every OpenSSL call's return value is checked; a failure names the step and
/// carries the thread's OpenSSL error queue as text.
///
/// Used on one thread at a time over a non-blocking socket: every
/// WANT_READ/WANT_WRITE is a `poll` bounded by the caller's deadline.
final class TLSSession {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    /// After SSL_ERROR_SYSCALL or SSL_ERROR_SSL OpenSSL forbids further I/O,
    /// SSL_shutdown included.
    private var broken = false

    struct Failure: Error { var message: String; var wantRead: Bool = false; var wantWrite: Bool = false; var closed: Bool = false }

    /// Handshake on `fd`; `wait(events)` polls the socket or throws at the deadline.
    init(fd: Int32, host: String, caFile: String?, wait: (Int16) throws(LineConnection.Failure) -> Void) throws(LineConnection.Failure) {
        func fail(_ what: String) -> LineConnection.Failure {
            LineConnection.Failure(beforeConnect: false, description: "TLS: \(what): \(OpenSSL.errors())")
        }
        if case .failure(let e) = OpenSSL.shared { throw LineConnection.Failure(beforeConnect: false, description: e.description) }
        // An empty name would turn hostname verification off (SSL_set1_host with "" clears the
        // list), and C strings end at the first NUL: neither can name the host we connected to.
        guard !host.isEmpty, !host.utf8.contains(0) else {
            throw LineConnection.Failure(beforeConnect: false, description: "TLS: no host name to verify the certificate against")
        }
        ERR_clear_error()

        guard let method = TLS_client_method() else { throw fail("no TLS client method") }
        guard let ctx = SSL_CTX_new(method) else { throw fail("cannot create a context") }
        guard rollctl_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1,
              rollctl_SSL_CTX_get_min_proto_version(ctx) == TLS1_2_VERSION else {
            SSL_CTX_free(ctx)
            throw fail("cannot require TLS 1.2 or later")
        }
        // LineConnection retries a write that wanted read/write with the same bytes and
        // length, but a Swift array's address is not promised to stay put between calls.
        let mode = Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        guard rollctl_SSL_CTX_set_mode(ctx, mode) & mode == mode else {
            SSL_CTX_free(ctx)
            throw fail("cannot set the write-buffer mode")
        }
        let trusted = caFile.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
        guard trusted == 1 else {
            SSL_CTX_free(ctx)
            throw fail("cannot load trusted certificates\(caFile.map { " from \($0)" } ?? "")")
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)  // void; read back below
        guard SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER != 0 else {
            SSL_CTX_free(ctx)
            throw fail("cannot turn certificate verification on")
        }
        guard let ssl = SSL_new(ctx) else {
            SSL_CTX_free(ctx)
            throw fail("cannot create a session")
        }
        // From here on deinit frees both, on every throw as well.
        self.ctx = ctx
        self.ssl = ssl

        var v4 = in_addr(), v6 = in6_addr()
        let isIP = inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
        if isIP {
            // No SNI for an address (RFC 6066); the certificate must name the address (SAN IP).
            guard let param = SSL_get0_param(ssl), X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 else {
                throw fail("cannot set the IP address \(host) to verify")
            }
        } else {
            guard rollctl_SSL_set_tlsext_host_name(ssl, host) == 1 else { throw fail("cannot set the server name (SNI) \(host)") }
            guard SSL_set1_host(ssl, host) == 1 else { throw fail("cannot set the host name \(host) to verify") }
        }
        guard SSL_set_fd(ssl, fd) == 1 else { throw fail("cannot attach the socket") }

        while true {
            ERR_clear_error()
            errno = 0
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let error = failure(rc)
            if error.wantRead || error.wantWrite {
                try wait(error.wantRead ? Int16(POLLIN) : Int16(POLLOUT))
                continue
            }
            let verify = SSL_get_verify_result(ssl)
            let why = verify != X509_V_OK ? "certificate verify failed: \(String(cString: X509_verify_cert_error_string(verify)))" : error.message
            throw LineConnection.Failure(beforeConnect: false, description: "TLS handshake with \(host) failed: \(why)")
        }
        // With SSL_VERIFY_PEER a failed verification already fails SSL_connect; the session
        // is used only when OpenSSL also reports X509_V_OK for a certificate the server sent.
        let verify = SSL_get_verify_result(ssl)
        guard verify == X509_V_OK else {
            throw LineConnection.Failure(beforeConnect: false, description:
                "TLS handshake with \(host) failed: certificate verify failed: \(String(cString: X509_verify_cert_error_string(verify)))")
        }
        guard let peer = SSL_get1_peer_certificate(ssl) else {
            throw LineConnection.Failure(beforeConnect: false, description: "TLS handshake with \(host) failed: the server sent no certificate")
        }
        X509_free(peer)
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    /// What an OpenSSL I/O call's return value (≤ 0) means, by SSL_get_error: want-read /
    /// want-write / closed / an error. Call right after the I/O call, with the error queue
    /// and errno cleared before it.
    private func failure(_ rc: Int32) -> Failure {
        let e = errno
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ: return Failure(message: "", wantRead: true)
        case SSL_ERROR_WANT_WRITE: return Failure(message: "", wantWrite: true)
        case SSL_ERROR_ZERO_RETURN: return Failure(message: "closed by the peer", closed: true)
        case SSL_ERROR_SYSCALL:
            broken = true
            let queued = OpenSSL.errorQueue()
            if !queued.isEmpty { return Failure(message: queued) }
            return Failure(message: e == 0 ? "connection closed during TLS" : String(cString: strerror(e)), closed: e == 0)
        case SSL_ERROR_SSL:
            broken = true
            return Failure(message: OpenSSL.errors())
        default:
            broken = true
            return Failure(message: "unexpected OpenSSL state (SSL_get_error \(code)): \(OpenSSL.errors())")
        }
    }

    /// Bytes written, or a want/closed/error failure.
    func write(_ bytes: [UInt8], from offset: Int) throws(Failure) -> Int {
        guard offset < bytes.count else { return 0 }
        guard !broken else { throw Failure(message: "the TLS session failed before") }
        ERR_clear_error()
        errno = 0
        let rc = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + offset, Int32(min(bytes.count - offset, Int(Int32.max)))) }
        if rc > 0 { return Int(rc) }
        throw failure(rc)
    }

    /// Bytes read (0: the peer closed), or a want/error failure.
    func read(into chunk: inout [UInt8]) throws(Failure) -> Int {
        guard !broken else { throw Failure(message: "the TLS session failed before") }
        ERR_clear_error()
        errno = 0
        let rc = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress!, Int32(min($0.count, Int(Int32.max)))) }
        if rc > 0 { return Int(rc) }
        let error = failure(rc)
        if error.closed { return 0 }
        throw error
    }

    /// Sends close_notify, once, without waiting for the peer's (the socket closes next).
    /// Not after a fatal error: OpenSSL forbids it. A failure here changes nothing for
    /// the caller (the exchange is over), so it is only cleared from the thread's queue.
    func shutdown() {
        guard !broken else { return }
        broken = true
        ERR_clear_error()
        let rc = SSL_shutdown(ssl)
        if rc < 0 { ERR_clear_error() }
    }
}

/// The system's OpenSSL: initialised once, and its error queue as text.
package enum OpenSSL {
    package struct Unavailable: Error, CustomStringConvertible { package var description: String }

    /// OPENSSL_init_ssl's verdict (1: the library is ready). Checked by the notice
    /// sender's preflight and by every `TLSSession`.
    package static let shared: Result<Void, Unavailable> = {
        let opts = UInt64(OPENSSL_INIT_LOAD_SSL_STRINGS) | UInt64(OPENSSL_INIT_LOAD_CRYPTO_STRINGS)
        guard OPENSSL_init_ssl(opts, nil) == 1 else {
            return .failure(Unavailable(description: "TLS: the system's OpenSSL (libssl3) failed to initialise: \(errors())"))
        }
        return .success(())
    }()

    /// The thread's OpenSSL error queue, drained, as text ("" when empty).
    static func errorQueue() -> String {
        var parts: [String] = []
        while true {
            var data: UnsafePointer<CChar>?
            var flags: Int32 = 0
            let e = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            var part = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            if flags & ERR_TXT_STRING != 0, let data, data.pointee != 0 { part += " (\(String(cString: data)))" }
            parts.append(part)
        }
        return parts.joined(separator: "; ")
    }

    /// The thread's OpenSSL error queue, drained, as text.
    static func errors() -> String {
        let text = errorQueue()
        return text.isEmpty ? "unknown TLS error" : text
    }
}
