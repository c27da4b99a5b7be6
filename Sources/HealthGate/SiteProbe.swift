#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Basics
import NetIO

/// How one test-site request ended, as the customer's browser would feel it.
public enum SiteOutcome: String, Sendable, Codable, CaseIterable, Comparable {
    /// A complete 2xx response.
    case ok
    /// Nothing listens: the TCP connection was refused.
    case refused
    /// The connection was reset (TCP RST: `ECONNRESET`, or `EPIPE` while sending).
    /// Its own class because it points at the host's network stack or a process
    /// stealing the port (MISSION.md: the `nginx -t` / `reuseport` story).
    case reset
    /// No complete response within the timeout: one deadline for the whole
    /// request (lookup, connect, send, receive), however the bytes trickle in.
    case timeout
    /// The server answered with a 5xx status.
    case http5xx
    /// Anything else: 3xx/4xx, a response that is not HTTP, malformed or over
    /// one of `HTTPResponseLimits`' caps, a name that does not resolve, an
    /// unreachable network, an empty reply.
    case other

    public static func < (a: SiteOutcome, b: SiteOutcome) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One test-site request and how it ended.
public struct SiteAttempt: Sendable, Equatable, Codable {
    public var outcome: SiteOutcome
    /// Time from the start of the request (name lookup included) to its outcome.
    public var latencySeconds: Double
    /// The HTTP status, when a status line was received.
    public var status: Int?
    /// What happened, for a person: `HTTP 404`, `ECONNRESET while receiving`, …
    public var detail: String?

    public init(outcome: SiteOutcome, latencySeconds: Double, status: Int? = nil, detail: String? = nil) {
        self.outcome = outcome
        self.latencySeconds = latencySeconds
        self.status = status
        self.detail = detail
    }
}

/// Fetches a test-site URL once. `SiteProbe` is the real one; tests of the gate
/// runner substitute scripted outcomes.
public protocol SiteProbing: Sendable {
    /// Never throws: every way a request can end is a `SiteAttempt`.
    func fetch(_ url: HTTPURL, timeout: Duration) async -> SiteAttempt
}

/// The test-site probe: one HTTP/1.1 GET from the orchestrator, written on POSIX
/// sockets so the failure classes are exact (URLSession folds a TCP reset into a
/// generic "network connection lost"). It sends one small request with
/// `Connection: close` and reads the response to its end, nothing more: the probe
/// costs the host what one visitor costs it.
///
/// The blocking socket calls run on a thread of their own per request (never on
/// Swift's cooperative pool, and never queued behind other hosts' requests, so
/// a wave of hung sites cannot delay the healthy ones); cancelling the calling
/// task ends the request within ~50 ms (it then counts as `timeout` with detail
/// "cancelled").
///
/// Every byte from the site is hostile (issue 14): the response is read by
/// `HTTPResponseParser` under `limits` (status line, header lines, header count
/// and bytes, body, chunk sizes), and a response over a cap or malformed is
/// `other` with the reason as detail. `timeout` is one deadline for the whole
/// request, from the name lookup to the last byte: a server that drips its
/// answer a byte at a time is a `timeout` at that deadline, not later.
public struct SiteProbe: SiteProbing {
    /// A response over one of these is cut and classed `other`: a test site is small.
    public var limits: HTTPResponseLimits

    public init(limits: HTTPResponseLimits = .standard) {
        self.limits = limits
    }

    public func fetch(_ url: HTTPURL, timeout: Duration) async -> SiteAttempt {
        // `HTTPURL.parse` and `expand` give the probe only http URLs; one built by hand may not be.
        guard !url.tls else {
            return SiteAttempt(outcome: .other, latencySeconds: 0, detail: "test-site URL \"\(url)\": only http:// URLs are supported")
        }
        let flag = CancelFlag()
        let limits = self.limits
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<SiteAttempt, Never>) in
                let once = ResumeOnce(continuation)
                let thread = Thread {
                    once.resume(HTTPExchange.get(url, timeout: timeout, limits: limits, cancel: flag))
                }
                thread.name = "rollctl site probe"
                thread.stackSize = 512 << 10
                thread.start()
                // getaddrinfo cannot be interrupted: stop waiting for a lookup that hangs.
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout.seconds + 0.25) {
                    flag.set()
                    once.resume(SiteAttempt(outcome: .timeout, latencySeconds: timeout.seconds,
                                            detail: "timed out while resolving \(url.host)"))
                }
            }
        } onCancel: {
            flag.set()
        }
    }

    /// Parses `url` and fetches it; an unusable URL is an `other` attempt.
    public func fetch(_ url: String, timeout: Duration) async -> SiteAttempt {
        do {
            return await fetch(try HTTPURL.parse(url), timeout: timeout)
        } catch {
            return SiteAttempt(outcome: .other, latencySeconds: 0, detail: "test-site \(error)")
        }
    }
}

/// Resumes a continuation with the first value given; later ones are dropped.
final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?
    init(_ c: CheckedContinuation<T, Never>) { continuation = c }
    func resume(_ value: T) {
        lock.lock()
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume(returning: value)
    }
}


/// The blocking request. Every wait is a `poll` bounded by the deadline and
/// sliced so cancellation is noticed.
enum HTTPExchange {
    struct Failure: Error {
        var outcome: SiteOutcome
        var detail: String
        var status: Int? = nil
    }

    static func get(_ url: HTTPURL, timeout: Duration, limits: HTTPResponseLimits, cancel: CancelFlag) -> SiteAttempt {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeout)
        func elapsed() -> Double { (clock.now - start).seconds }
        do {
            let fd = try openConnection(url, deadline: deadline, clock: clock, cancel: cancel)
            defer { close(fd) }
            let request = "GET \(url.path) HTTP/1.1\r\nHost: \(url.authority)\r\nUser-Agent: rollctl-health-gate\r\n"
                + "Accept: */*\r\nConnection: close\r\n\r\n"
            try sendAll(fd, Array(request.utf8), deadline: deadline, clock: clock, cancel: cancel)
            let status = try readResponse(fd, deadline: deadline, clock: clock, cancel: cancel, limits: limits)
            switch status {
            case 200..<300: return SiteAttempt(outcome: .ok, latencySeconds: elapsed(), status: status)
            case 500..<600: return SiteAttempt(outcome: .http5xx, latencySeconds: elapsed(), status: status, detail: "HTTP \(status)")
            case 300..<400:
                return SiteAttempt(outcome: .other, latencySeconds: elapsed(), status: status,
                                   detail: "HTTP \(status) (redirects are not followed)")
            default: return SiteAttempt(outcome: .other, latencySeconds: elapsed(), status: status, detail: "HTTP \(status)")
            }
        } catch {
            return SiteAttempt(outcome: error.outcome, latencySeconds: elapsed(), status: error.status, detail: error.detail)
        }
    }

    /// Milliseconds until the deadline, at most one cancellation slice.
    private static func slice(_ deadline: ContinuousClock.Instant, _ clock: ContinuousClock, _ cancel: CancelFlag, _ phase: String) throws(Failure) -> Int32 {
        if cancel.isSet { throw Failure(outcome: .timeout, detail: "cancelled while \(phase)") }
        let left = deadline - clock.now
        if left <= .zero { throw Failure(outcome: .timeout, detail: "timed out while \(phase)") }
        return Int32(min(50, max(1, (left.seconds * 1000).rounded(.up))))
    }

    private static func waitFor(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant, clock: ContinuousClock,
                                cancel: CancelFlag, phase: String) throws(Failure) -> Int16 {
        while true {
            let ms = try slice(deadline, clock, cancel, phase)
            var p = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&p, 1, ms)
            if n > 0 { return p.revents }
            if n < 0 && errno != EINTR { throw failure(errno, phase) }
        }
    }

    static func failure(_ code: Int32, _ phase: String) -> Failure {
        let name = errnoName(code)
        switch code {
        case ECONNREFUSED: return Failure(outcome: .refused, detail: "\(name) while \(phase)")
        case ECONNRESET, EPIPE: return Failure(outcome: .reset, detail: "\(name) while \(phase)")
        case ETIMEDOUT: return Failure(outcome: .timeout, detail: "\(name) while \(phase)")
        default: return Failure(outcome: .other, detail: "\(name) while \(phase): \(String(cString: strerror(code)))")
        }
    }

    static func errnoName(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: "ECONNREFUSED"
        case ECONNRESET: "ECONNRESET"
        case EPIPE: "EPIPE"
        case ETIMEDOUT: "ETIMEDOUT"
        case EHOSTUNREACH: "EHOSTUNREACH"
        case ENETUNREACH: "ENETUNREACH"
        default: "errno \(code)"
        }
    }

    private static func openConnection(_ url: HTTPURL, deadline: ContinuousClock.Instant, clock: ContinuousClock,
                                cancel: CancelFlag) throws(Failure) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard rc == 0, let first = list else {
            let text = rc == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(rc))
            throw Failure(outcome: .other, detail: "cannot resolve \(url.host): \(text)")
        }
        defer { freeaddrinfo(list) }
        var lastFailure = Failure(outcome: .other, detail: "no address for \(url.host)")
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let ai = entry {
            entry = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if fd < 0 { lastFailure = failure(errno, "creating a socket"); continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            #if canImport(Darwin)
            var one: Int32 = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
            #endif
            do throws(Failure) {
                if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                    let code = errno
                    guard code == EINPROGRESS || code == EINTR else { throw failure(code, "connecting") }
                    _ = try waitFor(fd, events: Int16(POLLOUT), deadline: deadline, clock: clock, cancel: cancel, phase: "connecting")
                    var soError: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                    if soError != 0 { throw failure(soError, "connecting") }
                }
                return fd
            } catch {
                close(fd)
                lastFailure = error
                if error.outcome == .timeout { break }
            }
        }
        throw lastFailure
    }

    private static func sendAll(_ fd: Int32, _ bytes: [UInt8], deadline: ContinuousClock.Instant, clock: ContinuousClock,
                             cancel: CancelFlag) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            #if canImport(Glibc)
            let flags = Int32(MSG_NOSIGNAL)
            #else
            let flags: Int32 = 0
            #endif
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, flags) }
            if n >= 0 { offset += n; continue }
            let code = errno
            guard code == EAGAIN || code == EWOULDBLOCK || code == EINTR else { throw failure(code, "sending the request") }
            _ = try waitFor(fd, events: Int16(POLLOUT), deadline: deadline, clock: clock, cancel: cancel, phase: "sending the request")
        }
    }

    /// Reads the response to its end (by its framing, or the close) and returns the status code.
    private static func readResponse(_ fd: Int32, deadline: ContinuousClock.Instant, clock: ContinuousClock,
                                     cancel: CancelFlag, limits: HTTPResponseLimits) throws(Failure) -> Int {
        var response = HTTPResponseParser(limits: limits)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        func ended(_ progress: HTTPResponseParser.Progress) throws(Failure) -> Int? {
            switch progress {
            case .needMore: return nil
            case .complete: return response.head?.status
            case .malformed(let reason): throw Failure(outcome: .other, detail: reason, status: response.status)
            }
        }
        do throws(Failure) {
            while true {
                let phase = response.head == nil ? "waiting for the response" : "receiving the body"
                // The deadline holds even while bytes keep coming.
                _ = try slice(deadline, clock, cancel, phase)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n > 0 {
                    if let status = try ended(response.feed(buffer[0..<n])) { return status }
                    continue
                }
                if n == 0 {
                    if let status = try ended(response.finish()) { return status }
                    continue  // unreachable: finish() always ends the response
                }
                let code = errno
                guard code == EAGAIN || code == EWOULDBLOCK || code == EINTR else { throw failure(code, phase) }
                _ = try waitFor(fd, events: Int16(POLLIN), deadline: deadline, clock: clock, cancel: cancel, phase: phase)
            }
        } catch {
            var f = error
            f.status = f.status ?? response.status  // a timeout or reset in the body still names the status
            throw f
        }
    }
}
