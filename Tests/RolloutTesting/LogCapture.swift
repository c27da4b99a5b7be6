import Foundation
import Logging

/// A `LogHandler` that keeps every line (with its host metadata) for tests to look at, or
/// hands each to `onLine` without keeping it (bench-core counts 100k hosts' lines).
public final class LogCapture: @unchecked Sendable {
    public struct Line: Sendable, Equatable {
        public var level: Logger.Level
        public var host: String?
        public var message: String
        public var isProblem: Bool { level >= .warning }
        public init(level: Logger.Level, host: String?, message: String) { self.level = level; self.host = host; self.message = message }
    }
    private let lock = NSLock()
    private var stored: [Line] = []
    private let onLine: (@Sendable (Line) -> Void)?
    public init(onLine: (@Sendable (Line) -> Void)? = nil) { self.onLine = onLine }
    public var lines: [Line] { lock.lock(); defer { lock.unlock() }; return stored }
    func add(_ l: Line) {
        if let onLine { return onLine(l) }
        lock.lock(); stored.append(l); lock.unlock()
    }

    /// A logger whose lines land here (at `level` and above).
    public func logger(_ label: String = "rollctl", level: Logger.Level = .trace) -> Logger {
        var l = Logger(label: label) { _ in Handler(capture: self) }
        l.logLevel = level
        return l
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let host = (event.metadata?["host"] ?? metadata["host"]).map { "\($0)" }
            capture.add(Line(level: event.level, host: host, message: "\(event.message)"))
        }
    }
}
