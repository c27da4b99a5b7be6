import Foundation

/// Notice templates (mustache), as the plan loader checks them: `check` finds variables
/// rollctl does not provide (with file:line and a "did you mean"), unbalanced sections,
/// partials. Rendering is the notices' business (`NoticeTemplate.render` in Notices).
public enum NoticeTemplate {
    /// Kinds of notice, each with `<kind>.subject` and `<kind>.body` in the templates folder.
    public static let kinds = ["maintenance", "done", "rolled_back", "rescheduled"]
    /// Top-level variables every notice gets.
    public static let variables = ["company", "customer_name", "customer_id", "customer_email", "hosts", "host_count",
                                   "window_start", "window_end", "kernel", "previous_kernel", "plan", "wave", "lead_time"]
    /// Variables inside `{{#hosts}}…{{/hosts}}`.
    public static let hostVariables = ["name", "address"]

    enum Token { case text(String), variable(String, line: Int), open(String, inverted: Bool, line: Int), close(String, line: Int) }

    /// Every problem in one template text: unknown variables (with "did you mean"),
    /// unbalanced sections, partials and delimiter changes (not supported).
    public static func check(_ text: String, file: String) -> [InputError] {
        var errors: [InputError] = []
        let tokens = tokenize(text, file: file, errors: &errors)
        var stack: [(String, Int)] = []
        for t in tokens {
            switch t {
            case .text: break
            case let .variable(name, line):
                let allowed = stack.contains(where: { $0.0 == "hosts" }) ? variables + hostVariables : variables
                if name == "hosts" {
                    errors.append(InputError(file: file, line: line, column: nil, "'{{hosts}}' is a list",
                                             hint: "list it with {{#hosts}}{{name}} {{/hosts}}, or use {{host_count}}"))
                } else if !allowed.contains(name) {
                    errors.append(InputError(file: file, line: line, column: nil, "unknown template variable '\(name)'",
                                             hint: nearest(name, in: allowed.filter { $0 != "." }).map { "did you mean '\($0)'?" }
                                                ?? "known: \(variables.joined(separator: ", "))"))
                }
            case let .open(name, _, line):
                if !variables.contains(name) {
                    errors.append(InputError(file: file, line: line, column: nil, "unknown template section '\(name)'",
                                             hint: nearest(name, in: variables).map { "did you mean '\($0)'?" }))
                }
                stack.append((name, line))
            case let .close(name, line):
                if let last = stack.last, last.0 == name { stack.removeLast() } else {
                    errors.append(InputError(file: file, line: line, column: nil, "'{{/\(name)}}' closes a section that is not open"
                                             + (stack.last.map { " ('\($0.0)' opened at line \($0.1) is)" } ?? "")))
                }
            }
        }
        for (name, line) in stack {
            errors.append(InputError(file: file, line: line, column: nil, "section '\(name)' is never closed", hint: "add {{/\(name)}}"))
        }
        return errors.enumerated().sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }.map(\.element)
    }

    /// Checks a templates folder: `maintenance.subject` and `maintenance.body` are
    /// required; every `*.subject`/`*.body` is checked.
    package static func checkDirectory(_ dir: String, plan: String, position: (Int?, Int?)) -> [InputError] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            return [InputError(file: plan, line: position.0, column: position.1, "notify.templates: no folder \(dir)",
                               hint: "create it with maintenance.subject and maintenance.body, or remove notify.templates")]
        }
        var errors: [InputError] = []
        for kind in kinds {
            for part in ["subject", "body"] {
                let path = dir + "/" + kind + "." + part
                guard let data = FileManager.default.contents(atPath: path) else {
                    if kind == "maintenance" {
                        errors.append(InputError(file: plan, line: position.0, column: position.1, "notify.templates: \(path) is missing"))
                    }
                    continue
                }
                guard data.count <= 256 * 1024, let text = String(data: data, encoding: .utf8) else {
                    errors.append(InputError(file: path, "a template must be UTF-8 text of at most 256 KiB"))
                    continue
                }
                errors += check(text, file: path)
                if part == "subject" && text.trimmingCharacters(in: .whitespacesAndNewlines).contains(where: \.isNewline) {
                    errors.append(InputError(file: path, "a subject must be one line"))
                }
            }
        }
        return errors
    }

    static func tokenize(_ text: String, file: String, errors: inout [InputError]) -> [Token] {
        var out: [Token] = []
        var rest = Substring(text)
        var line = 1
        while let open = rest.range(of: "{{") {
            let before = rest[..<open.lowerBound]
            out.append(.text(String(before)))
            line += before.filter(\.isNewline).count
            var after = rest[open.upperBound...]
            var triple = false
            if after.first == "{" { triple = true; after = after.dropFirst() }
            guard let close = after.range(of: triple ? "}}}" : "}}") else {
                errors.append(InputError(file: file, line: line, column: nil, "'{{' is never closed with '}}'"))
                return out
            }
            let tag = after[..<close.lowerBound]
            line += tag.filter(\.isNewline).count
            rest = after[close.upperBound...]
            var body = tag.trimmingCharacters(in: .whitespaces)
            guard let sigil = body.first else {
                errors.append(InputError(file: file, line: line, column: nil, "an empty tag {{}}"))
                continue
            }
            switch sigil {
            case "!": continue
            case "#", "^", "/", "&":
                body = String(body.dropFirst()).trimmingCharacters(in: .whitespaces)
                switch sigil {
                case "#": out.append(.open(body, inverted: false, line: line))
                case "^": out.append(.open(body, inverted: true, line: line))
                case "/": out.append(.close(body, line: line))
                default: out.append(.variable(body, line: line))
                }
            case ">", "=", "<", "$":
                errors.append(InputError(file: file, line: line, column: nil, "'{{\(sigil)…}}' (partials, delimiters, blocks) is not supported in notice templates"))
            default:
                out.append(.variable(body, line: line))
            }
        }
        out.append(.text(String(rest)))
        return out
    }
}
