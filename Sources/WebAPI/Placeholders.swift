import Foundation

/// `{name}` and `{address}` in PromQL queries and Alertmanager matchers, put in as the *contents
/// of a quoted string* — escaped, never spliced raw — so a host named `a"} or vector(1) #` stays
/// a string and cannot rewrite the query. Inside a regex matcher (`=~`, `!~`) the value is also
/// regex-quoted, so `10.0.0.1` matches only itself.
public enum Placeholders {
    public static let names = ["name", "address"]

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Checks a PromQL template: every placeholder sits in a double- or single-quoted string.
    public static func checkPromQL(_ template: String) throws(Problem) {
        _ = try expandPromQL(template, values: ["name": "host", "address": "192.0.2.1"])
    }

    /// The template with its placeholders replaced by `values` (escaped for their string).
    public static func expandPromQL(_ template: String, values: [String: String]) throws(Problem) -> String {
        let chars = Array(template)
        var out = ""
        var quote: Character? = nil      // the open string's quote, if inside one
        var regex = false                // the open string is a regex matcher's value
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if let q = quote {
                if c == "\\" && q != "`" && i + 1 < chars.count {
                    out.append(c); out.append(chars[i + 1]); i += 2; continue
                }
                if c == q { quote = nil; out.append(c); i += 1; continue }
                if c == "{", let (key, end) = placeholder(chars, at: i) {
                    guard let v = values[key] else { throw Problem(reason: "no value for {\(key)}") }
                    guard q != "`" else {
                        throw Problem(reason: "{\(key)} inside a `raw` string cannot be escaped: use \"...\" quotes")
                    }
                    out += escapeString(regex ? quoteRegex(v) : v, quote: q)
                    i = end
                    continue
                }
                out.append(c); i += 1
                continue
            }
            if c == "\"" || c == "'" || c == "`" {
                quote = c
                regex = previousOperator(chars, before: i).map { $0 == "=~" || $0 == "!~" } ?? false
                out.append(c); i += 1
                continue
            }
            if c == "#" {   // a comment to the end of the line: copied, placeholders and all
                while i < chars.count && chars[i] != "\n" { out.append(chars[i]); i += 1 }
                continue
            }
            if c == "{", let (key, _) = placeholder(chars, at: i) {
                throw Problem(reason: "{\(key)} must be inside a quoted label value, e.g. instance=\"{address}:9100\"")
            }
            out.append(c); i += 1
        }
        if quote != nil { throw Problem(reason: "a quoted string is not closed") }
        return out
    }

    /// `{name}` or `{address}` starting at `i`: the key and the index after the `}`.
    static func placeholder(_ chars: [Character], at i: Int) -> (String, Int)? {
        for key in names {
            let k = Array(key)
            let end = i + 1 + k.count
            if end < chars.count, Array(chars[(i + 1)..<end]) == k, chars[end] == "}" { return (key, end + 1) }
        }
        return nil
    }

    /// The two characters before a string, spaces skipped (`=~` or `!~` make it a regex).
    static func previousOperator(_ chars: [Character], before i: Int) -> String? {
        var j = i - 1
        while j >= 0 && chars[j] == " " { j -= 1 }
        guard j >= 1 else { return nil }
        return String(chars[(j - 1)...j])
    }

    /// The contents of a PromQL (Go) string literal in `quote`.
    public static func escapeString(_ s: String, quote: Character = "\"") -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote { out += "\\\(quote)" }
                else if u.value < 0x20 || u.value == 0x7f { out += String(format: "\\x%02x", u.value) }
                else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    /// RE2 metacharacters escaped (Go's regexp.QuoteMeta).
    public static func quoteRegex(_ s: String) -> String {
        var out = ""
        for c in s {
            if "\\.+*?()|[]{}^$".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// Plain substitution into a value that is already unquoted (an Alertmanager matcher's value).
    public static func expandValue(_ template: String, values: [String: String], regex: Bool) -> String {
        var out = template
        for (k, v) in values { out = out.replacingOccurrences(of: "{\(k)}", with: regex ? quoteRegex(v) : v) }
        return out
    }

    public static func mentions(_ template: String) -> Bool {
        names.contains { template.contains("{\($0)}") }
    }
}
