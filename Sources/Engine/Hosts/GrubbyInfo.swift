import Foundation

/// What `grubby --info=ALL` prints on a host with Boot Loader Specification entries (RHEL 8-10,
/// Fedora, Alma, Rocky): one block per entry, each starting with `index=N`, then `key="value"`
/// lines (`kernel`, `args`, `root`, `initrd`, `title`, `id`). The id is the entry file's name
/// without `.conf` — what `grub2-reboot` and grubenv's `saved_entry` name.
///
/// The text comes from a host: it is read defensively (at most `maxEntries` entries from the
/// first `maxBytes` bytes; lines that are not `key=value` are skipped; nothing traps).
public struct GrubbyInfo: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var index: Int?
        public var kernel: String?
        public var args: String?
        public var root: String?
        public var initrd: String?
        public var title: String?
        public var id: String?

        /// The release of `kernel` (`/boot/vmlinuz-<release>`; `/vmlinuz-<release>` too).
        public var release: String? {
            guard let k = kernel, let name = k.split(separator: "/").last, name.hasPrefix("vmlinuz-") else { return nil }
            let r = name.dropFirst("vmlinuz-".count)
            return r.isEmpty ? nil : String(r)
        }
        /// The installer's rescue entry (`vmlinuz-0-rescue-<machine-id>`), never a kernel rollctl rolls.
        public var isRescue: Bool { release?.hasPrefix("0-rescue-") ?? false }
    }

    public var entries: [Entry]

    public static let maxEntries = 4096
    public static let maxBytes = 4 << 20

    public init(entries: [Entry]) { self.entries = entries }

    public static func parse(_ text: String) -> GrubbyInfo {
        var entries: [Entry] = []
        var current: Entry?
        let bytes = text.utf8.prefix(maxBytes)
        for rawLine in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            var line = Substring(String(decoding: rawLine, as: UTF8.self))
            if line.last == "\r" { line = line.dropLast() }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq]
            var value = line[line.index(after: eq)...]
            // grubby writes `key="value"` without escaping quotes inside: the value runs from the
            // first quote to the last one.
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
            if key == "index" {
                if let c = current { entries.append(c) }
                if entries.count >= maxEntries { current = nil; break }
                current = Entry(index: Int(value))
                continue
            }
            guard current != nil else { continue }
            let v = String(value)
            switch key {
            case "kernel": current!.kernel = v
            case "args": current!.args = v
            case "root": current!.root = v
            case "initrd": current!.initrd = v
            case "title": current!.title = v
            case "id": current!.id = v
            default: continue
            }
        }
        if let c = current, entries.count < maxEntries { entries.append(c) }
        return GrubbyInfo(entries: entries)
    }

    /// The entry id that boots `release`. Several entries can boot one kernel (an admin's
    /// `~custom` copy): the one kernel-install named `<machine-id>-<release>` wins. Ids with
    /// control characters or none at all are never returned.
    public func entryID(forRelease release: String) -> String? {
        let ids = entries.filter { $0.release == release && !$0.isRescue }.compactMap(\.id).filter(Self.isUsableID)
        return ids.first { $0.hasSuffix("-" + release) } ?? ids.first
    }

    /// The id kernel-install will give `release`, modelled on the entry of a release already
    /// installed (`known`): `<machine-id>-<known>` becomes `<machine-id>-<release>`.
    public func expectedEntryID(forRelease release: String, like known: String?) -> String? {
        if let id = entryID(forRelease: release) { return id }
        if let known, let id = entryID(forRelease: known), id.hasSuffix("-" + known) {
            return String(id.dropLast(known.count)) + release
        }
        return nil
    }

    static func isUsableID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 512 && !id.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }
}
