import Basics
/// One read-only snapshot of a host: kernel release, boot id, uptime, memory and
/// the OOM counter. Gathered with a single command (one SSH round trip) that
/// only `cat`s files every Linux host has; it never loads the host.
public struct HostFacts: Sendable, Equatable, Codable {
    public var release: String?
    public var bootID: String?
    public var uptimeSeconds: Double?
    public var memory: MemInfo
    public var oomKill: UInt64?
    /// Files that could not be read, with the error text the host gave.
    public var unreadable: [String: String]

    public init(release: String? = nil, bootID: String? = nil, uptimeSeconds: Double? = nil,
                memory: MemInfo = MemInfo(), oomKill: UInt64? = nil, unreadable: [String: String] = [:]) {
        self.release = release
        self.bootID = bootID
        self.uptimeSeconds = uptimeSeconds
        self.memory = memory
        self.oomKill = oomKill
        self.unreadable = unreadable
    }

    static let files = [
        "/proc/sys/kernel/osrelease",
        "/proc/sys/kernel/random/boot_id",
        "/proc/uptime",
        "/proc/meminfo",
        "/proc/vmstat",
    ]
    static let marker = "@@rollctl-file "
    static let markerBytes = Array(marker.utf8)

    /// The shell command that prints every fact file behind a marker line.
    /// (`uname -r` is not used: `/proc/sys/kernel/osrelease` is the same value on a
    /// real host and can be faked in a simulated one.)
    public static let command: String =
        "for f in " + files.joined(separator: " ")
        + "; do echo \"\(marker)$f\"; cat \"$f\" 2>&1 || echo \"@@rollctl-unreadable\"; done"

    /// Parses the output of `command`.
    public static func parse(_ output: String) -> HostFacts {
        // Lines found on the UTF-8 bytes (this runs for every gate sample of every host); a marker
        // line is `marker` + a file name up to its newline (LF, or CR LF).
        var sections: [String: Substring] = [:]
        var current: String?
        let utf8 = output.utf8
        var start = utf8.startIndex
        var idx = utf8.startIndex
        let markerBytes = Self.markerBytes
        func close(_ end: String.Index) {
            if let c = current { sections[c] = output[start..<end] }
        }
        while idx < utf8.endIndex {
            let lineEnd = utf8[idx...].firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) ?? utf8.endIndex
            let line = utf8[idx..<lineEnd]
            var next = lineEnd
            if next < utf8.endIndex {
                let crlf = utf8[next] == 0x0D && utf8.index(after: next) < utf8.endIndex && utf8[utf8.index(after: next)] == 0x0A
                next = utf8.index(next, offsetBy: crlf ? 2 : 1)
            }
            if line.starts(with: markerBytes) {
                close(idx)
                current = String(Substring(output.utf8[utf8.index(idx, offsetBy: markerBytes.count)..<lineEnd]))
                start = next
            }
            idx = next
        }
        close(utf8.endIndex)

        var facts = HostFacts()
        for file in files {
            guard let text = sections[file] else {
                facts.unreadable[file] = "no output"
                continue
            }
            if text.contains("@@rollctl-unreadable") {
                facts.unreadable[file] = String(text.split(whereSeparator: \.isNewline).first ?? "unreadable").trimmed
                continue
            }
            switch file {
            case "/proc/sys/kernel/osrelease": facts.release = nonEmpty(text)
            case "/proc/sys/kernel/random/boot_id": facts.bootID = nonEmpty(text)
            case "/proc/uptime": facts.uptimeSeconds = Uptime.seconds(in: String(text))
            case "/proc/meminfo": facts.memory = MemInfo.parse(text)
            case "/proc/vmstat": facts.oomKill = VMStat.value("oom_kill", in: text)
            default: break
            }
        }
        return facts
    }

    private static func nonEmpty(_ s: Substring) -> String? {
        let t = String(s).trimmed
        return t.isEmpty ? nil : t
    }

    /// Reads the facts of a host.
    public static func read(from host: some HostReader, timeout: Duration = .seconds(10)) async throws -> HostFacts {
        let result = try await host.run(command, timeout: timeout)
        return parse(result.stdout)
    }
}
