import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Names and fingerprints of host keys, as OpenSSH prints them.
public enum HostKeyType {
    static func name(libssh2Type type: Int32) -> String {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: "ssh-rsa"
        case LIBSSH2_HOSTKEY_TYPE_DSS: "ssh-dss"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: "ecdsa-sha2-nistp256"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: "ecdsa-sha2-nistp384"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: "ecdsa-sha2-nistp521"
        case LIBSSH2_HOSTKEY_TYPE_ED25519: "ssh-ed25519"
        default: "unknown-key-type-\(type)"
        }
    }

    static func knownHostKeyBits(libssh2Type type: Int32) -> Int32 {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: LIBSSH2_KNOWNHOST_KEY_SSHRSA
        case LIBSSH2_HOSTKEY_TYPE_DSS: LIBSSH2_KNOWNHOST_KEY_SSHDSS
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: LIBSSH2_KNOWNHOST_KEY_ECDSA_256
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: LIBSSH2_KNOWNHOST_KEY_ECDSA_384
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: LIBSSH2_KNOWNHOST_KEY_ECDSA_521
        case LIBSSH2_HOSTKEY_TYPE_ED25519: LIBSSH2_KNOWNHOST_KEY_ED25519
        default: LIBSSH2_KNOWNHOST_KEY_UNKNOWN
        }
    }

    /// `SHA256:<base64 without padding>` of the raw key blob, as `ssh-keygen -l` prints it.
    static func sha256Fingerprint(session: OpaquePointer) -> String {
        guard let p = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "SHA256:?" }
        let digest = UnsafeRawBufferPointer(start: p, count: 32)
        var b64 = Data(digest).base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }
}

/// An OpenSSH known_hosts file, read through libssh2 (plain and hashed entries).
struct KnownHostsFile {
    enum Verdict { case match, mismatch, notFound }
    let path: String

    /// Appends serialise through this lock: many sessions may learn keys at once.
    private static let appendLock = NSLock()

    /// The host pattern OpenSSH uses: `host` on port 22, `[host]:port` otherwise.
    static func hostPattern(_ host: String, _ port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    func check(session: OpaquePointer, host: String, port: Int, key: [UInt8], libssh2Type: Int32, hostName: String) throws -> Verdict {
        guard let kh = libssh2_knownhost_init(session) else {
            throw SSHError(.knownHostsError, host: hostName, "libssh2 could not allocate a known-hosts store")
        }
        defer { libssh2_knownhost_free(kh) }
        if FileManager.default.fileExists(atPath: path) {
            let n = rollctl_knownhost_readfile(kh, path)
            if n < 0 {
                throw SSHError(.knownHostsError, host: hostName, "cannot read known_hosts file \(path) (libssh2 error \(n))",
                               hint: "check that it exists, is readable and in OpenSSH format")
            }
        }
        let typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | HostKeyType.knownHostKeyBits(libssh2Type: libssh2Type)
        let rc = key.withUnsafeBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { cbuf in
                libssh2_knownhost_checkp(kh, host, Int32(port), cbuf.baseAddress, key.count, typemask, nil)
            }
        }
        switch rc {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH: return .match
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: return .mismatch
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND: return .notFound
        default:
            throw SSHError(.knownHostsError, host: hostName, "checking \(host) against \(path) failed")
        }
    }

    /// Appends one line for the host (never rewrites the file: comments and
    /// hashed entries of others stay as they are).
    func append(session: OpaquePointer, host: String, port: Int, key: [UInt8], libssh2Type: Int32) throws {
        let b64 = Data(key).base64EncodedString()
        let line = "\(Self.hostPattern(host, port)) \(HostKeyType.name(libssh2Type: libssh2Type)) \(b64)\n"
        Self.appendLock.lock()
        defer { Self.appendLock.unlock() }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SSHError(.knownHostsError, host: host, "cannot append to \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written != bytes.count {
            throw SSHError(.knownHostsError, host: host, "short write to \(path)")
        }
    }
}
