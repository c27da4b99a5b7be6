import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one output sink: every line the CLI prints goes through here, so a
/// progress line on the terminal is cleared before a result is printed and
/// output from concurrent tasks never interleaves. Progress only on a TTY;
/// colours only on a TTY and without `NO_COLOR`.
public final class Console: @unchecked Sendable {
    public static let shared = Console()
    private let lock = NSLock()
    private var progressShown = false
    /// Lines of the live view on the terminal now (0: none), below everything printed.
    private var liveLines = 0
    public let stdoutIsTTY: Bool
    public let stderrIsTTY: Bool
    public let color: Bool

    init() {
        stdoutIsTTY = isatty(1) == 1
        stderrIsTTY = isatty(2) == 1
        let env = ProcessInfo.processInfo.environment
        color = stdoutIsTTY && env["NO_COLOR"] == nil && env["TERM"] != "dumb"
    }

    /// For tests: a console that colours as on a terminal.
    init(stdoutIsTTY: Bool, stderrIsTTY: Bool, color: Bool) {
        self.stdoutIsTTY = stdoutIsTTY
        self.stderrIsTTY = stderrIsTTY
        self.color = color
    }

    /// Every line is passed through `terminalSafe`: text from hosts and servers
    /// (stderr, SMTP replies, error messages quoting them) cannot move the
    /// cursor, retitle the terminal or hide output. rollctl's own colours
    /// (`paint`) survive.
    public func out(_ line: String) { write(1, Self.terminalSafe(line) + "\n") }
    public func err(_ line: String) { write(2, Self.terminalSafe(line) + "\n") }

    public func warn(_ message: String) { err(paint("warning:", .yellow, tty: stderrIsTTY) + " " + message) }
    public func error(_ message: String) { err(paint("error:", .red, tty: stderrIsTTY) + " " + message) }

    /// Replaces the progress line (stderr, TTY only).
    public func progress(_ text: String) {
        guard stderrIsTTY else { return }
        lock.lock(); defer { lock.unlock() }
        rawWrite(2, "\r\u{1B}[K" + Self.terminalSafe(text))
        progressShown = true
    }

    public func clearProgress() {
        lock.lock(); defer { lock.unlock() }
        clearLocked()
    }

    private func clearLocked() {
        if progressShown {
            rawWrite(2, "\r\u{1B}[K")
            progressShown = false
        }
        if liveLines > 0 {
            // Up to the view's first line, then clear to the end of the screen.
            rawWrite(2, "\r" + (liveLines > 1 ? "\u{1B}[\(liveLines - 1)A" : "") + "\u{1B}[J")
            liveLines = 0
        }
    }

    /// Draws the live view (stderr, TTY only) in place of the previous one, in one write: each
    /// line overwritten then cleared to its end, leftover lines cleared — no blank frame between
    /// two views (no flicker). Lines printed meanwhile go above it.
    public func live(_ lines: [String]) {
        guard stderrIsTTY, !lines.isEmpty else { return }
        lock.lock(); defer { lock.unlock() }
        if progressShown { rawWrite(2, "\r\u{1B}[K"); progressShown = false }
        var frame = "\r" + (liveLines > 1 ? "\u{1B}[\(liveLines - 1)A" : "")
        frame += lines.map { Self.terminalSafe($0) + "\u{1B}[K" }.joined(separator: "\n")
        frame += "\u{1B}[J"
        rawWrite(2, frame)
        liveLines = lines.count
    }

    /// Leaves the live view on the screen as it is (its last frame stays) and ends its line.
    public func endLive() {
        lock.lock(); defer { lock.unlock() }
        if liveLines > 0 { rawWrite(2, "\n"); liveLines = 0 }
    }

    /// The terminal's size (stderr), or nil when it is not a terminal.
    public var terminalSize: (columns: Int, rows: Int)? {
        guard stderrIsTTY else { return nil }
        var w = winsize()
        guard ioctl(2, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0, w.ws_row > 0 else { return (80, 24) }
        return (Int(w.ws_col), Int(w.ws_row))
    }

    private func write(_ fd: Int32, _ text: String) {
        lock.lock(); defer { lock.unlock() }
        clearLocked()
        rawWrite(fd, text)
    }

    private func rawWrite(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { if errno == EINTR { continue }; return }
            bytes = bytes.dropFirst(n)
        }
    }

    public enum Color: String { case red = "31", green = "32", yellow = "33", bold = "1", dim = "2" }

    /// Colours `s` for the terminal. The result carries `colourMark` where the
    /// escape character goes; `out`/`err`/`progress` turn exactly the marks
    /// `paint` makes into ESC after sanitising, so a line may mix colours with
    /// remote text in any order.
    public func paint(_ s: String, _ c: Color, tty: Bool? = nil) -> String {
        let on = tty.map { $0 && color || ($0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && stdoutIsTTY) } ?? color
        return on ? "\(Self.colourMark)[\(c.rawValue)m\(s)\(Self.colourMark)[0m" : s
    }

    /// Stands for ESC in `paint`'s output until the line is written: a Unicode
    /// noncharacter, never a control character, so `sanitize` leaves it alone.
    static let colourMark = Character(Unicode.Scalar(UInt32(0xFDD0))!)

    /// Replaces every control character but newline and tab with a visible
    /// escape: C0 as caret notation (`ESC` → `^[`, `CR` → `^M`, NUL → `^@`),
    /// DEL as `^?`, C1 (U+0080–U+009F, e.g. the one-byte CSI) as `\x9b`.
    public static func sanitize(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            if !isUnsafe(u) { out.append(u); continue }
            let v = u.value
            let visible: String
            switch v {
            case 0x00...0x1F: visible = "^" + String(UnicodeScalar(UInt8(v + 0x40)))
            case 0x7F: visible = "^?"
            default: visible = "\\x" + String(v, radix: 16)
            }
            out.append(contentsOf: visible.unicodeScalars)
        }
        return String(out)
    }

    static func isUnsafe(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        return (v < 0x20 && v != 0x0A && v != 0x09) || (0x7F...0x9F).contains(v)
    }

    /// `sanitize`, then `paint`'s marks (and only those, with the codes of
    /// `Color`) become ESC; any other mark is shown as `?`.
    static func terminalSafe(_ line: String) -> String {
        let safe = sanitize(line)
        guard safe.contains(colourMark) else { return safe }
        var out = ""
        var rest = Substring(safe)
        while let i = rest.firstIndex(of: colourMark) {
            out += rest[..<i]
            let after = rest[rest.index(after: i)...]
            if let code = markedCodes.first(where: { after.hasPrefix($0) }) {
                out += "\u{1B}" + code
                rest = after.dropFirst(code.count)
            } else {
                out += "?"
                rest = after
            }
        }
        return out + rest
    }

    static let markedCodes = (["0"] + [Color.red, .green, .yellow, .bold, .dim].map(\.rawValue)).map { "[\($0)m" }
}

/// Fixed-width columns for terminal tables.
struct Table {
    var header: [String]
    var rows: [[String]] = []

    func render() -> [String] {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], visibleWidth(c)) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c + String(repeating: " ", count: max(0, widths[i] - visibleWidth(c)))
            }.joined(separator: "  ")
        }
        return [line(header)] + rows.map(line)
    }

    /// Width without colour codes (`paint`'s marks or ANSI).
    func visibleWidth(_ s: String) -> Int {
        var n = 0, inEscape = false
        for ch in s {
            if inEscape { if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" || ch == Console.colourMark { inEscape = true; continue }
            n += 1
        }
        return n
    }
}

/// JSON for `--json` output: one object per line, keys sorted, stable.
enum JSONLine {
    static func encode(_ object: [String: Any?]) -> String {
        let clean = object.compactMapValues { $0 }
        guard JSONSerialization.isValidJSONObject(clean),
              let data = try? JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            // A value JSON cannot hold (an enum, say) is a bug: loud in debug builds (the tests),
            // and never a silent `{}` that a script would take for an empty answer.
            assertionFailure("JSONLine.encode: not JSON: \(clean)")
            return #"{"error":"rollctl could not encode this line as JSON (a bug: please report it)"}"#
        }
        return String(decoding: data, as: UTF8.self)
    }
}
