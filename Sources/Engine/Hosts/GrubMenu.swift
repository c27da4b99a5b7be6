import Foundation

/// The boot menu of a Debian or Ubuntu `grub.cfg`, enough to name a kernel's entry
/// the way `grub-reboot` and `grub-set-default` want it: a `>`-separated path of
/// titles (`Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux
/// 6.1.0-19-hosting`, `Advanced options for Ubuntu>Ubuntu, with Linux
/// 6.8.0-49-generic`) or of ids. Admins never write these by hand.
public struct GrubMenu: Sendable, Equatable {
    /// A bootable `menuentry` and where it sits in the menu.
    public struct Entry: Sendable, Equatable {
        /// Titles from the top level down to this entry.
        public var titles: [String]
        /// `$menuentry_id_option` ids along the same path (nil where an item has none).
        public var ids: [String?]
        /// The release from the entry's `linux /vmlinuz-<release>` line (Ubuntu's signed EFI
        /// images, `vmlinuz-<release>.efi.signed`, name the release without the suffix).
        public var release: String?
        /// A recovery-mode entry (`single` on the kernel line, or `(recovery mode)` in the title).
        public var isRecovery: Bool
        /// Line of the `menuentry` in grub.cfg.
        public var line: Int

        public var title: String { titles.last ?? "" }
        /// What `grub-reboot` / `grub-set-default` take: `Submenu title>Entry title`.
        public var titlePath: String { titles.joined(separator: ">") }
        /// The same path by ids, when every level has one.
        public var idPath: String? {
            let all = ids.compactMap { $0 }
            return all.count == ids.count ? all.joined(separator: ">") : nil
        }
    }

    /// Every `menuentry`, in menu order (submenus flattened).
    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// Parses grub.cfg text. Unparseable lines are ignored: GRUB's script is not run,
    /// only `menuentry`/`submenu` headers, braces and `linux` lines are read.
    public static func parse(_ text: String) -> GrubMenu {
        var entries: [Entry] = []
        // Open blocks: submenus (title, id) or an entry being read, or other `{` blocks (if/function).
        enum Block { case submenu(String, String?), entry(Int), other }
        var stack: [Block] = []
        var lineNo = 0
        // Lines are found and classified on UTF-8 bytes; only headers and `linux` lines
        // become Strings to split shell-style (most of a grub.cfg is `insmod`, `set`,
        // `if` ... lines, and per-Character work on all of them was most of the parse).
        let bytes = Array(text.utf8)
        let heads: [[UInt8]] = ["menuentry", "submenu", "linux", "linuxefi"].map { Array($0.utf8) }
        func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }
        var next = 0
        while next <= bytes.count {
            let end = bytes[next...].firstIndex(of: 0x0A) ?? bytes.count
            var lo = next, hi = end
            next = end + 1
            lineNo += 1
            while lo < hi, isBlank(bytes[lo]) { lo += 1 }
            while hi > lo, isBlank(bytes[hi - 1]) { hi -= 1 }
            if lo == hi || bytes[lo] == UInt8(ascii: "#") { continue }
            var headEnd = lo
            while headEnd < hi, bytes[headEnd] != 0x20, bytes[headEnd] != 0x09 { headEnd += 1 }
            guard heads.contains(where: { $0.elementsEqual(bytes[lo..<headEnd]) }) else {
                if bytes[lo] == UInt8(ascii: "}") {
                    if !stack.isEmpty { stack.removeLast() }
                } else if bytes[hi - 1] == UInt8(ascii: "{") {
                    stack.append(.other)
                }
                continue
            }
            let line = String(decoding: bytes[lo..<hi], as: UTF8.self)
            let words = shellWords(line)
            guard let first = words.first else { continue }
            if (first == "menuentry" || first == "submenu"), words.count >= 2 {
                let title = words[1]
                var id: String?
                if let i = words.firstIndex(where: { $0 == "$menuentry_id_option" || $0 == "--id" || $0 == "${menuentry_id_option}" }), i + 1 < words.count {
                    id = words[i + 1]
                }
                let parents = stack.compactMap { b -> (String, String?)? in if case let .submenu(t, i) = b { return (t, i) }; return nil }
                if first == "submenu" {
                    stack.append(.submenu(title, id))
                } else {
                    entries.append(Entry(titles: parents.map(\.0) + [title], ids: parents.map(\.1) + [id], release: nil,
                                         isRecovery: title.contains("(recovery mode)"), line: lineNo))
                    stack.append(.entry(entries.count - 1))
                }
                if !line.hasSuffix("{") { stack.removeLast() }
                continue
            }
            if case .entry(let idx)? = stack.last, first == "linux" || first == "linuxefi", words.count >= 2 {
                let image = words[1].split(separator: "/").last.map(String.init) ?? ""
                if image.hasPrefix("vmlinuz-") {
                    var release = image.dropFirst("vmlinuz-".count)
                    if release.hasSuffix(".efi.signed") { release = release.dropLast(".efi.signed".count) }
                    entries[idx].release = String(release)
                }
                if words.dropFirst(2).contains("single") { entries[idx].isRecovery = true }
                continue
            }
            if line.hasSuffix("{") { stack.append(.other) }
        }
        return GrubMenu(entries: entries)
    }

    /// The normal (not recovery) entry that boots `release`. Debian lists the
    /// newest kernel twice — as the top entry and inside the "Advanced options"
    /// submenu; the submenu entry is returned, because the top entry changes to
    /// whichever kernel is newest when another one is installed.
    public func entry(forRelease release: String) -> Entry? {
        let matches = entries.filter { $0.release == release && !$0.isRecovery }
        return matches.first(where: { $0.titles.count > 1 }) ?? matches.first
    }

    /// The title path `update-grub` will give `release`, modelled on the entry of a
    /// release already in the menu: `known`'s, else any submenu entry's whose title
    /// names its release (so an Ubuntu menu gives Ubuntu's titles even when the
    /// running kernel's entry is gone). Used to preview the commands before the
    /// kernel is installed. Falls back to Debian's default titles.
    public func expectedTitlePath(forRelease release: String, like known: String?) -> String {
        if let e = entry(forRelease: release) { return e.titlePath }
        let models = (known.flatMap { entry(forRelease: $0) }.map { [$0] } ?? [])
            + entries.filter { $0.titles.count > 1 && !$0.isRecovery }
        for e in models {
            guard let model = e.release, !model.isEmpty, e.title.contains(model) else { continue }
            var titles = e.titles
            titles[titles.count - 1] = e.title.replacingOccurrences(of: model, with: release)
            return titles.joined(separator: ">")
        }
        return Self.debianTitlePath(release)
    }

    /// `Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux <release>`.
    public static func debianTitlePath(_ release: String) -> String {
        "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux \(release)"
    }

    /// Splits a grub.cfg line like a shell: single quotes (with `'\''` escapes), double quotes, backslashes.
    static func shellWords(_ line: String) -> [String] {
        // On UTF-8 bytes: every special character is ASCII, so multi-byte sequences pass through whole.
        var words: [String] = []
        var cur: [UInt8] = []
        var inWord = false
        var quote: UInt8?
        var escape = false
        let squote = UInt8(ascii: "'"), dquote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        for b in line.utf8 {
            if escape { cur.append(b); escape = false; inWord = true; continue }
            if let q = quote {
                if b == q { quote = nil } else if b == backslash && q == dquote { escape = true } else { cur.append(b) }
                continue
            }
            switch b {
            case squote, dquote: quote = b; inWord = true
            case backslash: escape = true
            case 0x20, 0x09:
                if inWord { words.append(String(decoding: cur, as: UTF8.self)); cur.removeAll(keepingCapacity: true); inWord = false }
            default: cur.append(b); inWord = true
            }
        }
        if inWord { words.append(String(decoding: cur, as: UTF8.self)) }
        return words
    }
}
