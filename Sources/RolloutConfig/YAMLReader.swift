import Foundation
import Yams
import Basics

/// Strict reading of a YAML document: every node keeps its line and column,
/// unknown keys are errors with a "did you mean", wrong types name the expected
/// type, and all problems are collected so the user sees them at once.
public final class YAMLReader {
    public let file: String
    public var errors: [InputError] = []
    /// Inputs larger than this are refused before parsing.
    public static let maxBytes = 4 * 1024 * 1024
    /// Deeper nesting than this is refused (no real inventory or plan needs it).
    public static let maxDepth = 32

    public init(file: String) { self.file = file }

    public func error(_ node: Node?, _ message: String, hint: String? = nil) {
        errors.append(InputError(file: file, line: node?.mark?.line, column: node?.mark?.column, message, hint: hint))
    }

    /// Reads and parses a file into its root node; problems are recorded, nil returned.
    public func load(path: String) -> Node? {
        guard let data = read(path: path) else { return nil }
        return parse(data: data)
    }

    /// The file's bytes, its size checked before a byte is read: a file over
    /// `maxBytes` is refused unread. Problems are recorded, nil returned.
    public func read(path: String) -> Data? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            errors.append(InputError(file: file, "no such file"))
            return nil
        }
        if isDir.boolValue {
            errors.append(InputError(file: file, "is a directory, not a file"))
            return nil
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > Self.maxBytes {
            errors.append(Self.tooLarge(file, size))
            return nil
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            errors.append(InputError(file: file, "cannot be read (permissions?)"))
            return nil
        }
        defer { try? handle.close() }
        // A file that grows (or a FIFO) is still read no further than one byte past the cap.
        let data = (try? handle.read(upToCount: Self.maxBytes + 1)) ?? Data()
        if data.count > Self.maxBytes {
            errors.append(Self.tooLarge(file, data.count))
            return nil
        }
        return data
    }

    static func tooLarge(_ file: String, _ bytes: Int) -> InputError {
        InputError(file: file, "file is \(bytes / 1024) KiB; rollctl reads at most \(maxBytes / 1024 / 1024) MiB", hint: "is this the right file?")
    }

    public func parse(data: Data) -> Node? {
        if data.count > Self.maxBytes {
            errors.append(Self.tooLarge(file, data.count))
            return nil
        }
        if let nul = data.firstIndex(of: 0) {
            let (l, c) = Self.position(of: nul - data.startIndex, in: data)
            errors.append(InputError(file: file, line: l, column: c, "binary data (a NUL byte) in a YAML file", hint: "is this the right file?"))
            return nil
        }
        guard let text = String(data: data, encoding: .utf8) else {
            errors.append(InputError(file: file, "not valid UTF-8 text", hint: "save the file as UTF-8"))
            return nil
        }
        if let (l, c) = Self.excessiveNesting(text) {
            errors.append(InputError(file: file, line: l, column: c, "nesting deeper than \(Self.maxDepth) levels"))
            return nil
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                errors.append(InputError(file: file, line: 1, column: 1, "the file is empty"))
                return nil
            }
            return node
        } catch let e as YamlError {
            switch e {
            case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
                var msg = "YAML syntax: \(problem)"
                if let context { msg += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
                errors.append(InputError(file: file, line: mark.line, column: mark.column, msg))
            case let .duplicatedKeysInMapping(duplicates, context):
                errors.append(InputError(file: file, line: context.mark.line, column: context.mark.column,
                                         "duplicate key\(duplicates.count > 1 ? "s" : "") \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in one mapping"))
            default:
                errors.append(InputError(file: file, "YAML: \(e)"))
            }
            return nil
        } catch {
            errors.append(InputError(file: file, "YAML: \(error)"))
            return nil
        }
    }

    static func position(of offset: Int, in data: Data) -> (Int, Int) {
        var line = 1, col = 1
        for b in data.prefix(offset) {
            if b == UInt8(ascii: "\n") { line += 1; col = 1 } else { col += 1 }
        }
        return (line, col)
    }

    /// Flow-style nesting (`[[[[...`) is what can get deep enough to hurt a recursive
    /// composer; block nesting is bounded by indentation and the line length.
    static func excessiveNesting(_ text: String) -> (Int, Int)? {
        var depth = 0, line = 1, col = 0
        var quote: Character? = nil
        for ch in text {
            col += 1
            if ch == "\n" { line += 1; col = 0; continue }
            if let q = quote { if ch == q { quote = nil }; continue }
            switch ch {
            case "\"", "'": quote = ch
            case "[", "{":
                depth += 1
                if depth > maxDepth { return (line, col) }
            case "]", "}": depth = max(0, depth - 1)
            default: break
            }
        }
        return nil
    }

    // MARK: - typed access

    /// The pairs of a mapping with keys checked against `allowed`. Unknown and
    /// duplicate keys are recorded as errors and left out.
    public func mapping(_ node: Node, _ what: String, allowed: [String]) -> [(key: String, keyNode: Node, value: Node)]? {
        guard case let .mapping(m) = node else {
            error(node, "\(what) must be a mapping (key: value), found \(kind(node))")
            return nil
        }
        var out: [(String, Node, Node)] = []
        var seen = Set<String>()
        for (k, v) in m {
            guard let key = k.scalar?.string else {
                error(k, "keys in \(what) must be plain strings")
                continue
            }
            if !seen.insert(key).inserted {
                error(k, "duplicate key '\(key)' in \(what)")
                continue
            }
            if !allowed.contains(key) {
                let hint = nearest(key, in: allowed).map { "did you mean '\($0)'?" } ?? "allowed keys: \(allowed.joined(separator: ", "))"
                error(k, "unknown key '\(key)' in \(what)", hint: hint)
                continue
            }
            out.append((key, k, v))
        }
        return out
    }

    public func kind(_ node: Node) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let s): s.string.isEmpty && s.style == .plain ? "nothing" : "'\(s.string.prefix(40))'"
        case .alias: "an alias"
        }
    }

    public func string(_ node: Node, _ what: String) -> String? {
        guard case let .scalar(s) = node, !(s.style == .plain && ["", "~", "null"].contains(s.string)) else {
            error(node, "\(what) must be a string, found \(kind(node))")
            return nil
        }
        return s.string
    }

    public func int(_ node: Node, _ what: String, range: ClosedRange<Int>) -> Int? {
        guard case let .scalar(s) = node, let v = Int(s.string) else {
            error(node, "\(what) must be a whole number, found \(kind(node))")
            return nil
        }
        guard range.contains(v) else {
            error(node, "\(what) must be between \(range.lowerBound) and \(range.upperBound), found \(v)")
            return nil
        }
        return v
    }

    public func bool(_ node: Node, _ what: String) -> Bool? {
        guard case let .scalar(s) = node, let b = ["true": true, "false": false, "yes": true, "no": false][s.string.lowercased()] else {
            error(node, "\(what) must be true or false, found \(kind(node))")
            return nil
        }
        return b
    }

    /// A duration like `90s`, `10m`, `1h30m`, `500ms`.
    public func duration(_ node: Node, _ what: String, min: Duration = .zero) -> Duration? {
        guard case let .scalar(s) = node, let d = DurationText.parse(s.string) else {
            error(node, "\(what) must be a duration like 90s, 10m or 1h30m, found \(kind(node))")
            return nil
        }
        if d < min {
            error(node, "\(what) must be at least \(min), found \(s.string)")
            return nil
        }
        return d
    }


    /// Every scalar in a sequence, or a single scalar as a one-element list.
    public func stringList(_ node: Node, _ what: String) -> [String]? {
        switch node {
        case .scalar: return string(node, what).map { [$0] }
        case .sequence(let seq): return seq.compactMap { string($0, "each entry of \(what)") }
        default:
            error(node, "\(what) must be a string or a list of strings, found \(kind(node))")
            return nil
        }
    }
}
