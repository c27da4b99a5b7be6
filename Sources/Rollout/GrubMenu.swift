import Foundation

/// The boot menu of a Debian `grub.cfg`, enough to name a kernel's entry the
/// way `grub-reboot` and `grub-set-default` want it: a `>`-separated path of
/// titles (`Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux
/// 6.1.0-19-hosting`) or of ids. Admins never write these by hand.
public struct GrubMenu: Sendable, Equatable {
    /// A bootable `menuentry` and where it sits in the menu.
    public struct Entry: Sendable, Equatable {
        /// Titles from the top level down to this entry.
        public var titles: [String]
        /// `$menuentry_id_option` ids along the same path (nil where an item has none).
        public var ids: [String?]
        /// The release from the entry's `linux /vmlinuz-<release>` line.
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
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let line = raw.stripping(" \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
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
                if image.hasPrefix("vmlinuz-") { entries[idx].release = String(image.dropFirst("vmlinuz-".count)) }
                if words.dropFirst(2).contains("single") { entries[idx].isRecovery = true }
                continue
            }
            if line == "}" || line.hasPrefix("}") {
                if !stack.isEmpty { stack.removeLast() }
                continue
            }
            if line.hasSuffix("{") { stack.append(.other) }
            if line.hasPrefix("fi") || line == "done" { continue }
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

    /// The title path Debian's `update-grub` will give `release`, modelled on
    /// the entry of a release already in the menu (`known`): used to preview
    /// the commands before the kernel is installed. Falls back to Debian's
    /// default titles.
    public func expectedTitlePath(forRelease release: String, like known: String?) -> String {
        if let e = entry(forRelease: release) { return e.titlePath }
        if let known, let e = entry(forRelease: known), e.title.contains(known) {
            var titles = e.titles
            titles[titles.count - 1] = e.title.replacingOccurrences(of: known, with: release)
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
        var words: [String] = []
        var cur = ""
        var inWord = false
        var quote: Character?
        var escape = false
        for ch in line {
            if escape { cur.append(ch); escape = false; inWord = true; continue }
            if let q = quote {
                if ch == q { quote = nil } else if ch == "\\" && q == "\"" { escape = true } else { cur.append(ch) }
                continue
            }
            switch ch {
            case "'", "\"": quote = ch; inWord = true
            case "\\": escape = true
            case " ", "\t":
                if inWord { words.append(cur); cur = ""; inWord = false }
            default: cur.append(ch); inWord = true
            }
        }
        if inWord { words.append(cur) }
        return words
    }
}

extension StringProtocol {
    func stripping(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
