/// What HealthGate (and the rollout logic) needs from a host: run a read-only
/// command and get its output. `SSH` implements it over libssh2 (the adapter
/// lives in `Rollout`); unit tests replace it with an in-process fake.
public protocol HostReader: Sendable {
    /// The host's inventory name, used in evidence and errors.
    var hostName: String { get }
    /// Runs `command` through the host's shell. Throws when the command could not
    /// be run (connection lost, timeout); a non-zero exit is a result, not an error.
    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult
}

/// The outcome of one command on a host.
public struct HostCommandResult: Sendable, Equatable {
    public var stdout: String
    public var stderr: String
    public var exitStatus: Int32
    /// The signal name (e.g. `KILL`) when the command was killed by a signal.
    public var exitSignal: String?

    public init(stdout: String, stderr: String = "", exitStatus: Int32 = 0, exitSignal: String? = nil) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitStatus = exitStatus
        self.exitSignal = exitSignal
    }
}
