import CLibSSH2
import Dispatch
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import Basics
import NetIO

/// Where to connect and as whom.
public struct SSHEndpoint: Sendable, Equatable {
    /// The host's name as the user knows it (inventory name); used in messages.
    public var name: String
    /// Address or DNS name to connect to.
    public var address: String
    public var port: Int
    public var user: String

    public init(name: String, address: String, port: Int = 22, user: String = "root") {
        self.name = name
        self.address = address
        self.port = port
        self.user = user
    }
}

/// How rollctl treats a host key it does not know.
public enum HostKeyPolicy: String, Sendable, Codable, CaseIterable {
    /// Unknown or changed keys are errors (the default).
    case strict
    /// Trust on first use: unknown keys are appended to known_hosts; a changed key is still refused.
    case acceptNew = "accept-new"
    /// No verification at all. Only for throwaway labs; a warning is printed every run.
    case off
}

/// Everything a connection needs besides the endpoint.
public struct SSHConnectOptions: Sendable {
    public var connectTimeout: Duration
    /// OpenSSH-format known_hosts file (hashed entries allowed).
    public var knownHostsPath: String
    public var hostKeyPolicy: HostKeyPolicy
    /// Private key files (OpenSSH or PEM format; ed25519, ecdsa, rsa), tried in order.
    public var identityFiles: [String]
    /// Try the keys of an ssh-agent first.
    public var useAgent: Bool
    /// The agent's socket; `nil` means `SSH_AUTH_SOCK`.
    public var agentSocket: String?
    /// The connection's life at `debug`: connect, host key, commands and their exit, close.
    /// Never a key, a passphrase or a command's output.
    public var logger: Logger?
    /// The bastion to go through (`ProxyJump`), with its own endpoint and options;
    /// nil: connect directly. One level only: the jump's own options have no jump.
    public var jump: SSHJump?

    public init(connectTimeout: Duration = .seconds(10), knownHostsPath: String, hostKeyPolicy: HostKeyPolicy = .strict,
                identityFiles: [String] = [], useAgent: Bool = true, agentSocket: String? = nil, logger: Logger? = nil,
                jump: SSHJump? = nil) {
        self.logger = logger
        self.jump = jump
        self.connectTimeout = connectTimeout
        self.knownHostsPath = knownHostsPath
        self.hostKeyPolicy = hostKeyPolicy
        self.identityFiles = identityFiles
        self.useAgent = useAgent
        self.agentSocket = agentSocket
    }
}

/// The outcome of one remote command.
public struct ExecResult: Sendable, Equatable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    /// The exit status; meaningless when `exitSignal` is set.
    public var exitStatus: Int32
    /// The signal name without `SIG` (e.g. `KILL`) if the command died of a signal.
    public var exitSignal: String?

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    public var succeeded: Bool { exitStatus == 0 && exitSignal == nil }
}

/// Initialises libssh2 exactly once (`libssh2_init` is not thread-safe).
enum LibSSH2 {
    static let initialised: Bool = libssh2_init(0) == 0
}

/// One SSH connection to one host, reusable for many commands.
///
/// libssh2 calls block, so every call runs on the session's own serial dispatch
/// queue (a dedicated thread, never Swift's cooperative pool). Commands on one
/// session run one after another. The session is in non-blocking mode and polls
/// the socket, which gives every step a deadline and lets a cancelled Swift task
/// stop a running command within ~50 ms.
public final class SSHSession: @unchecked Sendable {
    public let endpoint: SSHEndpoint
    /// SHA256 fingerprint of the host key, OpenSSH style (`SHA256:...`).
    public private(set) var hostKeyFingerprint: String = ""
    public private(set) var hostKeyType: String = ""

    private let queue: DispatchQueue
    // `session` and `dead` belong to `queue`; every change is published to
    // `alive`, which `isAlive` reads under a lock without waiting for the queue.
    var session: OpaquePointer? { didSet { publishAlive() } }
    var fd: Int32 = -1
    var dead = false { didSet { publishAlive() } }
    /// The bastion's channel this session runs over (`fd` is its local end); nil when direct.
    /// Set before the session is opened; ended by `teardown`.
    var tunnel: SSHTunnel?
    private let alive = LockedFlag()
    /// With a bastion: set when the tunnel ended (the bastion's connection failed, or the host
    /// closed it). Assigned once in `connect`, before the session is shared.
    private var tunnelEnded: LockedFlag?

    /// Set once by `connect`, before the session is shared.
    private(set) var logger: Logger?

    private init(endpoint: SSHEndpoint) {
        self.endpoint = endpoint
        self.queue = DispatchQueue(label: "rollctl.ssh.\(endpoint.name)")
    }

    deinit {
        // May run on any thread, Swift's pool included: never waits for a tunnel.
        teardown(reason: "rollctl done", waitForTunnel: false)
    }

    /// Connects, verifies the host key and authenticates. With `options.jump`, the
    /// bastion first (its own host key and login), then this host through a
    /// direct-tcpip channel of the bastion's session (see `SSHTunnel`); this
    /// host's key is verified under its own address and port as always.
    public static func connect(to endpoint: SSHEndpoint, options: SSHConnectOptions) async throws -> SSHSession {
        precondition(LibSSH2.initialised, "libssh2_init failed")
        let s = SSHSession(endpoint: endpoint)
        var logger = options.logger
        logger?[metadataKey: "host"] = "\(endpoint.name)"
        s.logger = logger
        let cancel = CancelFlag()
        let started = ContinuousClock.now
        if let jump = options.jump {
            logger?.debug("SSH: connecting to \(endpoint.address):\(endpoint.port) through bastion \(jump.endpoint.name) (\(jump.endpoint.address):\(jump.endpoint.port))")
        } else {
            logger?.debug("SSH: connecting to \(endpoint.address):\(endpoint.port)")
        }
        do {
            try await withTaskCancellationHandler {
                if let jump = options.jump {
                    let tunnel = try await SSHTunnel.open(through: jump, to: endpoint, options: options, cancel: cancel)
                    s.tunnel = tunnel
                    s.tunnelEnded = tunnel.endedFlag
                }
                try await s.onQueue { try s.open(options: options, cancel: cancel) }
            } onCancel: {
                cancel.set()
            }
        } catch {
            logger?.debug("SSH: connect failed after \(ContinuousClock.now - started): \(error)")
            // Closes the socket now (and with a bastion, the tunnel and the bastion's session).
            await s.close()
            if let jump = options.jump, var e = error as? SSHError, !e.message.hasPrefix("bastion "), !e.message.hasPrefix("through bastion ") {
                e.message = "through bastion \(jump.endpoint.name): " + e.message
                throw e
            }
            throw error
        }
        logger?.debug("SSH: connected and authenticated in \(ContinuousClock.now - started), host key \(s.hostKeyType) \(s.hostKeyFingerprint)")
        return s
    }

    /// Runs `command` through the remote user's shell. stdout and stderr are read
    /// together, so a command that writes much to both never stalls. A non-zero
    /// exit is a result; failures to run it at all throw `SSHError`.
    public func exec(_ command: String, timeout: Duration? = nil) async throws -> ExecResult {
        let cancel = CancelFlag()
        let started = ContinuousClock.now
        logger?.debug("SSH $ \(command.count > 300 ? command.prefix(300) + "…" : command)")
        do {
            let r = try await withTaskCancellationHandler {
                try await onQueue { try self.runExec(command, timeout: timeout, cancel: cancel) }
            } onCancel: {
                cancel.set()
            }
            logger?.debug("SSH exit \(r.exitSignal.map { "signal " + $0 } ?? String(r.exitStatus)) in \(ContinuousClock.now - started) (\(r.stdout.count) bytes out, \(r.stderr.count) err)")
            return r
        } catch {
            logger?.debug("SSH command failed after \(ContinuousClock.now - started): \(error)")
            throw error
        }
    }

    /// Closes the connection. Further commands fail with `sessionClosed`.
    public func close() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            queue.async {
                self.teardown(reason: "rollctl done")
                c.resume()
            }
        }
    }

    /// False once the connection was lost or closed; open a new session then.
    ///
    /// Never waits for the session's queue (a `queue.sync` here would block a
    /// thread of Swift's cooperative pool for as long as a command runs on a
    /// slow host): it reads a flag the queue keeps up to date. While a command
    /// runs the session counts as alive; a connection that drops during it
    /// turns false when the command fails. Through a bastion it also turns
    /// false as soon as the tunnel ends, idle or not (the bastion went away).
    public var isAlive: Bool { alive.value && !(tunnelEnded?.value ?? false) }

    private func publishAlive() { alive.set(session != nil && !dead) }

    // MARK: - queue plumbing

    func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            queue.async {
                c.resume(with: Result { try body() })
            }
        }
    }

    func teardown(reason: String, waitForTunnel: Bool = true) {
        if let s = session {
            if !dead {
                // Best effort, bounded: a dead peer must not hang us.
                libssh2_session_set_blocking(s, 0)
                _ = rollctl_session_disconnect(s, reason)
            }
            libssh2_session_free(s)
            session = nil
        }
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        dead = true
        if let t = tunnel {
            // Our end is closed: the pump forwards what is left, then closes the
            // channel and the bastion's session. Bounded: a stuck bastion is dropped.
            tunnel = nil
            t.finish(within: waitForTunnel ? .seconds(2) : nil)
        }
    }

    func error(_ code: SSHError.Code, _ message: String, hint: String? = nil) -> SSHError {
        SSHError(code, host: endpoint.name, message, hint: hint)
    }

    func lastError() -> (code: Int32, message: String) {
        guard let s = session else { return (0, "no session") }
        var msg: UnsafeMutablePointer<CChar>? = nil
        var len: Int32 = 0
        let code = libssh2_session_last_error(s, &msg, &len, 0)
        return (code, msg.map { String(cString: $0) } ?? "unknown error")
    }

    // MARK: - waiting

    /// Waits until the socket is ready in the direction libssh2 is blocked on.
    func waitSocket(deadline: ContinuousClock.Instant?, cancel: CancelFlag, phase: String, timeoutCode: SSHError.Code) throws {
        if cancel.isSet { throw error(.cancelled, "\(phase) cancelled") }
        var events: Int16 = 0
        let dir = libssh2_session_block_directions(session)
        if dir & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if dir & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var waitMs: Int32 = 50
        if let deadline {
            let left = deadline - ContinuousClock.now
            if left <= .zero { throw error(timeoutCode, "\(phase) timed out") }
            waitMs = Int32(min(50, max(1, left.milliseconds)))
        }
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        _ = poll(&pfd, 1, waitMs)
    }

    /// Repeats a libssh2 call while it reports EAGAIN.
    func retrying(_ phase: String, deadline: ContinuousClock.Instant?, cancel: CancelFlag,
                          timeoutCode: SSHError.Code, _ call: () -> Int32) throws -> Int32 {
        while true {
            let rc = call()
            if rc != LIBSSH2_ERROR_EAGAIN { return rc }
            try waitSocket(deadline: deadline, cancel: cancel, phase: phase, timeoutCode: timeoutCode)
        }
    }

    func isConnectionError(_ rc: Int32) -> Bool {
        rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT
            || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT || rc == LIBSSH2_ERROR_TIMEOUT
    }

    // MARK: - connect

    private func open(options: SSHConnectOptions, cancel: CancelFlag) throws {
        let deadline = ContinuousClock.now + options.connectTimeout
        fd = try tunnel?.takeLocalEnd() ?? connectTCP(deadline: deadline, cancel: cancel)
        guard let s = rollctl_session_init() else {
            throw error(.handshakeFailed, "libssh2 could not allocate a session")
        }
        session = s
        libssh2_session_set_blocking(s, 0)
        let rc = try retrying("SSH handshake", deadline: deadline, cancel: cancel, timeoutCode: .connectTimeout) {
            libssh2_session_handshake(s, fd)
        }
        if rc != 0 {
            let e = lastError()
            dead = true
            throw error(.handshakeFailed, "SSH handshake with \(endpoint.address):\(endpoint.port) failed: \(e.message)")
        }
        try verifyHostKey(options: options)
        try authenticate(options: options, deadline: deadline, cancel: cancel)
    }

    private func connectTCP(deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Int32 {
        do {
            return try TCPConnect.connect(name: endpoint.name, address: endpoint.address, port: endpoint.port, deadline: deadline, cancel: cancel)
        } catch {
            let code: SSHError.Code = switch error.code {
            case .nameResolution: .nameResolution
            case .refused: .connectRefused
            case .timeout: .connectTimeout
            case .unreachable: .hostUnreachable
            case .cancelled: .cancelled
            }
            throw SSHError(code, host: error.host, error.message, hint: error.hint)
        }
    }

    private func verifyHostKey(options: SSHConnectOptions) throws {
        var len = 0
        var type: Int32 = 0
        guard let key = libssh2_session_hostkey(session, &len, &type) else {
            throw error(.handshakeFailed, "the server sent no host key")
        }
        let keyBytes = [UInt8](UnsafeRawBufferPointer(start: key, count: len))
        hostKeyType = HostKeyType.name(libssh2Type: type)
        hostKeyFingerprint = HostKeyType.sha256Fingerprint(session: session!)
        if options.hostKeyPolicy == .off { return }

        let store = KnownHostsFile(path: options.knownHostsPath)
        let verdict = try store.check(session: session!, host: endpoint.address, port: endpoint.port,
                                      key: keyBytes, libssh2Type: type, hostName: endpoint.name)
        switch verdict {
        case .match:
            return
        case .mismatch:
            throw error(.hostKeyMismatch,
                        "host key for \(endpoint.address):\(endpoint.port) has CHANGED: server offers \(hostKeyType) \(hostKeyFingerprint), which does not match \(options.knownHostsPath) — someone may be intercepting the connection, or the host was reinstalled",
                        hint: "if the change is expected, remove the old entry with: ssh-keygen -R \(KnownHostsFile.hostPattern(endpoint.address, endpoint.port)) -f \(options.knownHostsPath)")
        case .notFound:
            if options.hostKeyPolicy == .acceptNew {
                try store.append(session: session!, host: endpoint.address, port: endpoint.port, key: keyBytes, libssh2Type: type)
                return
            }
            throw error(.hostKeyUnknown,
                        "host key for \(endpoint.address):\(endpoint.port) is not known: server offers \(hostKeyType) \(hostKeyFingerprint), not in \(options.knownHostsPath)",
                        hint: "verify the fingerprint out of band, then add the key (ssh-keyscan -p \(endpoint.port) \(endpoint.address) >> \(options.knownHostsPath)) or use host_key_policy: accept-new")
        }
    }

    private func authenticate(options: SSHConnectOptions, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws {
        let user = endpoint.user
        var tried: [String] = []
        if options.useAgent, let sock = options.agentSocket ?? ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"], !sock.isEmpty {
            if try authenticateWithAgent(socket: sock, user: user, deadline: deadline, cancel: cancel) { return }
            tried.append("ssh-agent keys")
        }
        var problems: [String] = []
        for path in options.identityFiles {
            guard access(path, R_OK) == 0 else {
                problems.append("\(path): cannot read")
                continue
            }
            let rc = try retrying("authentication", deadline: deadline, cancel: cancel, timeoutCode: .connectTimeout) {
                rollctl_userauth_publickey_fromfile(session, user, path, "")
            }
            if rc == 0 { return }
            if isConnectionError(rc) { dead = true; throw error(.connectionLost, "connection lost during authentication") }
            tried.append(path)
            if rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED {
                problems.append("\(path): \(lastError().message)")
            }
        }
        var message = "authentication as \(user) failed"
        if tried.contains(where: Self.isRSAKey) {
            problems.append("RSA keys: libssh2 1.10 signs with ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses unless PubkeyAcceptedAlgorithms includes +ssh-rsa; prefer an ed25519 or ecdsa key")
        }
        message += tried.isEmpty ? ": no key to offer" : "; tried \(tried.joined(separator: ", "))"
        if !problems.isEmpty { message += " [\(problems.joined(separator: "; "))]" }
        throw error(.authFailed, message, hint: "check the identity file and that its public key is in \(user)'s authorized_keys on the host")
    }

    static func isRSAKey(_ path: String) -> Bool {
        if let pub = try? String(contentsOfFile: path + ".pub", encoding: .utf8), pub.hasPrefix("ssh-rsa ") { return true }
        if let head = FileManager.default.contents(atPath: path)?.prefix(64), String(decoding: head, as: UTF8.self).contains("BEGIN RSA") { return true }
        return false
    }

    private func authenticateWithAgent(socket: String, user: String, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Bool {
        guard let agent = libssh2_agent_init(session) else { return false }
        libssh2_agent_set_identity_path(agent, socket)
        defer {
            libssh2_agent_disconnect(agent)
            libssh2_agent_free(agent)
        }
        guard libssh2_agent_connect(agent) == 0, libssh2_agent_list_identities(agent) == 0 else { return false }
        var prev: UnsafeMutablePointer<libssh2_agent_publickey>? = nil
        while true {
            var identity: UnsafeMutablePointer<libssh2_agent_publickey>? = nil
            let rc = libssh2_agent_get_identity(agent, &identity, prev)
            if rc != 0 { return false }
            let auth = try retrying("agent authentication", deadline: deadline, cancel: cancel, timeoutCode: .connectTimeout) {
                libssh2_agent_userauth(agent, user, identity)
            }
            if auth == 0 { return true }
            if isConnectionError(auth) { dead = true; throw error(.connectionLost, "connection lost during authentication") }
            prev = identity
        }
    }

    // MARK: - exec

    private func runExec(_ command: String, timeout: Duration?, cancel: CancelFlag) throws -> ExecResult {
        guard let s = session, !dead else {
            throw error(.sessionClosed, "the SSH session is closed", hint: "reconnect")
        }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var channel: OpaquePointer?
        while channel == nil {
            channel = rollctl_channel_open_session(s)
            if channel == nil {
                let e = lastError()
                if e.code == LIBSSH2_ERROR_EAGAIN {
                    try waitSocket(deadline: deadline, cancel: cancel, phase: "opening a channel", timeoutCode: .commandTimeout)
                    continue
                }
                if isConnectionError(e.code) { dead = true; throw error(.connectionLost, "connection lost: \(e.message)") }
                throw error(.channelFailure, "could not open a channel: \(e.message)")
            }
        }
        guard let ch = channel else { throw error(.channelFailure, "could not open a channel") }
        var freed = false
        defer { if !freed { abandon(ch) } }

        let rc = try retrying("starting the command", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            rollctl_channel_exec(ch, command)
        }
        if rc != 0 {
            if isConnectionError(rc) { dead = true; throw error(.connectionLost, "connection lost: \(lastError().message)") }
            throw error(.channelFailure, "the server refused to run the command: \(lastError().message)")
        }
        _ = try retrying("closing stdin", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            rollctl_channel_send_eof(ch)
        }

        var out: [UInt8] = []
        var err: [UInt8] = []
        let bufSize = 32 * 1024
        let buf = UnsafeMutablePointer<CChar>.allocate(capacity: bufSize)
        defer { buf.deallocate() }
        while true {
            var progressed = false
            for (stream, isErr) in [(Int32(0), false), (Int32(SSH_EXTENDED_DATA_STDERR), true)] {
                while true {
                    let n = rollctl_channel_read(ch, stream, buf, bufSize)
                    if n > 0 {
                        let bytes = UnsafeRawBufferPointer(start: buf, count: n)
                        if isErr { err.append(contentsOf: bytes) } else { out.append(contentsOf: bytes) }
                        progressed = true
                        continue
                    }
                    if n == Int(LIBSSH2_ERROR_EAGAIN) || n == 0 { break }
                    if isConnectionError(Int32(n)) || n == Int(LIBSSH2_ERROR_CHANNEL_CLOSED) {
                        dead = isConnectionError(Int32(n))
                        throw error(.connectionLost, "connection lost while running the command (\(lastError().message))",
                                    hint: "the host may have rebooted or dropped off the network")
                    }
                    throw error(.channelFailure, "reading command output failed: \(lastError().message)")
                }
            }
            if libssh2_channel_eof(ch) != 0 { break }
            if !progressed {
                try waitSocket(deadline: deadline, cancel: cancel, phase: "command", timeoutCode: .commandTimeout)
            }
        }

        _ = try retrying("closing the channel", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            libssh2_channel_close(ch)
        }
        _ = try retrying("closing the channel", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            libssh2_channel_wait_closed(ch)
        }
        let status = libssh2_channel_get_exit_status(ch)
        var sig: UnsafeMutablePointer<CChar>? = nil
        var sigLen = 0
        _ = libssh2_channel_get_exit_signal(ch, &sig, &sigLen, nil, nil, nil, nil)
        var signalName: String? = nil
        if let sig, sigLen > 0 {
            signalName = String(decoding: UnsafeRawBufferPointer(start: sig, count: sigLen), as: UTF8.self)
            free(sig)
        }
        while libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN {
            try? waitSocket(deadline: ContinuousClock.now + .seconds(1), cancel: CancelFlag(), phase: "free", timeoutCode: .commandTimeout)
        }
        freed = true
        return ExecResult(stdout: out, stderr: err, exitStatus: status, exitSignal: signalName)
    }

    /// Gives up on a channel after a timeout, cancellation or error by closing
    /// the whole connection. libssh2 1.10 cannot signal a remote process, and
    /// sshd does not confirm a channel close while the command runs, so this is
    /// the only bounded way out; OpenSSH then closes the command's pipes.
    /// `SSHHost` opens a new session on the next command.
    private func abandon(_ ch: OpaquePointer) {
        if !dead {
            dead = true
        }
        _ = libssh2_channel_free(ch)
        teardown(reason: "command abandoned")
    }
}

/// A Bool behind a lock: written by the session's queue, read from anywhere.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set(_ value: Bool) { lock.lock(); flag = value; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}

