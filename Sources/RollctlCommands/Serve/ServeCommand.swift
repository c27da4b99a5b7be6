import ArgumentParser
import Dispatch
import Foundation
import Basics
import RolloutJournal
import Engine
import WebAPI

/// `rollctl serve`: a read-only web dashboard over the journal.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "A read-only web dashboard over the journal: the rollouts, each one's live page with its charts, and /metrics.",
        discussion: """
        Pages: / (every rollout), /rollouts/ID (the report's page; it reloads every 5 s while the rollout is not over), \
        /rollouts/ID.json (its data), /metrics (rollctl's metrics of the rollouts not over and the 20 newest). \
        Nothing can be changed from it. Bound to loopback unless --listen names another address and --allow-remote says so \
        (it has no authentication: put it behind your proxy).
        """
    )
    @OptionGroup var journal: JournalOption
    @Option(help: ArgumentHelp("Address and port to serve on.", valueName: "host:port")) var listen = "127.0.0.1:8080"
    @Flag(help: "Allow an address other than loopback (the dashboard has no authentication).") var allowRemote = false

    func validate() throws {
        guard let (host, _) = HTTPEndpoint.parseListen(listen) else {
            throw ValidationError("--listen must be HOST:PORT (e.g. 127.0.0.1:8080), found '\(listen)'")
        }
        if !HTTPEndpoint.isLoopback(host) && !allowRemote {
            throw ValidationError("--listen \(listen) is not loopback: the dashboard has no authentication; add --allow-remote if a proxy guards it")
        }
    }

    func run() async throws {
        let j = try journal.open()
        let (host, port) = HTTPEndpoint.parseListen(listen)!
        let endpoint: HTTPEndpoint
        do {
            endpoint = try await HTTPEndpoint.start(host: host, port: port) { path in Dashboard(journal: j).answer(path) }
        } catch {
            Console.shared.error("cannot listen on \(listen): \(error)")
            throw ExitCode(ExitStatus.badInput)
        }
        Console.shared.out("serving \(j.path) at \(endpoint.baseURL)/ (read-only; Ctrl-C stops)")
        let stop = StopFlag()
        stop.install()
        while !stop.isSet { try? await Task.sleep(for: .milliseconds(200)) }
        await endpoint.close()
    }
}

/// The dashboard's pages, from the journal at each request.
struct Dashboard: Sendable {
    let journal: Journal
    static let html = "text/html; charset=utf-8"

    func answer(_ path: String) -> HTTPReply {
        do {
            if path == "/" || path == "/rollouts" { return HTTPReply(contentType: Self.html, try index()) }
            if path == "/metrics" { return HTTPReply(contentType: "text/plain; version=0.0.4; charset=utf-8", try metrics()) }
            if path.hasPrefix("/rollouts/") {
                var id = String(path.dropFirst("/rollouts/".count))
                let json = id.hasSuffix(".json")
                if json { id = String(id.dropLast(5)) }
                guard id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }), let r = try journal.rollout(id) else {
                    return .notFound("no rollout '\(String(id.prefix(80)))' in this journal\n")
                }
                let report = try RolloutReport.build(journal: journal, rolloutID: id)
                if json {
                    let e = JSONEncoder()
                    e.outputFormatting = [.sortedKeys]
                    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")
                    return HTTPReply(contentType: "application/json", body: Array(try e.encode(report)))
                }
                var page = ReportHTML.render([report])
                if !Self.isOver(r.state) {
                    page = page.replacingOccurrences(of: "<meta charset=\"utf-8\">",
                                                     with: "<meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">")
                        .replacingOccurrences(of: "<body>", with: "<body><p class=\"live\">live: this page reloads every 5 s · <a href=\"/\">all rollouts</a></p>")
                } else {
                    page = page.replacingOccurrences(of: "<body>", with: "<body><p><a href=\"/\">all rollouts</a></p>")
                }
                return HTTPReply(contentType: Self.html, page)
            }
            return .notFound()
        } catch {
            return HTTPReply(status: 500, contentType: "text/plain; charset=utf-8", "the journal could not be read: \(error)\n")
        }
    }

    static func isOver(_ s: RolloutState) -> Bool { [.completed, .aborted, .rolledBack, .halted].contains(s) }

    func index() throws -> String {
        let rollouts = try journal.rollouts()
        var rows = ""
        for r in rollouts.prefix(500) {
            let hosts = try journal.hosts(r.id)
            var counts: [String: Int] = [:]
            for h in hosts { counts[h.state.rawValue, default: 0] += 1 }
            let summary = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows += "<tr><td><a href=\"/rollouts/\(ReportHTML.esc(r.id))\">\(ReportHTML.esc(r.id))</a></td><td>\(ReportHTML.esc(r.planName))</td><td>\(ReportHTML.esc(r.targetRelease))</td>"
            rows += "<td class=\"state s-\(ReportHTML.esc(r.state.rawValue))\">\(ReportHTML.esc(r.state.rawValue))</td><td>\(ReportHTML.esc(r.startedAt))</td><td>\(ReportHTML.esc(r.startedBy))</td><td>\(ReportHTML.esc(summary))</td></tr>"
        }
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
        <meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">
        <title>rollctl: rollouts</title><style>\(ReportHTML.css)</style></head>
        <body><h1>Rollouts</h1><p class="muted">\(ReportHTML.esc(journal.path)) · \(rollouts.count) rollouts · this page reloads every 10 s · <a href="/metrics">/metrics</a></p>
        <table><tr><th>id</th><th>plan</th><th>kernel</th><th>state</th><th>started</th><th>by</th><th>hosts</th></tr>\(rows)</table></body></html>

        """
    }

    func metrics() throws -> String {
        let rollouts = try journal.rollouts()
        let ids = rollouts.filter { !Self.isOver($0.state) }.map(\.id) + rollouts.prefix(20).map(\.id)
        var seen = Set<String>()
        return try RolloutMetrics.page(journal: journal, rolloutIDs: ids.filter { seen.insert($0).inserted })
    }
}
