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
    public let stdoutIsTTY: Bool
    public let stderrIsTTY: Bool
    public let color: Bool

    init() {
        stdoutIsTTY = isatty(1) == 1
        stderrIsTTY = isatty(2) == 1
        let env = ProcessInfo.processInfo.environment
        color = stdoutIsTTY && env["NO_COLOR"] == nil && env["TERM"] != "dumb"
    }

    public func out(_ line: String) { write(1, line + "\n") }
    public func err(_ line: String) { write(2, line + "\n") }

    public func warn(_ message: String) { err(paint("warning:", .yellow, tty: stderrIsTTY) + " " + message) }
    public func error(_ message: String) { err(paint("error:", .red, tty: stderrIsTTY) + " " + message) }

    /// Replaces the progress line (stderr, TTY only).
    public func progress(_ text: String) {
        guard stderrIsTTY else { return }
        lock.lock(); defer { lock.unlock() }
        rawWrite(2, "\r\u{1B}[K" + text)
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

    public func paint(_ s: String, _ c: Color, tty: Bool? = nil) -> String {
        let on = tty.map { $0 && color || ($0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && stdoutIsTTY) } ?? color
        return on ? "\u{1B}[\(c.rawValue)m\(s)\u{1B}[0m" : s
    }
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

    /// Width without ANSI colour codes.
    func visibleWidth(_ s: String) -> Int {
        var n = 0, inEscape = false
        for ch in s {
            if inEscape { if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" { inEscape = true; continue }
            n += 1
        }
        return n
    }
}

/// JSON for `--json` output: one object per line, keys sorted, stable.
enum JSONLine {
    static func encode(_ object: [String: Any?]) -> String {
        let clean = object.compactMapValues { $0 }
        guard let data = try? JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
