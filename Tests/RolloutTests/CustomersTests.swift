import Foundation
import Testing
@testable import RolloutConfig
@testable import Notices

@Suite struct CustomersTests {
    let inventory = Inventory(path: "inv.yaml", hosts: ["web-001", "web-002", "web-003"].enumerated().map {
        InventoryHost(name: $0.element, address: "10.0.0.\($0.offset + 1)")
    })

    func parse(_ text: String, path: String = "customers.csv") throws -> Customers {
        try Customers.parse(data: Data(text.utf8), path: path, inventory: inventory)
    }

    @Test func csvWithQuotedFieldsAndAnyColumnOrder() throws {
        let c = try parse([
            "email,host,name,customer_id",
            "anna@example.org,web-001,\"Novak, Anna\",c1",
            "\"shop@example.org\",web-001,\"Shop \"\"Zur Linde\"\"\",c2",
            "anna@example.org,web-002,\"Novak, Anna\",c1",
            "",
        ].joined(separator: "\r\n"))
        #expect(c.count == 2)
        #expect(c.customers(onHost: "web-001") == [Customer(id: "c1", name: "Novak, Anna", email: "anna@example.org"),
                                                   Customer(id: "c2", name: "Shop \"Zur Linde\"", email: "shop@example.org")])
        #expect(c.customers(onHost: "web-002").map(\.id) == ["c1"])
        #expect(c.customers(onHost: "web-003").isEmpty)
        #expect(c.hosts(ofCustomer: "c1") == ["web-001", "web-002"])
        #expect(c.customers(onHosts: ["web-001", "web-002"]).map(\.id) == ["c1", "c2"])
    }

    @Test func byteOrderMarkAndLineBreaksInQuotes() throws {
        let c = try parse("\u{FEFF}host,customer_id,name,email\nweb-001,c1,Anna,anna@example.org\n")
        #expect(c.customers(onHost: "web-001").map(\.name) == ["Anna"])
        // A quoted line break is read as CSV, then refused in a name; the next row keeps its real line number.
        let e = try #require(throws: InputErrors.self) {
            try parse("host,customer_id,name,email\nweb-001,c1,\"Anna\nBcc: x\",anna@example.org\nweb-002,c2,Ben,ben@\n")
        }
        #expect(e.errors.map(\.line) == [2, 4])
        #expect(e.errors[0].message.contains("must be one line"))
    }

    @Test func yamlForm() throws {
        let c = try parse("""
        customers:
          - {id: c1, name: Anna Novak, email: anna@example.org, hosts: [web-001, web-003]}
          - id: c2
            name: Ben Bauer
            email: ben@example.org
            hosts: web-002
        """, path: "customers.yaml")
        #expect(c.hosts(ofCustomer: "c1") == ["web-001", "web-003"])
        #expect(c.customers(onHost: "web-002").map(\.name) == ["Ben Bauer"])
        let e = try #require(throws: InputErrors.self) {
            try parse("customers:\n  - {id: c1, name: A, emial: a@example.org, hosts: [web-001]}\n", path: "c.yml")
        }
        #expect(e.errors.contains { $0.line == 2 && $0.hint == "did you mean 'email'?" })
    }

    @Test func allProblemsWithLineNumbers() throws {
        let e = try #require(throws: InputErrors.self) {
            try parse("""
            host,customer_id,name,email,phone
            web-001,c1,Anna,anna@example.org,1
            web-009,c2,Ben,ben@@example.org,2
            web-002,c3,Clara
            """)
        }
        let byLine = Dictionary(grouping: e.errors, by: { $0.line ?? 0 })
        #expect(byLine[1]?.first?.message == "unknown column 'phone' in the header")
        // Columns checked first: with an unknown column the rows are still read.
        #expect(byLine[3]?.contains { $0.message.contains("'ben@@example.org' is not an email address") } == true)
        #expect(byLine[3]?.contains { $0.message.contains("'web-009' is not in the inventory") } == false,
                "a row with a bad email is dropped before the host check")
        #expect(byLine[4]?.first?.message == "3 fields, the header has 5")
    }

    @Test(arguments: [
        ("anna@example.org", true), ("a.b+tag@mail.example.co.uk", true), ("c0042@example.test", true),
        ("anna", false), ("anna@", false), ("@example.org", false), ("anna@localhost", false), ("a b@example.org", false),
        ("anna@example.org\r\nBcc: x@example.org", false), ("<anna@example.org>", false), ("anna@example..org", false),
        ("\"anna\"@example.org", false), ("anna@1.2.3.4", false), (".anna@example.org", false),
    ])
    func emails(_ c: (String, Bool)) {
        #expect(Customers.isValidEmail(c.0) == c.1, "\(c.0)")
    }

    @Test func emptyAndBinaryFiles() throws {
        #expect(throws: InputErrors.self) { try parse("") }
        #expect(throws: InputErrors.self) { try parse("host,customer_id,name,email\n") }
        let e = try #require(throws: InputErrors.self) { try Customers.parse(data: Data([0x68, 0x00, 0xff]), path: "c.csv", inventory: nil) }
        #expect(e.errors.first?.message.contains("binary data") == true)
        let missing = try #require(throws: InputErrors.self) { try Customers.load(path: "/nonexistent/c.csv", inventory: nil) }
        #expect(missing.errors.first?.message == "no such file")
    }

    @Test func fleetsimsCustomersFileParses() throws {
        // The format fleetsim writes: host,customer_id,name,email with shared customers.
        let text = "host,customer_id,name,email\nweb-001,c0001,Anna Bauer,c0001@example.test\nweb-002,c0001,Anna Bauer,c0001@example.test\nweb-002,c0002,Ben Novak,c0002@example.test\n"
        let c = try parse(text)
        #expect(c.count == 2)
        #expect(c.hosts(ofCustomer: "c0001") == ["web-001", "web-002"])
    }
}

@Suite struct NoticeTemplateTests {
    @Test func unknownVariablesAndSections() {
        let errors = NoticeTemplate.check("Hi {{customer_nme}},\n{{#hosts}}{{name}} {{adress}}{{/hosts}}\n{{name}}\n{{> partial}}\n", file: "t.body")
        #expect(errors.map(\.line) == [1, 2, 3, 4])
        #expect(errors[0].hint == "did you mean 'customer_name'?")
        #expect(errors[1].message == "unknown template variable 'adress'")
        #expect(errors[2].message == "unknown template variable 'name'", "name only exists inside {{#hosts}}")
        #expect(NoticeTemplate.check("{{#hosts}}\n", file: "t").first?.message == "section 'hosts' is never closed")
        #expect(NoticeTemplate.check("{{/hosts}}", file: "t").first?.message.contains("not open") == true)
        #expect(NoticeTemplate.check("{{company", file: "t").first?.message.contains("never closed") == true)
    }

    /// docs/notifications.md's table: `hosts` only as a section, `{{hosts}}` alone is an error.
    @Test func hostsIsASectionAsTheNotificationsDocSays() throws {
        #expect(NoticeTemplate.check("{{#hosts}}{{name}} {{address}}{{/hosts}} ({{host_count}})", file: "t").isEmpty)
        #expect(NoticeTemplate.check("{{^hosts}}none{{/hosts}}", file: "t").isEmpty)
        #expect(NoticeTemplate.check("Hosts: {{hosts}}", file: "t").first?.message == "'{{hosts}}' is a list")
        #expect(NoticeTemplate.check("{{#hosts}}{{.}}{{/hosts}}", file: "t").first?.message == "unknown template variable '.'")
        let doc = try String(contentsOfFile: repoRoot + "/docs/notifications.md", encoding: .utf8)
        #expect(!doc.contains("outside a section: names joined"))
        #expect(doc.contains("`{{#hosts}}{{name}} {{address}}{{/hosts}}`"))
    }

    /// What is sent is rendered or refused: a template swift-mustache cannot parse never
    /// goes out raw to a customer.
    @Test func aTemplateThatDoesNotRenderIsAnError() {
        #expect(throws: TemplateRenderError.self) { _ = try NoticeTemplate.renderChecked("Hi {{#hosts}}{{name}}", ["hosts": .list([])]) }
        #expect((try? NoticeTemplate.renderChecked("Hi {{customer_name}}", ["customer_name": .text("Anna")])) == "Hi Anna")
    }

    @Test func theShippedTemplatesAreValid() throws {
        for kind in NoticeTemplate.kinds {
            for part in ["subject", "body"] {
                let path = repoRoot + "/plans/templates/\(kind).\(part)"
                let text = try String(contentsOfFile: path, encoding: .utf8)
                #expect(NoticeTemplate.check(text, file: path).isEmpty, "\(path)")
            }
        }
    }

    @Test func rendersVariablesAndHostLists() {
        let out = NoticeTemplate.render("Hi {{customer_name}}: {{#hosts}}[{{name}} {{address}}]{{/hosts}}{{^hosts}}none{{/hosts}} {{! note }}{{kernel}}",
                                        ["customer_name": .text("Anna"), "kernel": .text("6.1.0-19-hosting"),
                                         "hosts": .list([["name": "web-001", "address": "10.0.0.1"], ["name": "web-002", "address": "10.0.0.2"]])])
        #expect(out == "Hi Anna: [web-001 10.0.0.1][web-002 10.0.0.2] 6.1.0-19-hosting")
        #expect(NoticeTemplate.render("{{^hosts}}none{{/hosts}}", ["hosts": .list([])]) == "none")
    }
}
