import Testing
@testable import RollctlCommands

/// Text from hosts and servers never reaches the terminal with its control
/// characters; rollctl's own colours do.
@Suite struct ConsoleTests {
    @Test func sanitizeMakesEveryControlCharacterVisible() {
        #expect(Console.sanitize("plain text, tabs\tand\nnewlines") == "plain text, tabs\tand\nnewlines")
        #expect(Console.sanitize("\u{1B}[2J\u{1B}]0;owned\u{07}") == "^[[2J^[]0;owned^G")
        #expect(Console.sanitize("a\rb\u{0}c\u{7F}d\u{08}") == "a^Mb^@c^?d^H")
        // C1 controls, e.g. the one-character CSI and OSC.
        #expect(Console.sanitize("x\u{9B}31my\u{9D}0;t\u{80}") == "x\\x9b31my\\x9d0;t\\x80")
        // Printable non-ASCII is left alone.
        #expect(Console.sanitize("Novák, s.r.o. → ok ✓") == "Novák, s.r.o. → ok ✓")
        // Every scalar below U+00A0 other than \t, \n and the printable ASCII is replaced.
        for v in UInt32(0)..<0xA0 {
            let s = String(UnicodeScalar(v)!)
            let keep = v == 0x09 || v == 0x0A || (0x20..<0x7F).contains(v)
            #expect((Console.sanitize(s) == s) == keep, "U+\(String(v, radix: 16))")
            #expect(!Console.sanitize(s).unicodeScalars.contains { $0.value == 0x1B || (0x80..<0xA0).contains($0.value) } || keep)
        }
    }

    @Test func ownColoursSurviveRemoteEscapesDoNot() {
        let c = Console(stdoutIsTTY: true, stderrIsTTY: true, color: true)
        let remote = "disk \u{1B}[8mhidden\u{1B}[0m \u{1B}]0;title\u{07}"
        let line = c.paint("== web-1", .bold) + " (" + c.paint("failed", .red) + ") " + c.paint("  ! " + remote, .dim)
        let written = Console.terminalSafe(line)
        #expect(written == "\u{1B}[1m== web-1\u{1B}[0m (\u{1B}[31mfailed\u{1B}[0m) \u{1B}[2m  ! disk ^[[8mhidden^[[0m ^[]0;title^G\u{1B}[0m")
        // The only ESCs left are paint's.
        let escapes = written.components(separatedBy: "\u{1B}").count - 1
        #expect(escapes == 6)
        // A stray mark is not turned into an escape sequence.
        #expect(Console.terminalSafe("a\(Console.colourMark)[2Jb") == "a?[2Jb")
        // Without colour paint adds nothing.
        let plain = Console(stdoutIsTTY: false, stderrIsTTY: false, color: false)
        #expect(Console.terminalSafe(plain.paint("ok", .green) + " \u{1B}[31m") == "ok ^[[31m")
    }

    @Test func tableWidthsIgnoreColourMarks() {
        let c = Console(stdoutIsTTY: true, stderrIsTTY: true, color: true)
        var t = Table(header: ["HOST", "STATE"])
        t.rows = [[c.paint("web-1", .red), "ok"], ["web-22", "ok"]]
        let lines = t.render().map(Console.terminalSafe)
        #expect(lines[1] == "\u{1B}[31mweb-1\u{1B}[0m   ok")
        #expect(lines[2] == "web-22  ok")
    }
}
