import Foundation
import Yams
import Basics

/// A customer hosted on the fleet: who gets the notices.
public struct Customer: Sendable, Equatable, Hashable, Codable {
    public var id: String
    public var name: String
    public var email: String
    public init(id: String, name: String, email: String) {
        self.id = id
        self.name = name
        self.email = email
    }
}

/// Which customers live on which hosts, from a customers file.
///
/// CSV with a header naming the columns `host,customer_id,name,email` (any
/// order, RFC 4180 quoting allowed), one row per (host, customer):
/// ```
/// host,customer_id,name,email
/// web-001,c0042,"Novak, Anna",anna@example.org
/// ```
/// or YAML (`.yaml`/`.yml`):
/// ```yaml
/// customers:
///   - {id: c0042, name: Anna Novak, email: anna@example.org, hosts: [web-001, web-002]}
/// ```
/// Validated strictly: missing columns, bad emails, a customer id with two
/// different names or emails, and (given an inventory) hosts it does not list
/// are errors with line numbers.
public struct Customers: Sendable {
    public var path: String
    /// Customers by id.
    public private(set) var byID: [String: Customer]
    /// Customer ids per host, in file order.
    public private(set) var idsByHost: [String: [String]]

    public init(path: String, rows: [(host: String, customer: Customer)]) {
        self.path = path
        byID = [:]
        idsByHost = [:]
        for (host, c) in rows {
            byID[c.id] = c
            if !(idsByHost[host]?.contains(c.id) ?? false) { idsByHost[host, default: []].append(c.id) }
        }
    }

    /// The customers hosted on `host` (empty for an unknown host).
    public func customers(onHost host: String) -> [Customer] {
        (idsByHost[host] ?? []).compactMap { byID[$0] }
    }

    /// The hosts a customer lives on, sorted.
    public func hosts(ofCustomer id: String) -> [String] {
        idsByHost.filter { $0.value.contains(id) }.map(\.key).sorted()
    }

    /// Distinct customers on any of `hosts`, sorted by id.
    public func customers(onHosts hosts: some Sequence<String>) -> [Customer] {
        var ids = Set<String>()
        for h in hosts { ids.formUnion(idsByHost[h] ?? []) }
        return ids.sorted().compactMap { byID[$0] }
    }

    public var count: Int { byID.count }

    /// Larger customer files are refused (a 5000-host fleet with 500 customers per host is ~150 MB of CSV).
    public static let maxBytes = 256 * 1024 * 1024

    /// Loads a customers file; with an inventory, every host must be in it. Throws `InputErrors`.
    public static func load(path: String, inventory: Inventory?) throws -> Customers {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            throw InputErrors([InputError(file: path, exists ? (isDir.boolValue ? "is a directory, not a file" : "cannot be read (permissions?)") : "no such file",
                                          hint: exists ? nil : "create it (CSV: host,customer_id,name,email) or fix notify.customers in the plan")])
        }
        return try parse(data: data, path: path, inventory: inventory)
    }

    /// Parses CSV or (by extension `.yaml`/`.yml`) YAML customers data.
    public static func parse(data: Data, path: String, inventory: Inventory?) throws -> Customers {
        var errors: [InputError] = []
        if data.count > maxBytes {
            throw InputErrors([InputError(file: path, "file is \(data.count / 1024 / 1024) MiB; rollctl reads at most \(maxBytes / 1024 / 1024) MiB")])
        }
        var rows: [(host: String, customer: Customer, line: Int)] = []
        let lower = path.lowercased()
        if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") {
            rows = parseYAML(data: data, path: path, errors: &errors)
        } else {
            let nulOffset = data.withUnsafeBytes { raw -> Int? in
                guard let base = raw.baseAddress, let hit = memchr(base, 0, raw.count) else { return nil }
                return base.distance(to: UnsafeRawPointer(hit))
            }
            if let nul = nulOffset {
                let (l, c) = YAMLReader.position(of: nul, in: data)
                throw InputErrors([InputError(file: path, line: l, column: c, "binary data (a NUL byte) in a customers file", hint: "is this the right file?")])
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw InputErrors([InputError(file: path, "not valid UTF-8 text", hint: "save the file as UTF-8")])
            }
            rows = parseCSV(text: text, path: path, errors: &errors)
        }
        // Consistency: one name and email per customer id; hosts known to the inventory.
        var first: [String: (Customer, Int)] = [:]
        let known = inventory.map { Set($0.hosts.map(\.name)) }
        let names = inventory?.hosts.map(\.name) ?? []
        var unknownReported = Set<String>()
        for row in rows {
            if let (c, line) = first[row.customer.id] {
                if c.email != row.customer.email || c.name != row.customer.name {
                    errors.append(InputError(file: path, line: row.line, column: nil,
                                             "customer \(row.customer.id) is '\(c.name)' <\(c.email)> at line \(line) but '\(row.customer.name)' <\(row.customer.email)> here",
                                             hint: "one name and email per customer_id"))
                }
            } else {
                first[row.customer.id] = (row.customer, row.line)
            }
            if let known, !known.contains(row.host), unknownReported.insert(row.host).inserted {
                errors.append(InputError(file: path, line: row.line, column: nil,
                                         "host '\(Inventory.printable(row.host))' is not in the inventory \(inventory!.path)",
                                         hint: nearest(row.host, in: names).map { "did you mean '\($0)'?" }))
            }
        }
        if rows.isEmpty && errors.isEmpty {
            errors.append(InputError(file: path, line: 1, column: nil, "the customers file lists no customers"))
        }
        if !errors.isEmpty { throw InputErrors(errors) }
        return Customers(path: path, rows: rows.map { ($0.host, $0.customer) })
    }

    static let columns = ["host", "customer_id", "name", "email"]

    static func parseCSV(text: String, path: String, errors: inout [InputError]) -> [(host: String, customer: Customer, line: Int)] {
        let records = CSV.records(text, path: path, errors: &errors)
        guard let header = records.first else {
            errors.append(InputError(file: path, line: 1, column: nil, "the customers file is empty", hint: "first line: host,customer_id,name,email"))
            return []
        }
        var index: [String: Int] = [:]
        for (i, name) in header.fields.enumerated() {
            let n = name.trimmed.lowercased()
            if columns.contains(n) {
                if index[n] != nil { errors.append(InputError(file: path, line: header.line, column: nil, "column '\(n)' appears twice in the header")) }
                index[n] = i
            } else {
                errors.append(InputError(file: path, line: header.line, column: nil, "unknown column '\(Inventory.printable(name))' in the header",
                                         hint: nearest(n, in: columns).map { "did you mean '\($0)'?" } ?? "the columns are host,customer_id,name,email"))
            }
        }
        let missing = columns.filter { index[$0] == nil }
        if !missing.isEmpty {
            errors.append(InputError(file: path, line: header.line, column: nil, "the header lacks the column\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", "))",
                                     hint: "first line: host,customer_id,name,email"))
            return []
        }
        var rows: [(String, Customer, Int)] = []
        for rec in records.dropFirst() {
            if rec.fields.count == 1 && rec.fields[0].trimmed.isEmpty { continue }
            guard rec.fields.count == header.fields.count else {
                errors.append(InputError(file: path, line: rec.line, column: nil, "\(rec.fields.count) fields, the header has \(header.fields.count)",
                                         hint: "quote fields that contain commas: \"Novak, Anna\""))
                continue
            }
            func field(_ c: String) -> String { rec.fields[index[c]!].trimmed }
            if let row = validRow(host: field("host"), id: field("customer_id"), name: field("name"), email: field("email"),
                                  line: rec.line, path: path, errors: &errors) {
                rows.append((row.0, row.1, rec.line))
            }
        }
        return rows
    }

    static func validRow(host: String, id: String, name: String, email: String, line: Int, path: String,
                         errors: inout [InputError]) -> (String, Customer)? {
        var ok = true
        func bad(_ m: String, hint: String? = nil) { errors.append(InputError(file: path, line: line, column: nil, m, hint: hint)); ok = false }
        if !Inventory.isValidHostName(host) { bad("host '\(Inventory.printable(host))' is not a valid host name") }
        if id.isEmpty || id.count > 128 || !id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-:".contains($0)) }) {
            bad("customer_id '\(Inventory.printable(id))' is not valid: letters, digits, '.', '_', '-', ':' (at most 128)")
        }
        if name.isEmpty || name.count > 200 || name.contains(where: { $0.isNewline || ($0.asciiValue.map { $0 < 32 || $0 == 127 } ?? false) }) {
            bad("customer name '\(Inventory.printable(name))' must be one line of 1 to 200 characters")
        }
        if !isValidEmail(email) { bad("'\(Inventory.printable(email))' is not an email address", hint: "write e.g. anna@example.org") }
        return ok ? (host, Customer(id: id, name: name, email: email)) : nil
    }

    /// A deliverable address: `local@domain`, no spaces, quotes, angle brackets
    /// or control characters (nothing that could inject a mail header), the
    /// domain a DNS name with at least one dot.
    public static func isValidEmail(_ s: String) -> Bool {
        guard s.count <= 254, let at = s.lastIndex(of: "@") else { return false }
        let local = s[..<at], domain = s[s.index(after: at)...]
        guard !local.isEmpty, local.count <= 64, !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else { return false }
        guard local.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+/=?^_`{|}~.-".contains($0)) }) else { return false }
        guard domain.contains("."), Inventory.isValidAddress(String(domain)), !domain.allSatisfy({ $0.isNumber || $0 == "." }) else { return false }
        return true
    }

    static func parseYAML(data: Data, path: String, errors: inout [InputError]) -> [(host: String, customer: Customer, line: Int)] {
        let r = YAMLReader(file: path)
        defer { errors += r.errors }
        guard let root = r.parse(data: data), let top = r.mapping(root, "the customers file", allowed: ["customers"]) else { return [] }
        guard let list = top.first?.value else {
            r.error(root, "the customers file needs a 'customers' list")
            return []
        }
        guard case let .sequence(seq) = list else {
            r.error(list, "customers must be a list of {id, name, email, hosts}, found \(r.kind(list))")
            return []
        }
        var rows: [(String, Customer, Int)] = []
        for item in seq {
            guard let pairs = r.mapping(item, "a customer", allowed: ["id", "name", "email", "hosts"]) else { continue }
            var id: String?, name: String?, email: String?, hosts: [String]?
            for (k, _, v) in pairs {
                switch k {
                case "id": id = r.string(v, "id")
                case "name": name = r.string(v, "name")
                case "email": email = r.string(v, "email")
                case "hosts": hosts = r.stringList(v, "hosts")
                default: break
                }
            }
            for key in ["id", "name", "email", "hosts"] where !pairs.contains(where: { $0.key == key }) {
                r.error(item, "a customer needs '\(key)'")
            }
            guard let id, let name, let email, let hosts else { continue }
            let line = item.mark?.line ?? 0
            var errs: [InputError] = []
            for h in hosts {
                if let row = validRow(host: h, id: id, name: name, email: email, line: line, path: path, errors: &errs) {
                    rows.append((row.0, row.1, line))
                }
            }
            if let e = errs.first { r.errors.append(e) }
        }
        return rows
    }
}

/// RFC 4180 records with the line each starts on. Quoted fields may hold
/// commas, line breaks and doubled quotes; a quote left open is an error at its line.
/// Works on UTF-8 bytes: a 100 000-row file parses in milliseconds.
enum CSV {
    struct Record { var fields: [String]; var line: Int }

    static func records(_ text: String, path: String, errors: inout [InputError]) -> [Record] {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r"), space = UInt8(ascii: " ")
        var out: [Record] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var inQuotes = false, afterQuote = false, sawAny = false
        var line = 1, recordLine = 1, quoteLine = 1
        var utf8 = Array(text.utf8)
        if utf8.starts(with: [0xEF, 0xBB, 0xBF]) { utf8.removeFirst(3) }  // a byte-order mark from spreadsheet exports
        var i = 0
        let n = utf8.count
        func endField() { fields.append(String(decoding: field, as: UTF8.self)); field.removeAll(keepingCapacity: true); afterQuote = false }
        while i < n {
            let c = utf8[i]
            i += 1
            sawAny = true
            if inQuotes {
                if c == quote {
                    if i < n && utf8[i] == quote { field.append(quote); i += 1 } else { inQuotes = false; afterQuote = true }
                } else {
                    if c == lf { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case comma:
                endField()
            case cr:
                continue
            case lf:
                endField()
                out.append(Record(fields: fields, line: recordLine))
                fields.removeAll(keepingCapacity: true)
                line += 1
                recordLine = line
                sawAny = false
            case quote:
                if !afterQuote && field.allSatisfy({ $0 == space }) {
                    inQuotes = true
                    field.removeAll(keepingCapacity: true)
                    quoteLine = line
                } else {
                    errors.append(InputError(file: path, line: line, column: nil, "a quote inside an unquoted field",
                                             hint: "quote the whole field and double inner quotes: \"a \"\"b\"\"\""))
                    field.append(c)
                }
            default:
                if afterQuote {
                    if c == space { continue }
                    errors.append(InputError(file: path, line: line, column: nil, "text after a closing quote"))
                    afterQuote = false
                }
                field.append(c)
            }
        }
        if inQuotes {
            errors.append(InputError(file: path, line: quoteLine, column: nil, "a quoted field is never closed"))
        }
        if sawAny || !fields.isEmpty {
            endField()
            out.append(Record(fields: fields, line: recordLine))
        }
        return out
    }
}
