import Foundation
import Testing
import SSHTesting
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// `rollctl rollout report --html` proved in a real browser: a leaky kernel's halted rollout and
/// the fixed kernel's completed one on fleetsim, one page for both, rendered by Debian's headless
/// Chromium — a screenshot taken, the parsed DOM holding each chart with one series per soaked
/// host, the page's console free of errors, no request leaving the file.
@Suite("rollout report in a real browser", .serialized, .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")))
struct ReportBrowserE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    /// Chromium with a throwaway profile: its exit status, standard output (the DOM) and log.
    static func chromium(_ args: [String], dir: String) throws -> (status: Int32, out: String, log: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/chromium")
        p.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(dir)/chromium-profile",
                       "--enable-logging=stderr", "--v=0", "--hide-scrollbars"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Read both to the end (a full pipe would stall Chromium), then reap it.
        let group = DispatchGroup()
        nonisolated(unsafe) var logData = Data()
        group.enter()
        DispatchQueue.global().async { logData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: logData, as: UTF8.self))
    }

    /// With `ROLLCTL_SCREENSHOTS=DIR` (e.g. `docs`), the screenshots are kept there: how the
    /// README's pictures are made.
    static func keep(_ png: String, as name: String) {
        guard let dir = ProcessInfo.processInfo.environment["ROLLCTL_SCREENSHOTS"] else { return }
        try? FileManager.default.removeItem(atPath: dir + "/" + name)
        try? FileManager.default.copyItem(atPath: png, toPath: dir + "/" + name)
    }

    @Test func theReportRendersInChromiumWithOneSeriesPerSoakedHost() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 39); defer { fleet.down() }
        let leaky = try fleet.apply(try fleet.plan(release: "6.1.0-18-hosting", soak: "14s", name: "report-leaky"))
        #expect(leaky.status == 3, "\(leaky.output)")
        let fixed = try fleet.apply(try fleet.plan(release: "6.1.0-19-hosting", name: "report-fixed"))
        #expect(fixed.status == 0, "\(fixed.output)")
        let ids = try CLI.run(["rollout", "list", "--journal", fleet.journal, "--json"]).json.compactMap { $0["id"] as? String }.reversed()
        #expect(ids.count == 2)
        let html = fleet.dir + "/report.html"
        let r = try CLI.run(["rollout", "report"] + ids + ["--journal", fleet.journal, "--html", html])
        #expect(r.status == 0, "\(r.output)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        // Self-contained: nothing to fetch.
        #expect(!page.contains("<script") && !page.contains("src=") && !page.contains("@import") && !page.contains("url("))
        #expect(!page.contains("http://") || page.components(separatedBy: "http://").count - 1 == page.components(separatedBy: "url: http://").count - 1
                + page.components(separatedBy: "\"http://{address}/\"").count - 1, "a link outside the plan's text")

        // The JSON has the same data the charts draw.
        let data = try CLI.run(["rollout", "report"] + ids + ["--journal", fleet.journal, "--json"]).json
        let soaked = data.map { doc in ((doc["waves"] as? [[String: Any]]) ?? []).map { (($0["soaks"] as? [[String: Any]]) ?? []).count } }
        #expect(soaked == [[1, 0, 0], [1, 1, 1]], "\(soaked)")   // the leaky canary alone; then every wave of the fix

        // Chromium parses it (the DOM after load) ...
        let dom = try Self.chromium(["--dump-dom", "file://" + html], dir: fleet.dir)
        #expect(dom.status == 0, "\(dom.log.suffix(2000))")
        func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }
        // Slab charts: one per wave that soaked (1 + 3), one series per soaked host (1 + 3).
        #expect(count("<svg class=\"chart slab\"", in: dom.out) == 4, "\(dom.out.prefix(500))")
        let slabSeries = dom.out.components(separatedBy: "<svg class=\"chart slab\"").dropFirst().map { count("<g class=\"series\" data-host=", in: $0.components(separatedBy: "</svg>")[0]) }
        #expect(slabSeries == [1, 1, 1, 1], "\(slabSeries)")
        #expect(count("<polyline", in: dom.out) == 4)
        // The leaky canary's growth limit and its fail, the fix's passes.
        #expect(count("class=\"limit growth-limit\"", in: dom.out) == 4)
        #expect(dom.out.contains("data-verdict=\"fail\"") && count("data-verdict=\"pass\"", in: dom.out) == 3)
        // Timelines: one row per host in each rollout.
        #expect(count("<svg class=\"chart timeline\"", in: dom.out) == 2)
        // ... logs no error, and draws it.
        let errors = dom.log.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") || $0.contains("Failed to load") }
        #expect(errors.isEmpty, "\(errors)")
        let png = fleet.dir + "/report.png"
        let shot = try Self.chromium(["--window-size=1000,1600", "--screenshot=\(png)", "file://" + html], dir: fleet.dir)
        #expect(shot.status == 0, "\(shot.log.suffix(2000))")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(bytes.count > 20_000 && bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(bytes.count) bytes")
        Self.keep(png, as: "report.png")
        // Print (the page's print styles): a PDF.
        let pdf = fleet.dir + "/report.pdf"
        _ = try Self.chromium(["--print-to-pdf=\(pdf)", "--no-pdf-header-footer", "file://" + html], dir: fleet.dir)
        #expect((try? Data(contentsOf: URL(fileURLWithPath: pdf)))?.starts(with: Array("%PDF".utf8)) == true)
    }

    /// `rollctl serve`: the live page of a running rollout in Chromium (it reloads; the finished
    /// wave's chart is there with its series, the soaking wave's with its series so far), the
    /// index, /metrics; nothing but GET answered.
    @Test func theDashboardsLivePageUpdatesWhileTheRolloutRuns() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 41); defer { fleet.down() }
        let port = (0..<50).map { UInt16(30000 + (Int(getpid()) * 11 + $0) % 1000) }.first(where: MonitoringServer.portIsFree) ?? 30999
        let serve = try Spawn.start(CLI.binary, ["serve", "--journal", fleet.journal, "--listen", "127.0.0.1:\(port)"], outputPath: fleet.dir + "/serve.log")
        defer { kill(serve, SIGTERM); _ = Spawn.wait(serve) }
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "12s", name: "live-page")
        let apply = try Spawn.start(CLI.binary, ["plan", "apply", plan, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(apply) { kill(apply, SIGKILL); _ = Spawn.wait(apply) } }
        func get(_ path: String) -> (Int, String) {
            switch MonitoringServer.http("127.0.0.1", port, "GET", path, timeout: 10) {
            case .success(let r): return (r.status, r.body)
            case .failure: return (0, "")
            }
        }
        var id: String?
        for _ in 0..<300 where id == nil {
            usleep(100_000)
            id = try? CLI.run(["rollout", "list", "--journal", fleet.journal, "--json"]).json.first?["id"] as? String
        }
        let rollout = try #require(id)
        // Wait until the canary's wave passed and wave 2 soaks: the live page has wave 1's chart
        // and wave 2's chart so far (its series drawn from the soak's progress, no verdict yet).
        func charts(_ body: String) -> Int { body.components(separatedBy: "<svg class=\"chart slab\"").count - 1 }
        var page = ""
        for _ in 0..<600 {
            usleep(200_000)
            let (status, body) = get("/rollouts/\(rollout)")
            // ... once the soaking hosts have three samples (their growth so far is in the table).
            let growing = body.components(separatedBy: "v-soaking\">soaking</td><td>").dropFirst().contains { !$0.hasPrefix("–") }
            if status == 200 && charts(body) == 2 && growing { page = body; break }
        }
        #expect(page.contains("http-equiv=\"refresh\" content=\"5\"") && page.contains("live: this page reloads"), "\(fleet.log("serve.log"))")
        let html = fleet.dir + "/live.html"
        try page.write(toFile: html, atomically: true, encoding: .utf8)
        let dom = try Self.chromium(["--dump-dom", "file://" + html], dir: fleet.dir)
        #expect(charts(dom.out) == 2)
        #expect(dom.out.contains("data-host=\"web-001\" data-verdict=\"pass\"") && dom.out.contains("<svg class=\"chart timeline\""))
        #expect(dom.out.contains("data-host=\"web-002\" data-verdict=\"soaking\"") && dom.out.contains("soaking: no verdict yet"))
        #expect(!dom.log.contains("CONSOLE"), "\(dom.log.suffix(1000))")
        let png = fleet.dir + "/live.png"
        let shot = try Self.chromium(["--window-size=1000,2300", "--screenshot=\(png)", "file://" + html], dir: fleet.dir)
        #expect(shot.status == 0 && (try? Data(contentsOf: URL(fileURLWithPath: png)))?.starts(with: [0x89, 0x50, 0x4E, 0x47]) == true)
        Self.keep(png, as: "live.png")
        let (indexStatus, index) = get("/")
        #expect(indexStatus == 200 && index.contains("/rollouts/\(rollout)"))
        #expect(get("/metrics").1.contains("rollctl_hosts{rollout=\"\(rollout)\""))
        #expect(get("/rollouts/nope").0 == 404)
        if case .success(let r) = MonitoringServer.http("127.0.0.1", port, "POST", "/", timeout: 5) { #expect(r.status == 405) }
        #expect(Spawn.wait(apply) == 0, "\(fleet.log("apply.log"))")
        // Over: the page stops reloading and has both waves' charts.
        let (_, done) = get("/rollouts/\(rollout)")
        #expect(!done.contains("http-equiv=\"refresh\"") && done.components(separatedBy: "<svg class=\"chart slab\"").count - 1 == 2)
        let json = get("/rollouts/\(rollout).json")
        #expect(json.0 == 200 && json.1.contains("\"state\":\"completed\""))
    }
}
