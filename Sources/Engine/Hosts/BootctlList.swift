import Foundation

/// What `bootctl list --json=short` prints: the boot loader entries systemd-boot sees. systemd 253
/// and later print one JSON array of objects; systemd 252 (Debian 12) printed one object per line.
/// Each object has `id` (the entry file's name, `<entry-token>-<release>.conf` for kernel-install's
/// type 1 entries: what `bootctl set-default` and `set-oneshot` take), `version`, `linux`
/// (`/<entry-token>/<release>/linux`), and from systemd 253 `type` (`type1`, `type2`, `loader`,
/// `auto`), `source`, `isDefault`, `isSelected` (present only when there is a default or a
/// selected entry).
///
/// The text comes from a host: it is read defensively (nothing beyond the first `maxBytes` bytes,
/// at most `maxEntries` entries, nesting at most `maxDepth` deep, values that are not what the
/// key should hold ignored, ids that are not valid loader entry names never returned; nothing traps).
public struct BootctlList: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var type: String?
        public var id: String?
        public var path: String?
        public var title: String?
        public var version: String?
        public var linux: String?
        public var isDefault: Bool?
        public var isSelected: Bool?

        public init(type: String? = nil, id: String? = nil, path: String? = nil, title: String? = nil, version: String? = nil,
                    linux: String? = nil, isDefault: Bool? = nil, isSelected: Bool? = nil) {
            self.type = type; self.id = id; self.path = path; self.title = title; self.version = version
            self.linux = linux; self.isDefault = isDefault; self.isSelected = isSelected
        }

        /// An entry of a kernel on disk (type 1 or 2; systemd 252 names no type), not one the
        /// boot loader made up (`auto-windows`, `auto-reboot-to-firmware-setup`).
        public var isKernelEntry: Bool { type == nil || type == "type1" || type == "type2" }

        /// Whether this entry boots `release`: its `version` is the release, or its `linux` is
        /// `…/<release>/linux` (kernel-install's layout) or `…/vmlinuz-<release>`; only when
        /// neither tells (no version, no such path), its id is `<token>-<release>.conf`. Whole names
        /// only: 6.1.0-18 is neither 6.1.0-18-amd64 nor 6.1.0-180.
        public func boots(_ release: String) -> Bool {
            guard !release.isEmpty else { return false }
            if version == release { return true }
            if let linux {
                let parts = linux.split(separator: "/")
                if let last = parts.last {
                    if last.hasPrefix("vmlinuz-") { return last == "vmlinuz-" + release }
                    if last == "linux", parts.count >= 2 { return parts[parts.count - 2] == release }
                }
            }
            // A type 1 entry's version is its kernel's release (a UKI's is the OS's): another release.
            if type != "type2", let version, !version.isEmpty { return false }
            if let stem = id.map(BootctlList.stem) { return stem.hasSuffix("-" + release) }
            return false
        }
    }

    public var entries: [Entry]

    public static let maxBytes = 1 << 20
    public static let maxEntries = 1024
    public static let maxDepth = 8

    public init(entries: [Entry]) { self.entries = entries }

    public static func parse(_ text: String) -> BootctlList {
        let bytes = Array(text.utf8.prefix(maxBytes))
        var entries: [Entry] = []
        if let whole = object(bytes[...]) {
            if let array = whole as? [Any] {
                for item in array.prefix(maxEntries) { if let e = entry(item) { entries.append(e) } }
                return BootctlList(entries: entries)
            }
            if let e = entry(whole) { return BootctlList(entries: [e]) }
        }
        // systemd 252: one object per line.
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            if entries.count >= maxEntries { break }
            if let o = object(line), let e = entry(o) { entries.append(e) }
        }
        return BootctlList(entries: entries)
    }

    /// The JSON value of `bytes`, nil when it is not JSON or nests deeper than `maxDepth`
    /// (checked before JSONSerialization sees it, whose recursion a hostile host should not drive).
    static func object(_ bytes: ArraySlice<UInt8>) -> Any? {
        guard let first = bytes.first(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }),
              first == UInt8(ascii: "[") || first == UInt8(ascii: "{"), depth(bytes) <= maxDepth else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(bytes), options: [])
    }

    /// The deepest nesting of arrays and objects outside strings (an unbalanced text counts as deep
    /// as it got).
    static func depth(_ bytes: ArraySlice<UInt8>) -> Int {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                deepest = max(deepest, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }

    static func entry(_ value: Any) -> Entry? {
        guard let o = value as? [String: Any] else { return nil }
        func string(_ k: String) -> String? {
            guard let s = o[k] as? String, s.utf8.count <= 4096 else { return nil }
            return s
        }
        func bool(_ k: String) -> Bool? {
            o[k] as? Bool
        }
        return Entry(type: string("type"), id: string("id"), path: string("path"), title: string("showTitle") ?? string("title"),
                     version: string("version"), linux: string("linux"), isDefault: bool("isDefault"), isSelected: bool("isSelected"))
    }

    /// An id without `.conf` or `.efi` and without a boot counter (`+3-0`).
    static func stem(_ id: String) -> String {
        var s = Substring(id)
        for ext in [".conf", ".efi"] where s.hasSuffix(ext) { s = s.dropLast(ext.count) }
        if let plus = s.lastIndex(of: "+"), s[s.index(after: plus)...].allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }) {
            s = s[..<plus]
        }
        return String(s)
    }

    /// The id of the entry that boots `release`. Several entries can boot one kernel (an admin's
    /// copy): kernel-install's `<token>-<release>.conf` wins. Ids that are not valid loader entry
    /// names (letters, digits, `+-_.`; what bootctl itself accepts) are never returned.
    public func entryID(forRelease release: String) -> String? {
        let ids = entries.filter { $0.isKernelEntry && $0.boots(release) }.compactMap(\.id).filter(Self.isUsableID)
        return ids.first { Self.stem($0).hasSuffix("-" + release) } ?? ids.first
    }

    /// The id kernel-install will give `release`, modelled on the entry of a release already
    /// installed (`known`): `<token>-<known>.conf` becomes `<token>-<release>.conf`.
    public func expectedEntryID(forRelease release: String, like known: String?) -> String? {
        if let id = entryID(forRelease: release) { return id }
        if let known, let id = entryID(forRelease: known), id.hasSuffix("-" + known + ".conf") {
            return String(id.dropLast(known.count + ".conf".count)) + release + ".conf"
        }
        return nil
    }

    /// The entry systemd-boot boots by default now (`isDefault`), nil when the listing does not say.
    public var defaultEntry: Entry? { entries.first { $0.isDefault == true } }

    static func isUsableID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 255 && id.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "+-_.".unicodeScalars.contains($0)) }
            && id != "." && id != ".."
    }
}
