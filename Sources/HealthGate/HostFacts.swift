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

    /// The shell command that prints every fact file behind a marker line.
    /// (`uname -r` is not used: `/proc/sys/kernel/osrelease` is the same value on a
    /// real host and can be faked in a simulated one.)
    public static let command: String =
        "for f in " + files.joined(separator: " ")
        + "; do echo \"\(marker)$f\"; cat \"$f\" 2>&1 || echo \"@@rollctl-unreadable\"; done"

    /// Parses the output of `command`.
    public static func parse(_ output: String) -> HostFacts {
        var sections: [String: Substring] = [:]
        var current: String?
        var start = output.startIndex
        var idx = output.startIndex
        func close(_ end: String.Index) {
            if let c = current { sections[c] = output[start..<end] }
        }
        while idx < output.endIndex {
            let lineEnd = output[idx...].firstIndex(where: \.isNewline) ?? output.endIndex
            let line = output[idx..<lineEnd]
            if line.hasPrefix(marker) {
                close(idx)
                current = String(line.dropFirst(marker.count))
                start = lineEnd < output.endIndex ? output.index(after: lineEnd) : lineEnd
            }
            idx = lineEnd < output.endIndex ? output.index(after: lineEnd) : lineEnd
        }
        close(output.endIndex)

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
