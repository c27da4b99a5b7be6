import Basics

/// A problem a driver's pre-check (`BootloaderDriver.preflight`) found on a host: an `error`
/// fails the host's check step (nothing on it is touched), a `warning` is journaled and shown.
public struct BootloaderFinding: Sendable, Equatable, Codable {
    public enum Severity: String, Sendable, Codable { case error, warning }
    public var severity: Severity
    public var message: String
    public init(_ severity: Severity, _ message: String) {
        self.severity = severity
        self.message = message
    }
}

/// What makes GRUB's boot-once safe, read in one read-only command (`command`, in the survey's
/// round trip and in the check step of `grub` and `grub-bls` hosts). The command reads Debian's
/// and Ubuntu's layout (`/boot/grub`, `grub-probe`, `grub-editenv`) or, on a host with
/// `/boot/grub2` and no `/boot/grub/grub.cfg`, RHEL's (`/boot/grub2`, `grub2-probe`,
/// `grub2-editenv`); below, `/boot/grub` stands for either:
///
/// - `GRUB_DEFAULT=saved` (`/etc/default/grub`, then `/etc/default/grub.d/*.cfg`, the last
///   assignment wins as update-grub sources them): otherwise `grub-set-default` is ignored and a
///   kernel that fails to boot is booted again instead of the old default;
/// - `/boot/grub` on a plain partition (`grub-probe --target=abstraction` empty, `--target=fs`
///   not btrfs or zfs): GRUB cannot write grubenv at boot on LVM, RAID, LUKS, btrfs or zfs, so it
///   cannot clear `next_entry` and a one-shot boot becomes a permanent one;
/// - Ubuntu's `recordfail`: left at 1 in grubenv, GRUB shows its menu and waits
///   `GRUB_RECORDFAIL_TIMEOUT` (30 s unless set; -1: forever) at the next boot.
public struct GrubSafety: Sendable, Equatable {
    public enum Defaults: String, Sendable { case ok, missing, unreadable }
    /// Whose GRUB layout the host has: Debian's (`grub`) or RHEL's (`grub2`).
    public enum Layout: String, Sendable {
        case grub, grub2
        /// GRUB's folder under /boot.
        public var dir: String { "/boot/" + rawValue }
        public var probe: String { rawValue + "-probe" }
        public var editenv: String { rawValue + "-editenv" }
        /// What regenerates grub.cfg from /etc/default/grub.
        public var mkconfig: String { self == .grub ? "update-grub" : "grub2-mkconfig -o /boot/grub2/grub.cfg" }
    }
    public var layout: Layout = .grub
    /// Whether `/etc/default/grub` could be read.
    public var defaults: Defaults?
    /// The last `GRUB_DEFAULT` assigned, quotes dropped; nil when none is.
    public var grubDefault: String?
    /// The last `GRUB_RECORDFAIL_TIMEOUT` assigned; nil when none is (GRUB's 30 s).
    public var recordfailTimeout: String?
    /// `grub-probe --target=abstraction /boot/grub`: its words, or nil and `abstractionError`.
    public var abstraction: [String]?
    public var abstractionError: String?
    /// `grub-probe --target=fs /boot/grub`, or nil and `fsError`.
    public var fs: String?
    public var fsError: String?
    /// grubenv's `recordfail`, nil when unset; `envError` when `grub-editenv list` failed.
    public var recordfail: String?
    public var envError: String?

    public init() {}

    static let marker = "@@rollctl-file grub-safety"

    /// Read-only; prints at most ~2 KiB whatever the host holds, and `end` last.
    public static let command = "echo '\(marker)'; "
        + "if [ -d /boot/grub2 ] && [ ! -e /boot/grub/grub.cfg ]; then g=grub2; else g=grub; fi; echo \"layout $g\"; "
        + "if [ ! -e /etc/default/grub ]; then echo 'defaults missing'; elif [ -r /etc/default/grub ]; then echo 'defaults ok'; else echo 'defaults unreadable'; fi; "
        + "grep -hE '^[[:space:]]*(export[[:space:]]+)?(GRUB_DEFAULT|GRUB_RECORDFAIL_TIMEOUT)=' /etc/default/grub /etc/default/grub.d/*.cfg 2>/dev/null | tail -n 8 | cut -c 1-200 | sed 's/^/set /'; "
        + "for t in abstraction fs; do if o=$(\"$g-probe\" --target=$t \"/boot/$g\" 2>&1); then echo \"probe $t ok\"; else echo \"probe $t error\"; fi; "
        + "printf '%s\\n' \"$o\" | head -n 3 | cut -c 1-200 | sed \"s/^/$t /\"; done; "
        + "if o=$(\"$g-editenv\" \"/boot/$g/grubenv\" list 2>&1); then echo 'env ok'; printf '%s\\n' \"$o\" | grep -E '^recordfail=' | head -n 1 | cut -c 1-40 | sed 's/^/env /'; "
        + "else echo 'env error'; printf '%s\\n' \"$o\" | head -n 1 | cut -c 1-200 | sed 's/^/env /'; fi; echo end; true"

    /// Reads `command`'s section of `output` (its last one); nil when there is none or it did not
    /// reach its `end`. Bounded: 4 KiB and 48 lines of 256 characters; unknown lines are ignored.
    public static func parse(_ output: String) -> GrubSafety? {
        guard let lines = lastSection(of: output, after: marker, lines: 48) else { return nil }
        var s = GrubSafety(), probe: [String: Bool] = [:], envOK: Bool?, complete = false
        var abstraction: [String] = [], fs: [String] = [], env: [String] = []
        for raw in lines {
            let line = String(raw)
            func rest(_ p: String) -> String? { line.hasPrefix(p) ? String(line.dropFirst(p.count)) : nil }
            if line == "end" { complete = true; break }
            if let d = rest("defaults ") { s.defaults = Defaults(rawValue: d) }
            else if let l = rest("layout ") { s.layout = Layout(rawValue: l) ?? .grub }
            else if let a = rest("set ") { s.assign(a) }
            else if let p = rest("probe ") {
                let w = p.split(separator: " ")
                if w.count == 2, ["abstraction", "fs"].contains(w[0]) { probe[String(w[0])] = w[1] == "ok" }
            }
            else if let a = rest("abstraction ") { abstraction.append(a) }
            else if line == "abstraction" { abstraction.append("") }
            else if let f = rest("fs ") { fs.append(f) }
            else if line == "fs" { fs.append("") }
            else if line == "env ok" { envOK = true }
            else if line == "env error" { envOK = false }
            else if let e = rest("env ") { env.append(e) }
        }
        guard complete else { return nil }
        switch probe["abstraction"] {
        case true?: s.abstraction = Array(abstraction.flatMap { $0.split(separator: " ").map { word($0) } }.filter { !$0.isEmpty }.prefix(4))
        case false?: s.abstractionError = text(abstraction.first { !$0.isEmpty } ?? "no message")
        case nil: s.abstractionError = "not run"
        }
        switch probe["fs"] {
        case true?: s.fs = fs.first.map { word(Substring($0)) }
        case false?: s.fsError = text(fs.first { !$0.isEmpty } ?? "no message")
        case nil: s.fsError = "not run"
        }
        switch envOK {
        case true?: s.recordfail = env.first { $0.hasPrefix("recordfail=") }.map { text(String($0.dropFirst("recordfail=".count))) }
        case false?: s.envError = text(env.first ?? "no message")
        case nil: s.envError = "not run"
        }
        return s
    }

    /// One `KEY=value` line as the shell would read its value: `export` dropped, quotes taken
    /// off, the rest of the line after the value (a comment) ignored.
    mutating func assign(_ line: String) {
        var l = Substring(line).drop { $0 == " " || $0 == "\t" }
        if l.hasPrefix("export") { l = l.dropFirst("export".count).drop { $0 == " " || $0 == "\t" } }
        guard let eq = l.firstIndex(of: "=") else { return }
        let key = l[..<eq], v = l[l.index(after: eq)...]
        let value: Substring
        if let q = v.first, q == "\"" || q == "'" {
            value = v.dropFirst().prefix { $0 != q }
        } else {
            value = v.prefix { $0 != " " && $0 != "\t" && $0 != "#" && $0 != ";" }
        }
        if key == "GRUB_DEFAULT" { grubDefault = Self.text(String(value)) }
        if key == "GRUB_RECORDFAIL_TIMEOUT" { recordfailTimeout = Self.text(String(value)) }
    }

    /// Host text for a message: printable ASCII only (others `?`), at most 80 characters.
    static func text(_ s: String) -> String {
        String(s.unicodeScalars.prefix(80).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" })
    }

    /// A grub-probe word: lower case letters, digits, `_` and `-`, at most 32.
    static func word(_ s: Substring) -> String {
        String(s.lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }.prefix(32))
    }

    /// File systems on which GRUB refuses to write its environment block at boot.
    static let unwritableFS: Set<String> = ["btrfs", "zfs"]
    static let moveBoot = "use bootloader: custom, or move /boot to a plain partition"

    /// What the check step (and the dry-run) says: errors fail the host.
    public var findings: [BootloaderFinding] {
        var out: [BootloaderFinding] = []
        let (dir, probe, editenv) = (layout.dir, layout.probe, layout.editenv)
        let fix = "set GRUB_DEFAULT=saved in /etc/default/grub and run \(layout.mkconfig)"
        let why = "\(layout == .grub ? "grub-set-default" : "grubby --set-default") would not make the new kernel the default, and a kernel that fails to boot would not fall back to the current one"
        switch defaults {
        case .missing?:
            out.append(.init(.error, "/etc/default/grub does not exist (GRUB then boots entry 0, not the saved default): \(why); \(fix)"))
        case .unreadable?:
            out.append(.init(.error, "cannot read /etc/default/grub: GRUB_DEFAULT=saved cannot be checked; make it readable for the SSH user, or \(fix)"))
        case .ok?, nil:
            if let d = grubDefault, d == "saved" { break }
            out.append(.init(.error, (grubDefault.map { "/etc/default/grub sets GRUB_DEFAULT=\($0), not saved" }
                                      ?? "/etc/default/grub does not set GRUB_DEFAULT (GRUB then boots entry 0, not the saved default)") + ": \(why); \(fix)"))
        }
        let cannot = "GRUB cannot write grubenv at boot, so boot-once cannot fall back (next_entry is never cleared: the one-shot boot becomes permanent)"
        if let e = abstractionError {
            out.append(.init(.error, "\(probe) --target=abstraction \(dir) failed (\(e)): cannot tell whether GRUB can write grubenv at boot; \(Self.moveBoot)"))
        } else if let a = abstraction, !a.isEmpty {
            out.append(.init(.error, "\(dir) is on \(a.joined(separator: " ")) (\(probe) --target=abstraction): \(cannot); \(Self.moveBoot)"))
        }
        if let e = fsError {
            out.append(.init(.error, "\(probe) --target=fs \(dir) failed (\(e)): cannot tell whether GRUB can write grubenv at boot; \(Self.moveBoot)"))
        } else if let f = fs, Self.unwritableFS.contains(f) {
            out.append(.init(.error, "\(dir) is on \(f) (\(probe) --target=fs): \(cannot); \(Self.moveBoot)"))
        }
        let timeout = recordfailTimeout.map { $0.trimmed }
        let forever = timeout == "-1"
        if let e = envError {
            out.append(.init(.warning, "cannot read grubenv (\(editenv) \(dir)/grubenv list: \(e)): \(layout == .grub ? "Ubuntu's recordfail not checked" : "whether a failed boot is recorded not checked")"))
        } else if let r = recordfail, r == "1" {
            let clear = "clear it (\(editenv) \(dir)/grubenv unset recordfail) once the host is known good"
            if forever {
                out.append(.init(.error, "grubenv has recordfail=1 (a boot that did not finish) and GRUB_RECORDFAIL_TIMEOUT=-1: GRUB would wait at its menu forever at the next boot, the host would not come back unattended; \(clear), or set GRUB_RECORDFAIL_TIMEOUT to seconds and run \(layout.mkconfig)"))
            } else if timeout != "0" {
                let wait = timeout.flatMap { Int($0) }.map { "\($0) s" } ?? "30 s"
                out.append(.init(.warning, "grubenv has recordfail=1 (a boot that did not finish): Ubuntu's GRUB will show its menu and wait \(wait) (GRUB_RECORDFAIL_TIMEOUT) at the reboot; \(clear)"))
            }
        } else if forever {
            out.append(.init(.warning, "GRUB_RECORDFAIL_TIMEOUT=-1: should a boot not finish (a kernel that panics), Ubuntu's GRUB would wait at its menu forever instead of falling back unattended"))
        }
        return out
    }
}
