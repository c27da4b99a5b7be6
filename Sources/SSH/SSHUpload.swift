import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Basics
import NetIO

/// A rate shared by several uploads (`kernel.upload_bandwidth`): each chunk sent reserves
/// its time on one schedule, and the sender sleeps until its reservation is due. Sleeps
/// happen on the sessions' own threads, never on Swift's pool.
public final class TransferPacer: @unchecked Sendable {
    public let bytesPerSecond: UInt64
    private let lock = NSLock()
    private var next = ContinuousClock.now

    public init(bytesPerSecond: UInt64) {
        self.bytesPerSecond = max(1, bytesPerSecond)
    }

    /// How long the sender of `bytes` (just sent) waits before sending more.
    func reserve(_ bytes: Int) -> Duration {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        // No credit for idle time beyond a quarter second: a burst after a pause stays short.
        if next < now - .milliseconds(250) { next = now - .milliseconds(250) }
        next += .nanoseconds(Int64(Double(bytes) / Double(bytesPerSecond) * 1e9))
        return next > now ? next - now : .zero
    }
}

/// What an upload did.
public struct UploadResult: Sendable, Equatable {
    public var bytes: UInt64
    public var elapsed: Duration
    public init(bytes: UInt64, elapsed: Duration) {
        self.bytes = bytes
        self.elapsed = elapsed
    }
}

extension SSHSession {
    /// Largest chunk read from the file and handed to libssh2 at once: libssh2 splits it into
    /// SFTP writes of ~30 KB and keeps them all in flight (its pipelining).
    static let uploadChunk = 1 << 20

    /// Uploads the local file `localPath` to `remotePath` over this session's SFTP subsystem,
    /// creating or truncating it with `mode`. The transfer fails when no byte was accepted for
    /// `stallTimeout` (a stalled peer), and a cancelled task stops it within ~50 ms. The
    /// caller checks the file on the host afterwards (SFTP reports writes, not what landed).
    ///
    /// A failed or cancelled upload closes the whole connection (an SFTP handle left half-way
    /// cannot be trusted); `SSHHost` opens a new one for the next command. `progress` is called
    /// on the session's thread with the bytes acknowledged so far and the total.
    public func upload(file localPath: String, to remotePath: String, mode: Int32 = 0o600,
                       pacer: TransferPacer? = nil, stallTimeout: Duration = .seconds(60),
                       progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) async throws -> UploadResult {
        let cancel = CancelFlag()
        let started = ContinuousClock.now
        logger?.debug("SSH upload \(localPath) -> \(remotePath)")
        do {
            let r = try await withTaskCancellationHandler {
                try await onQueue {
                    try self.runUpload(localPath, remotePath, mode: mode, pacer: pacer, stallTimeout: stallTimeout, cancel: cancel, progress: progress)
                }
            } onCancel: {
                cancel.set()
            }
            logger?.debug("SSH upload done: \(r.bytes) bytes in \(r.elapsed)")
            return r
        } catch {
            logger?.debug("SSH upload failed after \(ContinuousClock.now - started): \(error)")
            throw error
        }
    }

    private func runUpload(_ localPath: String, _ remotePath: String, mode: Int32, pacer: TransferPacer?, stallTimeout: Duration,
                           cancel: CancelFlag, progress: (@Sendable (UInt64, UInt64) -> Void)?) throws -> UploadResult {
        guard let s = session, !dead else {
            throw error(.sessionClosed, "the SSH session is closed", hint: "reconnect")
        }
        let started = ContinuousClock.now
        let file = open(localPath, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else {
            throw error(.localFile, "cannot read \(localPath): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(file) }
        var st = stat()
        guard fstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw error(.localFile, "\(localPath) is not a regular file")
        }
        let total = UInt64(st.st_size)

        var lastProgress = ContinuousClock.now
        var deadline: ContinuousClock.Instant { lastProgress + stallTimeout }
        var sftp: OpaquePointer?
        var handle: OpaquePointer?
        var clean = false
        defer {
            if !clean {
                // Half-way: no orderly SFTP close is possible without waiting on a peer that
                // may be gone; the connection goes (bounded), the next command reconnects.
                dead = true
                teardown(reason: "upload abandoned")
            }
        }

        func fail(_ phase: String) -> SSHError {
            let e = lastError()
            if isConnectionError(e.code) {
                dead = true
                return error(.connectionLost, "connection lost while \(phase) (\(e.message))", hint: "the host may have rebooted or dropped off the network")
            }
            if e.code == LIBSSH2_ERROR_SFTP_PROTOCOL, let sftp {
                let status = libssh2_sftp_last_error(sftp)
                return error(.fileTransfer, "\(phase) \(remotePath) failed: \(Self.sftpStatus(status))",
                             hint: status == LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM || status == LIBSSH2_FX_QUOTA_EXCEEDED ? "free space on the host" : nil)
            }
            return error(.fileTransfer, "\(phase) \(remotePath) failed: \(e.message)")
        }

        while sftp == nil {
            sftp = libssh2_sftp_init(s)
            if sftp == nil {
                let e = lastError()
                if e.code == LIBSSH2_ERROR_EAGAIN {
                    try waitSocket(deadline: deadline, cancel: cancel, phase: "starting SFTP", timeoutCode: .commandTimeout)
                    continue
                }
                if isConnectionError(e.code) { dead = true; throw error(.connectionLost, "connection lost while starting SFTP (\(e.message))") }
                throw error(.fileTransfer, "the host's sshd offers no SFTP subsystem (\(e.message))",
                            hint: "enable it in sshd_config: Subsystem sftp internal-sftp (or the sftp-server of the host's OpenSSH)")
            }
        }
        while handle == nil {
            handle = rollctl_sftp_open_write(sftp, remotePath, Int(mode))
            if handle == nil {
                if lastError().code == LIBSSH2_ERROR_EAGAIN {
                    try waitSocket(deadline: deadline, cancel: cancel, phase: "opening \(remotePath)", timeoutCode: .commandTimeout)
                    continue
                }
                let e = fail("opening")
                if e.code == .fileTransfer {
                    // The host refused the file (no folder, no permission): nothing is half-way,
                    // so SFTP ends in order and the connection stays for the next command.
                    if try retrying("ending SFTP", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout, { libssh2_sftp_shutdown(sftp) }) == 0 {
                        sftp = nil
                        clean = true
                    }
                }
                throw e
            }
        }

        let buf = UnsafeMutablePointer<CChar>.allocate(capacity: Self.uploadChunk)
        defer { buf.deallocate() }
        var sent: UInt64 = 0
        progress?(0, total)
        while true {
            var n = 0
            while true {
                n = read(file, buf, Self.uploadChunk)
                if n >= 0 || errno != EINTR { break }
            }
            if n < 0 { throw error(.localFile, "reading \(localPath): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            var off = 0
            while off < n {
                if cancel.isSet { throw error(.cancelled, "upload cancelled") }
                let rc = libssh2_sftp_write(handle, buf + off, n - off)
                if rc == Int(LIBSSH2_ERROR_EAGAIN) {
                    try waitSocket(deadline: deadline, cancel: cancel, phase: "upload (no progress for \(stallTimeout))", timeoutCode: .commandTimeout)
                    continue
                }
                if rc < 0 { throw fail("writing") }
                off += rc
                sent += UInt64(rc)
                lastProgress = ContinuousClock.now
                progress?(sent, total)
                if let pacer {
                    var wait = pacer.reserve(rc)
                    while wait > .zero {
                        if cancel.isSet { throw error(.cancelled, "upload cancelled") }
                        let slice = min(wait, .milliseconds(50))
                        usleep(useconds_t(max(1, slice.milliseconds)) * 1000)
                        wait -= slice
                    }
                    lastProgress = ContinuousClock.now
                }
            }
        }
        var rc = try retrying("closing \(remotePath)", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            rollctl_sftp_close(handle)
        }
        handle = nil
        if rc != 0 { throw fail("closing") }
        rc = try retrying("ending SFTP", deadline: deadline, cancel: cancel, timeoutCode: .commandTimeout) {
            libssh2_sftp_shutdown(sftp)
        }
        sftp = nil
        if rc != 0 { throw fail("ending SFTP after") }
        clean = true
        return UploadResult(bytes: sent, elapsed: ContinuousClock.now - started)
    }

    /// SFTP's status codes in words (draft-ietf-secsh-filexfer-02, what OpenSSH speaks).
    static func sftpStatus(_ code: UInt) -> String {
        switch code {
        case LIBSSH2_FX_EOF: "end of file"
        case LIBSSH2_FX_NO_SUCH_FILE: "no such file or folder"
        case LIBSSH2_FX_PERMISSION_DENIED: "permission denied"
        case LIBSSH2_FX_FAILURE: "failure (the host's sftp-server gives no reason; often a full disk)"
        case LIBSSH2_FX_BAD_MESSAGE: "bad message"
        case LIBSSH2_FX_NO_CONNECTION: "no connection"
        case LIBSSH2_FX_CONNECTION_LOST: "connection lost"
        case LIBSSH2_FX_OP_UNSUPPORTED: "operation unsupported"
        case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: "no space left on the file system"
        case LIBSSH2_FX_QUOTA_EXCEEDED: "quota exceeded"
        case LIBSSH2_FX_NO_SUCH_PATH: "no such path"
        case LIBSSH2_FX_FILE_ALREADY_EXISTS: "file already exists"
        case LIBSSH2_FX_WRITE_PROTECT: "write protected"
        default: "SFTP status \(code)"
        }
    }
}
