import SSH
import HealthGate

/// A host reached over SSH: one session reused for every command, reopened
/// when it was lost (after a reboot). This is where `SSH` meets the
/// `HostReader` protocol that HealthGate and the rollout logic speak.
public actor SSHHost: HostReader {
    public nonisolated let hostName: String
    public nonisolated let endpoint: SSHEndpoint
    public nonisolated let options: SSHConnectOptions
    private var session: SSHSession?
    /// How many SSH connections this host has opened (handshakes), for reports.
    public private(set) var connections = 0

    public init(endpoint: SSHEndpoint, options: SSHConnectOptions) {
        self.hostName = endpoint.name
        self.endpoint = endpoint
        self.options = options
    }

    /// Opens the session now (or reuses it); errors are classified `SSHError`s.
    public func connect() async throws {
        if let s = session, s.isAlive { return }
        session = nil
        connections += 1
        session = try await SSHSession.connect(to: endpoint, options: options)
    }

    public func exec(_ command: String, timeout: Duration?) async throws -> ExecResult {
        try await connect()
        let s = session!
        do {
            return try await s.exec(command, timeout: timeout)
        } catch let e as SSHError where e.code == .sessionClosed {
            // The session was found closed before the command was sent (a command
            // queued before it on the same session lost the connection): nothing
            // ran, so one retry on a new connection is safe. (`isAlive` does not
            // wait for commands in flight, so a reentrant call can get here.)
            if session === s { session = nil }
            try await connect()
            do {
                return try await session!.exec(command, timeout: timeout)
            } catch let e as SSHError where e.code == .connectionLost || e.code == .sessionClosed {
                session = nil
                throw e
            }
        } catch let e as SSHError where e.code == .connectionLost {
            if session === s { session = nil }
            throw e
        }
    }

    public nonisolated func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        let r = try await exec(command, timeout: timeout)
        return HostCommandResult(stdout: r.stdoutText, stderr: r.stderrText, exitStatus: r.exitStatus, exitSignal: r.exitSignal)
    }

    /// Uploads over the host's session (SFTP). A failed upload closed the session; the next
    /// command opens a new one.
    public func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                       progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult {
        try await connect()
        let s = session!
        do {
            return try await s.upload(file: localPath, to: remotePath, pacer: pacer, progress: progress)
        } catch {
            if session === s, !s.isAlive { session = nil }
            throw error
        }
    }

    public func close() async {
        if let s = session { await s.close() }
        session = nil
    }
}

/// Runs `body` for every element with at most `limit` running at once, and
/// returns the results in input order. Cancellation propagates to every task.
public func concurrentMap<T: Sendable, R: Sendable>(
    _ items: [T], limit: Int, _ body: @escaping @Sendable (Int, T) async -> R
) async -> [R] {
    var results = [R?](repeating: nil, count: items.count)
    await withTaskGroup(of: (Int, R).self) { group in
        var next = 0
        func addNext() {
            guard next < items.count else { return }
            let i = next, item = items[i]
            next += 1
            group.addTask { (i, await body(i, item)) }
        }
        for _ in 0..<max(1, min(limit, items.count)) { addNext() }
        while let (i, r) = await group.next() {
            results[i] = r
            addNext()
        }
    }
    return results.map { $0! }
}
