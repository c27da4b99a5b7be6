/// An SSH failure, classified so callers can act on it: retry later (the host
/// is rebooting), stop (a host key changed), or report (auth failed).
public struct SSHError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, Codable, CaseIterable {
        /// The name did not resolve.
        case nameResolution = "name_resolution"
        /// Nothing listens on the port (TCP RST to the SYN).
        case connectRefused = "connect_refused"
        /// No answer within the connect timeout.
        case connectTimeout = "connect_timeout"
        /// No route to the host or network.
        case hostUnreachable = "host_unreachable"
        /// TCP connected but the SSH handshake failed (banner, kex, ...).
        case handshakeFailed = "handshake_failed"
        /// The host's key is not in known_hosts (policy `strict`).
        case hostKeyUnknown = "host_key_unknown"
        /// The host's key differs from the one in known_hosts: possible man in the middle.
        case hostKeyMismatch = "host_key_mismatch"
        /// known_hosts could not be read or written.
        case knownHostsError = "known_hosts_error"
        /// No offered key or agent identity was accepted.
        case authFailed = "auth_failed"
        /// The server refused a channel or the exec request.
        case channelFailure = "channel_failure"
        /// The command did not finish within its timeout (the channel was closed).
        case commandTimeout = "command_timeout"
        /// The connection dropped while a command ran (e.g. the host rebooted).
        case connectionLost = "connection_lost"
        /// The Swift task was cancelled; the channel was closed.
        case cancelled
        /// The session was closed by the caller.
        case sessionClosed = "session_closed"
        /// A file upload was refused or failed on the host (SFTP: no such folder, permission
        /// denied, disk full, no SFTP subsystem).
        case fileTransfer = "file_transfer"
        /// The local file to upload could not be read.
        case localFile = "local_file"
    }

    public var code: Code
    /// The host as the user knows it (inventory name), for messages.
    public var host: String
    /// What happened, in words for a person.
    public var message: String
    /// What the user can do about it, when there is something to say.
    public var hint: String?

    public init(_ code: Code, host: String, _ message: String, hint: String? = nil) {
        self.code = code
        self.host = host
        self.message = message
        self.hint = hint
    }

    public var description: String {
        var s = "\(host): \(message)"
        if let hint { s += " (\(hint))" }
        return s
    }

    /// True for failures that mean "not reachable right now" — what a rebooting host shows.
    public var isTransient: Bool {
        switch code {
        case .connectRefused, .connectTimeout, .hostUnreachable, .connectionLost, .handshakeFailed: true
        default: false
        }
    }
}
