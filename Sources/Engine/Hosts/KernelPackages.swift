import Foundation
import Basics
import NetIO
import RolloutConfig

/// A `kernel.packages` file with its SHA-256, as a rollout ships it: hashed once when the
/// rollout starts, journaled, and compared again on every resume (a file changed in between
/// would install a different kernel on half the fleet).
public struct ShippedPackage: Sendable, Equatable, Codable {
    public var name: String
    public var path: String
    public var kind: String
    public var size: UInt64
    public var sha256: String

    /// Hashes the plan's package files, each on a thread of its own (never Swift's pool).
    /// Throws `PackageError` when one cannot be read.
    public static func digest(_ packages: [KernelPackage]) async throws -> [ShippedPackage] {
        var out: [ShippedPackage] = []
        for p in packages {
            let r: Result<(hex: String, size: UInt64), Error> = await Blocking.run { Result { try sha256Hex(file: p.path) } }
            switch r {
            case .success(let d): out.append(ShippedPackage(name: p.name, path: p.path, kind: p.kind.rawValue, size: d.size, sha256: d.hex))
            case .failure(let e): throw PackageError("kernel package \(p.name) cannot be read: \(e)")
            }
        }
        return out
    }
}

/// A package file cannot be read, or changed since the rollout started.
public struct PackageError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The commands that ship `kernel.packages` to a host: a private folder, the checksums of
/// what is already there (a resume skips those uploads), the check after an upload, the
/// install and the removal. Every value is shell-quoted. The dry-run shows exactly these.
public enum PackageCommands {
    /// The host's folder for a rollout's packages (its lifetime: upload to install).
    public static func directory(rollout: String) -> String { "/var/tmp/rollctl-\(rollout)" }

    /// Makes the folder (mode 0700), or accepts the one there only if it is a real folder of
    /// the SSH user (never a symlink someone else put in the world-writable /var/tmp), then
    /// prints `sha256sum`'s line for each named file already in it.
    public static func prepare(directory d: String, names: [String]) -> String {
        let q = shellQuote(d)
        return "umask 077; mkdir -m 0700 \(q) 2>/dev/null; if [ -d \(q) ] && [ ! -L \(q) ] && [ -O \(q) ]; then chmod 0700 \(q); else echo \"rollctl: \(d) exists and is not a folder of $(id -un)\" >&2; exit 1; fi; "
            + "cd \(q) && for f in \(names.map(shellQuote).joined(separator: " ")); do if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then sha256sum -- \"$f\"; fi; done; true"
    }

    /// The name an upload lands under until its checksum matched.
    public static func partial(_ name: String) -> String { name + ".part" }

    /// The SHA-256 of one file in the folder.
    public static func checksum(directory d: String, file: String) -> String {
        "sha256sum -- \(shellQuote(d + "/" + file))"
    }

    /// A verified upload takes its name.
    public static func place(directory d: String, name: String) -> String {
        "mv -f -- \(shellQuote(d + "/" + partial(name))) \(shellQuote(d + "/" + name))"
    }

    /// A failed upload goes.
    public static func discard(directory d: String, name: String) -> String {
        "rm -f -- \(shellQuote(d + "/" + partial(name)))"
    }

    /// Installs the shipped files in one call (an image and its modules package depend on each other).
    public static func install(directory d: String, packages: [ShippedPackage]) -> String {
        let files = packages.map { shellQuote(d + "/" + $0.name) }.joined(separator: " ")
        if packages.first?.kind == KernelPackage.Kind.rpm.rawValue { return "dnf install -y \(files)" }
        return "DEBIAN_FRONTEND=noninteractive dpkg -i \(files)"
    }

    /// The folder and what is in it go.
    public static func remove(directory d: String) -> String { "rm -rf -- \(shellQuote(d))" }

    /// The checksums in `sha256sum` output, for `names` only. The host's output is untrusted:
    /// only its first 64 KiB is read, and only lines `<64 hex>  <one of names>` count.
    public static func parseSums(_ output: String, names: [String]) -> [String: String] {
        let wanted = Set(names)
        var out: [String: String] = [:]
        for line in output.utf8.prefix(64 << 10).split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self)
            guard let hex = hexPrefix(text), text.count > 66 else { continue }
            let rest = text.dropFirst(64)
            guard rest.hasPrefix("  ") || rest.hasPrefix(" *") else { continue }
            let name = String(rest.dropFirst(2))
            if wanted.contains(name) { out[name] = hex }
        }
        return out
    }

    /// The lowercase SHA-256 a line starts with, if it does.
    public static func hexPrefix(_ line: String) -> String? {
        let head = line.utf8.prefix(64)
        guard head.count == 64, head.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        let after = line.utf8.dropFirst(64).first
        guard after == nil || after == UInt8(ascii: " ") else { return nil }
        return String(decoding: head, as: UTF8.self)
    }
}
