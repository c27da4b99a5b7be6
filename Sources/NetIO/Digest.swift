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
