import CLibSSH2
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import Basics
import NetIO

/// A bastion (OpenSSH's `ProxyJump`): the host a connection goes through, with
/// its own endpoint and options (user, port, identities, known_hosts and host
/// key policy). One level only: `options.jump` of a jump must be nil.
public final class SSHJump: Sendable, CustomStringConvertible {
    public let endpoint: SSHEndpoint
    public let options: SSHConnectOptions

    public init(endpoint: SSHEndpoint, options: SSHConnectOptions) {
        self.endpoint = endpoint
        self.options = options
    }

    /// How messages name the hop: `bastion jump-1 (10.0.0.1:22)`.
    public var description: String { "bastion \(endpoint.name) (\(endpoint.address):\(endpoint.port))" }
}

/// A host's SSH connection carried by a `direct-tcpip` channel of a bastion's
/// session.
///
/// libssh2 runs a session over a socket, so the target's session gets one end
/// of a `socketpair(AF_UNIX, SOCK_STREAM)` and a pump thread (one per tunnel,
/// a plain thread: it lives as long as the connection and must not hold a
/// thread of Swift's pool or of Dispatch's) moves bytes between the other end
/// and the channel. The pump owns the bastion's libssh2 session from the moment
/// the channel is open: nothing else touches it.
///
/// - Buffers: 64 KiB each way; a side is read only while its buffer has room,
///   so a slow reader holds the writer back (the channel's window does the
///   same on the bastion's side). Nothing is read that cannot be forwarded.
/// - Waiting: both sockets are polled in the directions that are actually
///   blocked (libssh2's `block_directions` for the bastion's socket), with a
///   250 ms timeout to look at the stop flag: no busy loop.
/// - The end: the target's session closes its end (EOF on ours) → what it wrote
///   last (its disconnect) is forwarded for up to 1 s, then the channel and the
///   bastion's session are closed. The target host closes the connection
///   (channel EOF: a reboot) or the bastion's connection fails → what came
///   before is delivered for up to 5 s, then our end is closed, so the target's
///   session reads EOF and reports the connection lost. Either way the bastion's
///   session is disconnected and freed and both descriptors are closed.
final class SSHTunnel: @unchecked Sendable {
    private let jump: SSHSession
    private let channel: OpaquePointer
    private let hop: String
    private let target: String
    private let logger: Logger?
    private let lock = NSLock()
    private var localFD: Int32
    /// The pump's end of the socketpair (tests look at it).
    let pumpFD: Int32
    private let stopFlag = LockedFlag()
    private let ended = DispatchSemaphore(value: 0)
    /// Set when the pump has ended (read by the session's `isAlive`).
    let endedFlag = LockedFlag()

    static let bufferSize = 64 * 1024

    private init(jump: SSHSession, channel: OpaquePointer, localFD: Int32, pumpFD: Int32, hop: String, target: String, logger: Logger?) {
        self.jump = jump
        self.channel = channel
        self.localFD = localFD
        self.pumpFD = pumpFD
        self.hop = hop
        self.target = target
        self.logger = logger
    }

    /// Connects and logs in to the bastion (its host key verified like any
    /// host's), opens a direct-tcpip channel to `target` and starts the pump.
    /// Errors are the target's (`host` is the target's name) and say which hop
    /// failed: `bastion jump-1 (10.0.0.1:22): host key ... CHANGED`, or
    /// `through bastion jump-1: web-003 (10.1.0.3:22) refused the channel: ...`.
    static func open(through jump: SSHJump, to target: SSHEndpoint, options: SSHConnectOptions, cancel: CancelFlag) async throws -> SSHTunnel {
        let hop = jump.description
        if let next = jump.options.jump {
            throw SSHError(.channelFailure, host: target.name,
                           "\(hop) is itself to be reached through bastion \(next.endpoint.name): rollctl goes through one bastion only",
                           hint: "reach the bastion directly (jump: none for it), or jump through the outer bastion straight to the host")
        }
        var o = jump.options
        if o.logger == nil {
            // The host's logger: the bastion's lines carry the bastion as `host` and the host as `for`.
            o.logger = options.logger
            o.logger?[metadataKey: "for"] = "\(target.name)"
        }
        let jumpOptions = o
        let session: SSHSession
        do {
            session = try await loginToBastion(jump.endpoint, jumpOptions)
        } catch var e as SSHError {
            e.host = target.name
            e.message = "\(hop): " + e.message
            throw e
        } catch {
            throw SSHError(.cancelled, host: target.name, "\(hop): cancelled while waiting to log in to the bastion")
        }
        do {
            let deadline = ContinuousClock.now + options.connectTimeout
            let channel = try await session.onQueue {
                OpaqueBox(try session.openDirectTCPIP(to: target, deadline: deadline, cancel: cancel, bastion: jump.endpoint.name))
            }.pointer
            var sv: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
                throw SSHError(.channelFailure, host: target.name, "through \(hop): socketpair failed: \(String(cString: strerror(errno)))")
            }
            for fd in sv { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            let tunnel = SSHTunnel(jump: session, channel: channel, localFD: sv[0], pumpFD: sv[1], hop: hop, target: target.name,
                                   logger: options.logger)
            tunnel.start()
            return tunnel
        } catch {
            await session.close()
            throw error
        }
    }

    /// One login to the bastion, in a `BastionLogins` slot. A handshake that fails
    /// (sshd closing the connection before its banner: `MaxStartups`, a busy
    /// bastion) is tried twice more after 100–400 ms; nothing else is retried.
    static func loginToBastion(_ endpoint: SSHEndpoint, _ options: SSHConnectOptions) async throws -> SSHSession {
        var attempt = 0
        while true {
            do {
                return try await BastionLogins.shared.holdingSlot(for: "\(endpoint.address):\(endpoint.port)") {
                    try await SSHSession.connect(to: endpoint, options: options)
                }
            } catch let e as SSHError where e.code == .handshakeFailed && attempt < 2 && !Task.isCancelled {
                attempt += 1
                options.logger?.debug("SSH: bastion \(endpoint.name): \(e.message); trying again")
                try? await Task.sleep(for: .milliseconds(Int.random(in: 100...400)))
            }
        }
    }

    /// The end the target's session runs on; from now on the session closes it.
    func takeLocalEnd() -> Int32 {
        lock.lock(); defer { lock.unlock() }
        let fd = localFD
        localFD = -1
        return fd
    }

    /// Closes the local end (if the target's session has not) and waits up to
    /// `within` for the pump to end: it forwards what the session wrote last,
    /// then closes the channel and the bastion's session. If it has not ended
    /// by then it is told to stop at once. `nil`: no waiting (it ends on its
    /// own, bounded by its flush deadlines).
    func finish(within: Duration?) {
        let fd = takeLocalEnd()
        if fd >= 0 { Glibc.close(fd) }
        guard let within else { return }
        if ended.wait(timeout: .now() + .milliseconds(Int(within.milliseconds))) == .timedOut {
            logger?.debug("SSH: tunnel through \(hop) did not end within \(within); stopping it")
            stopFlag.set(true)
        } else {
            ended.signal()  // for any other waiter
        }
    }

    /// The socket to the bastion (tests look at it); -1 once closed.
    var bastionFD: Int32 { jump.fd }

    /// True once the pump has ended (the channel, the bastion's session and the pump's descriptor are closed).
    var hasEnded: Bool { endedFlag.value }

    private func start() {
        let thread = Thread { [self] in self.pump() }
        thread.name = "rollctl.ssh.tunnel.\(target)"
        thread.stackSize = 1 << 20
        thread.start()
    }

    // MARK: - the pump

    private func pump() {
        let cap = Self.bufferSize
        let up = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)    // target's session → channel
        let down = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)  // channel → target's session
        defer { up.deallocate(); down.deallocate() }
        var upStart = 0, upEnd = 0, downStart = 0, downEnd = 0
        var upTotal = 0, downTotal = 0
        var targetClosed = false, channelEOF = false
        // libssh2 sends one packet at a time: when a write (or the window adjust
        // a read sends) is stuck half-sent, that same call must be repeated
        // before any other that sends (another one gets LIBSSH2_ERROR_BAD_USE).
        enum Pending { case write, read }
        var pending: Pending?
        var flushDeadline: ContinuousClock.Instant?
        var reason = "closed"
        let session = jump.session!
        let bastionFD = jump.fd

        loop: while true {
            if stopFlag.value { reason = "stopped"; break }
            if let d = flushDeadline, ContinuousClock.now >= d { reason = "gave up flushing"; break }
            var progressed = false

            // 1. From the target's session into `up`.
            if !targetClosed {
                if upStart > 0 && upEnd == cap { memmove(up, up + upStart, upEnd - upStart); upEnd -= upStart; upStart = 0 }
                if upEnd < cap {
                    let n = recv(pumpFD, up + upEnd, cap - upEnd, 0)
                    if n > 0 {
                        upEnd += n; progressed = true
                    } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                        targetClosed = true; progressed = true
                        flushDeadline = min(flushDeadline ?? .now + .seconds(1), .now + .seconds(1))
                    }
                }
            }
            // 2. From `up` into the channel. On EAGAIN libssh2 keeps the packet it
            // built and wants the same bytes again: `up` only grows at its end
            // until the write is done.
            if upEnd > upStart && !channelEOF && pending != .read {
                let n = libssh2_channel_write_ex(channel, 0, UnsafeRawPointer(up + upStart).assumingMemoryBound(to: CChar.self), upEnd - upStart)
                if n > 0 {
                    upStart += n; upTotal += n; progressed = true
                    if upStart == upEnd { upStart = 0; upEnd = 0 }
                    pending = nil
                } else if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) {
                    // 0: the channel's window is full (libssh2 waits for the bastion's window adjust).
                    pending = libssh2_session_block_directions(session) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 ? .write : nil
                } else {
                    reason = "writing to the channel failed: \(jump.lastError().message)"
                    break loop
                }
            }
            // 3. From the channel into `down`.
            if !channelEOF && pending != .write {
                if downStart > 0 && downEnd == cap { memmove(down, down + downStart, downEnd - downStart); downEnd -= downStart; downStart = 0 }
                if downEnd < cap {
                    let n = libssh2_channel_read_ex(channel, 0, UnsafeMutableRawPointer(down + downEnd).assumingMemoryBound(to: CChar.self), cap - downEnd)
                    pending = n == Int(LIBSSH2_ERROR_EAGAIN) && libssh2_session_block_directions(session) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 ? .read : nil
                    if n > 0 {
                        downEnd += n; progressed = true
                    } else if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) {
                        if libssh2_channel_eof(channel) != 0 {
                            channelEOF = true; progressed = true; reason = "the host closed the connection"
                            flushDeadline = min(flushDeadline ?? .now + .seconds(5), .now + .seconds(5))
                        }
                    } else {
                        reason = n == Int(LIBSSH2_ERROR_CHANNEL_CLOSED) ? "the channel was closed"
                            : "the bastion's connection failed: \(jump.lastError().message)"
                        channelEOF = true; progressed = true
                        flushDeadline = min(flushDeadline ?? .now + .seconds(5), .now + .seconds(5))
                        if jump.isConnectionError(Int32(n)) { jump.dead = true }
                    }
                }
            }
            // 4. From `down` to the target's session.
            if downEnd > downStart && !targetClosed {
                let n = send(pumpFD, down + downStart, downEnd - downStart, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    downStart += n; downTotal += n; progressed = true
                    if downStart == downEnd { downStart = 0; downEnd = 0 }
                } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    targetClosed = true; progressed = true
                }
            }
            // The end: everything the closing side sent went through (or cannot).
            if targetClosed && (upEnd == upStart || channelEOF) { if reason == "closed" { reason = "the session closed" }; break }
            if channelEOF && (downEnd == downStart || targetClosed) { break }
            if progressed { continue }

            // 5. Nothing moved: wait for a socket, in the directions that are blocked.
            // Once the channel is done the bastion's socket is of no interest (a
            // closed one would report POLLHUP on every poll).
            var bastionEvents: Int16 = 0
            if !channelEOF {
                let dir = libssh2_session_block_directions(session)
                if dir & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { bastionEvents |= Int16(POLLIN) }
                if dir & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { bastionEvents |= Int16(POLLOUT) }
                // Data for the channel may come whenever there is room for it.
                if downEnd < cap && pending != .write { bastionEvents |= Int16(POLLIN) }
            }
            var localEvents: Int16 = 0
            if !targetClosed && upEnd < cap { localEvents |= Int16(POLLIN) }
            if !targetClosed && downEnd > downStart { localEvents |= Int16(POLLOUT) }
            var fds = [pollfd(fd: bastionEvents == 0 ? -1 : bastionFD, events: bastionEvents, revents: 0),
                       pollfd(fd: localEvents == 0 ? -1 : pumpFD, events: localEvents, revents: 0)]
            let rc = poll(&fds, 2, 250)
            if rc > 0 && fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 && fds[0].revents & Int16(POLLIN) == 0 {
                // Nothing left to read from the bastion and its connection is gone.
                reason = "the bastion's connection failed"
                jump.dead = true
                channelEOF = true
                flushDeadline = min(flushDeadline ?? .now + .seconds(5), .now + .seconds(5))
            }
        }

        // Close our end first: the target's session reads EOF at once.
        shutdown(pumpFD, Int32(SHUT_RDWR))
        Glibc.close(pumpFD)
        if !jump.dead {
            // Bounded: a bastion that does not confirm is dropped with its session.
            let until = ContinuousClock.now + .milliseconds(500)
            while libssh2_channel_close(channel) == LIBSSH2_ERROR_EAGAIN && ContinuousClock.now < until {
                var p = pollfd(fd: bastionFD, events: Int16(POLLIN | POLLOUT), revents: 0)
                _ = poll(&p, 1, 50)
            }
        }
        // Frees the channel with the session.
        jump.teardown(reason: "tunnel closed")
        logger?.debug("SSH: tunnel through \(hop) ended (\(reason)); \(upTotal) bytes to the host, \(downTotal) from it")
        endedFlag.set(true)
        ended.signal()
    }
}

/// An OpaquePointer crossing the session's queue (the value is used by one thread at a time).
private struct OpaqueBox: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ p: OpaquePointer) { pointer = p }
}

extension SSHSession {
    /// Opens a `direct-tcpip` channel from the bastion (this session) to
    /// `target`. Runs on this session's queue. Errors are `target`'s.
    func openDirectTCPIP(to target: SSHEndpoint, deadline: ContinuousClock.Instant, cancel: CancelFlag, bastion: String) throws -> OpaquePointer {
        let through = "through bastion \(bastion): \(target.name) (\(target.address):\(target.port))"
        guard let s = session, !dead else {
            throw SSHError(.connectionLost, host: target.name, "\(through): the bastion's session is closed")
        }
        while true {
            if let ch = libssh2_channel_direct_tcpip_ex(s, target.address, Int32(target.port), "127.0.0.1", 0) { return ch }
            let e = lastError()
            if e.code == LIBSSH2_ERROR_EAGAIN {
                do {
                    try waitSocket(deadline: deadline, cancel: cancel, phase: "opening the channel", timeoutCode: .connectTimeout)
                } catch let w as SSHError {
                    throw SSHError(w.code, host: target.name,
                                   w.code == .cancelled ? "\(through): cancelled while opening the channel"
                                       : "\(through): the bastion did not open a channel to it within the connect timeout",
                                   hint: w.code == .cancelled ? nil : "the host may be down or rebooting, or the bastion cannot reach \(target.address):\(target.port)")
                }
                continue
            }
            if isConnectionError(e.code) {
                dead = true
                throw SSHError(.connectionLost, host: target.name, "\(through): the bastion dropped the connection (\(e.message))")
            }
            if e.message.contains("connect failed") {
                // sshd on the bastion tried and failed: refused, unreachable or timed out there.
                throw SSHError(.connectRefused, host: target.name, "\(through) refused the channel: the bastion could not connect to it (\(e.message))",
                               hint: "the host may be down or rebooting, or the bastion cannot reach \(target.address):\(target.port)")
            }
            if e.message.contains("administratively prohibited") {
                throw SSHError(.channelFailure, host: target.name, "\(through) refused the channel: \(e.message)",
                               hint: "the bastion's sshd does not allow TCP forwarding for this user (AllowTcpForwarding, PermitOpen, DisableForwarding in its sshd_config)")
            }
            throw SSHError(.channelFailure, host: target.name, "\(through) refused the channel: \(e.message)")
        }
    }
}

/// At most `limit` logins at once to one bastion. Every host behind a bastion
/// opens its own connection to it, and sshd drops connections that are not
/// yet authenticated beyond `MaxStartups` (10 by default, then at random): with
/// `--parallel 64` and one bastion, most handshakes would be refused. A slot is
/// held from the TCP connect to the end of authentication only; sshd learns of
/// the end a little later, hence 6, not 10, and a login dropped before its
/// banner is tried again (`SSHTunnel.loginToBastion`).
actor BastionLogins {
    static let shared = BastionLogins(limit: 6)

    let limit: Int
    private var running: [String: Int] = [:]
    private var waiting: [String: [(id: UInt64, resume: CheckedContinuation<Void, Error>)]] = [:]
    private var nextID: UInt64 = 0

    init(limit: Int) { self.limit = limit }

    func holdingSlot<T: Sendable>(for key: String, _ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire(key)
        do {
            let r = try await body()
            release(key)
            return r
        } catch {
            release(key)
            throw error
        }
    }

    private func acquire(_ key: String) async throws {
        if running[key, default: 0] < limit {
            running[key, default: 0] += 1
            return
        }
        let id = nextID
        nextID += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                waiting[key, default: []].append((id, c))
            }
        } onCancel: {
            Task { await self.cancelWaiter(key, id) }
        }
    }

    private func release(_ key: String) {
        if var queue = waiting[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[key] = queue.isEmpty ? nil : queue
            next.resume.resume()  // the slot passes on
        } else {
            running[key, default: 1] -= 1
            if running[key] == 0 { running[key] = nil }
        }
    }

    private func cancelWaiter(_ key: String, _ id: UInt64) {
        guard var queue = waiting[key], let i = queue.firstIndex(where: { $0.id == id }) else { return }
        let w = queue.remove(at: i)
        waiting[key] = queue.isEmpty ? nil : queue
        w.resume.resume(throwing: CancellationError())
    }

    /// Logins running and waiting for `key` (tests).
    func counts(_ key: String) -> (running: Int, waiting: Int) { (running[key] ?? 0, waiting[key]?.count ?? 0) }
}
