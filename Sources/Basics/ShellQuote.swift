import Foundation

/// POSIX shell quoting. Every value that comes from an inventory, a plan or a
/// user and ends up in a remote command goes through `shellQuote`.
public func shellQuote(_ value: String) -> String {
    // Bytes, not Characters: this runs for every value of every command of every host.
    if !value.isEmpty, value.utf8.allSatisfy(isShellSafe) { return value }
    var out = "'"
    out.reserveCapacity(value.utf8.count + 2)
    for ch in value.unicodeScalars {
        if ch == "'" { out += "'\\''" } else { out.unicodeScalars.append(ch) }
    }
    out += "'"
    return out
}

/// ASCII letters and digits and `-_./=:,+@%`: a word the shell takes as it is.
private func isShellSafe(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
    case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: ":"),
         UInt8(ascii: ","), UInt8(ascii: "+"), UInt8(ascii: "@"), UInt8(ascii: "%"): true
    default: false
    }
}
