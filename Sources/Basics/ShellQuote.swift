import Foundation

/// POSIX shell quoting. Every value that comes from an inventory, a plan or a
/// user and ends up in a remote command goes through `shellQuote`.
public func shellQuote(_ value: String) -> String {
    if !value.isEmpty, value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0)) }) {
        return value
    }
    return "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
