import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Yams
import Basics
import NetIO

// The `notify` section and its channel (smtp or webhook).

extension PlanLoader {
    static let notifyKeys = ["customers", "channel", "lead_time", "company", "templates", "on_failure"]
    static let smtpKeys = ["type", "host", "port", "from", "starttls", "username", "password_env", "password_file",
                           "allow_plaintext_auth"]
    static let webhookKeys = ["type", "url"]
}

extension PlanParser {
    func parseNotify(_ node: Node) -> NotifySpec? {
        guard let pairs = r.mapping(node, "notify", allowed: PlanLoader.notifyKeys) else { return nil }
        var customers: String?, channel: NotifySpec.Channel?
        var spec = NotifySpec(customersPath: "", channel: .webhook(url: ""))
        for (k, _, v) in pairs {
            switch k {
            case "customers": customers = r.string(v, "notify.customers").map(resolve)
            case "channel": channel = parseChannel(v)
            case "lead_time": if let d = duration(v, "notify.lead_time", max: .seconds(30 * 86400)) { spec.leadTime = d }
            case "company":
                if let c = r.string(v, "notify.company") {
                    if c.trimmed.isEmpty || c.count > 200 || c.contains(where: \.isNewline) { r.error(v, "notify.company must be one line of 1 to 200 characters") }
                    else { spec.company = c }
                }
            case "templates": spec.templateDir = r.string(v, "notify.templates").map(resolve)
            case "on_failure":
                if let s = r.string(v, "notify.on_failure") {
                    switch s {
                    case "block": spec.blockOnFailure = true
                    case "skip": spec.blockOnFailure = false
                    default: r.error(v, "notify.on_failure must be block or skip, found '\(Inventory.printable(s))'",
                                     hint: nearest(s, in: ["block", "skip"]).map { "did you mean '\($0)'?" })
                    }
                }
            default: break
            }
        }
        if !pairs.contains(where: { $0.key == "customers" }) { r.error(node, "notify needs a 'customers' file (CSV host,customer_id,name,email)") }
        if !pairs.contains(where: { $0.key == "channel" }) { r.error(node, "notify needs a 'channel' (type: smtp or webhook)") }
        guard let customers, let channel else { return nil }
        spec.customersPath = customers
        spec.channel = channel
        return spec
    }

    /// Loopback: `localhost`, 127.0.0.0/8 and `::1` (in any spelling). A password
    /// sent there in clear text never leaves the machine.
    static func isLoopbackHost(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "localhost." { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, h, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, h, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { b in b.prefix(15).allSatisfy { $0 == 0 } && b[15] == 1 }
        }
        return false
    }

    func parseChannel(_ node: Node) -> NotifySpec.Channel? {
        guard case let .mapping(m) = node else {
            r.error(node, "notify.channel must be a mapping with a type (smtp or webhook), found \(r.kind(node))")
            return nil
        }
        let typeNode = m.first(where: { $0.key.scalar?.string == "type" })?.value
        guard let typeNode, let type = r.string(typeNode, "notify.channel.type") else {
            if typeNode == nil { r.error(node, "notify.channel needs a 'type': smtp or webhook") }
            return nil
        }
        switch type {
        case "smtp":
            guard let pairs = r.mapping(node, "an smtp channel", allowed: PlanLoader.smtpKeys) else { return nil }
            var host: String?, port = 25, from: String?, starttls = true, user: String?, env: String?, file: String?
            var userNode: Node?, allowPlaintextAuth = false
            for (k, _, v) in pairs {
                switch k {
                case "host":
                    host = r.string(v, "smtp host")
                    if let h = host, !Inventory.isValidAddress(h) { r.error(v, "smtp host '\(Inventory.printable(h))' is not an address or DNS name"); host = nil }
                case "port": port = int(v, "smtp port", range: 1...65535) ?? port
                case "from":
                    from = r.string(v, "smtp from")
                    if let f = from, !Customers.isValidEmail(f) { r.error(v, "smtp from '\(Inventory.printable(f))' is not an email address"); from = nil }
                case "starttls": starttls = r.bool(v, "smtp starttls") ?? starttls
                case "username": user = r.string(v, "smtp username"); userNode = v
                case "allow_plaintext_auth": allowPlaintextAuth = r.bool(v, "smtp allow_plaintext_auth") ?? allowPlaintextAuth
                case "password_env":
                    env = r.string(v, "smtp password_env")
                    if let e = env, !(e.first.map { $0.isLetter || $0 == "_" } ?? false) || !e.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
                        r.error(v, "smtp password_env '\(Inventory.printable(e))' is not an environment variable name"); env = nil
                    }
                case "password_file": file = r.string(v, "smtp password_file").map(resolve)
                default: break
                }
            }
            if !pairs.contains(where: { $0.key == "host" }) { r.error(node, "an smtp channel needs a 'host'") }
            if !pairs.contains(where: { $0.key == "from" }) { r.error(node, "an smtp channel needs a 'from' address") }
            if env != nil && file != nil { r.error(node, "give the SMTP password by password_env or password_file, not both") }
            if user != nil && env == nil && file == nil {
                r.error(node, "smtp username without a password source", hint: "add password_env: SMTP_PASSWORD (never the password itself)")
            }
            // AUTH without STARTTLS sends the password in clear text (base64 is no cipher):
            // only to this machine, or when the plan says so.
            if user != nil, !starttls, !allowPlaintextAuth, let host, !Self.isLoopbackHost(host) {
                r.error(userNode ?? node, "smtp username with starttls: false would send the SMTP password to \(Inventory.printable(host)) in clear text",
                        hint: "set starttls: true (the server must offer STARTTLS), or, if the network path to the server is trusted, add allow_plaintext_auth: true to notify.channel")
            }
            guard let host, let from else { return nil }
            return .smtp(host: host, port: port, from: from, starttls: starttls, username: user, passwordEnv: env, passwordFile: file)
        case "webhook":
            guard let pairs = r.mapping(node, "a webhook channel", allowed: PlanLoader.webhookKeys) else { return nil }
            guard let urlNode = pairs.first(where: { $0.key == "url" })?.value else {
                r.error(node, "a webhook channel needs a 'url'")
                return nil
            }
            guard let url = r.string(urlNode, "webhook url") else { return nil }
            guard let u = URL(string: url), ["http", "https"].contains(u.scheme ?? ""), u.host != nil, !url.contains(where: \.isWhitespace) else {
                r.error(urlNode, "webhook url '\(Inventory.printable(url))' is not an http(s) URL")
                return nil
            }
            // What the webhook will post to (the probe's URL type): refused here rather than at the first notice.
            do {
                _ = try HTTPURL.parse(url, allowHTTPS: true)
            } catch {
                r.error(urlNode, "webhook url '\(Inventory.printable(url))' is not an http(s) URL: \(error.reason)")
                return nil
            }
            return .webhook(url: url)
        default:
            r.error(typeNode, "notify.channel.type must be smtp or webhook, found '\(Inventory.printable(type))'",
                    hint: nearest(type, in: ["smtp", "webhook"]).map { "did you mean '\($0)'?" })
            return nil
        }
    }
}
