import ArgumentParser
import Foundation
import Logging

/// The engine's log on the console: `HH:mm:ss host message`, problems (warning and worse) in
/// red, the hosts' and servers' dialogue (`debug`, `trace`) dimmed; with `--json` one JSON line
/// per event (`{"type": "event", "time", "level", "host", "message", "problem"}`). Everything
/// goes through `Console`, which strips control characters that came from peers.
struct ConsoleLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let json: Bool

    init(level: Logger.Level, json: Bool) {
        logLevel = level
        self.json = json
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let console = Console.shared
        let host = (event.metadata?["host"] ?? metadata["host"]).map { "\($0)" }
        let problem = event.level >= .warning
        let time = Self.timestamp()
        if json {
            console.out(JSONLine.encode(["type": "event", "time": time, "level": event.level.rawValue, "host": host,
                                         "message": event.message.description, "problem": problem]))
            return
        }
        let who = host.map { $0 + " " } ?? ""
        let text = "\(console.paint(time, .dim)) \(who)\(event.message)"
        if problem { console.out(console.paint(text, .red)) } else if event.level <= .debug { console.out(console.paint(text, .dim)) } else { console.out(text) }
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: Date())
    }
}

/// `--verbose` / `--log-level`, for the commands that drive hosts.
struct LogOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Also show the SSH and SMTP dialogue and every gate sample (--log-level debug).")
    var verbose = false

    @Option(help: ArgumentHelp("trace, debug, info, notice (default), warning or error. Credentials are never logged.", valueName: "level"))
    var logLevel: String?

    func validate() throws {
        if let l = logLevel, Logger.Level(rawValue: l) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error; found '\(l)'")
        }
    }

    var level: Logger.Level { logLevel.flatMap(Logger.Level.init(rawValue:)) ?? (verbose ? .debug : .notice) }

    /// The engine's logger, rendered on the console.
    func logger(json: Bool) -> Logger {
        let (level, json) = (level, json)
        return Logger(label: "rollctl") { _ in ConsoleLogHandler(level: level, json: json) }
    }
}
