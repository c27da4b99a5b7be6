import COpenSSL
import Foundation

/// SHA-256 of the plan text for the journal (lowercase hex), from the system's
/// libcrypto (`COpenSSL`, like TLS).
///
/// EVP_Digest with the built-in SHA-256 fails only when libcrypto itself cannot
/// run (no default provider, memory exhausted); the journal cannot identify the
/// plan without the hash, so that is a stop with OpenSSL's reason, never a
/// made-up hash.
package func sha256Hex(_ text: String) -> String {
    let bytes = Array(text.utf8)
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var length: UInt32 = 0
    let ok = bytes.withUnsafeBytes { data in
        EVP_Digest(data.baseAddress, data.count, &digest, &length, EVP_sha256(), nil)
    }
    guard ok == 1, length == UInt32(SHA256_DIGEST_LENGTH) else {
        preconditionFailure("libcrypto: SHA-256 of the plan failed (EVP_Digest returned \(ok), \(length) bytes): \(OpenSSL.errors())")
    }
    return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
}

/// SHA-256 of a file's bytes (lowercase hex) and how many bytes were read, streamed in 1 MiB
/// reads: a kernel package is checked on the host against this. Throws a readable error when
/// the file cannot be read.
package func sha256Hex(file path: String) throws -> (hex: String, size: UInt64) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw DigestError("\(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("libcrypto: EVP_MD_CTX_new failed: \(OpenSSL.errors())") }
    defer { EVP_MD_CTX_free(ctx) }
    guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else { preconditionFailure("libcrypto: SHA-256 init failed: \(OpenSSL.errors())") }
    let bufSize = 1 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: bufSize, alignment: 16)
    defer { buf.deallocate() }
    var total: UInt64 = 0
    while true {
        let n = read(fd, buf, bufSize)
        if n < 0 {
            if errno == EINTR { continue }
            throw DigestError("\(path): \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        total += UInt64(n)
        guard EVP_DigestUpdate(ctx, buf, n) == 1 else { preconditionFailure("libcrypto: SHA-256 update failed: \(OpenSSL.errors())") }
    }
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var length: UInt32 = 0
    guard EVP_DigestFinal_ex(ctx, &digest, &length) == 1 else { preconditionFailure("libcrypto: SHA-256 final failed: \(OpenSSL.errors())") }
    return (digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined(), total)
}

/// A file could not be read for its digest.
package struct DigestError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
