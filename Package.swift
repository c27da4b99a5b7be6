// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "rollctl",
    // Linux only (Debian 12 and the like): libssh2 through a system library, Glibc,
    // /proc, GRUB, systemd. SwiftPM has no "platforms:" entry for Linux (the list
    // names only Apple platforms' minimum versions), so there is none; the code
    // does not build for macOS and does not claim to.
    products: [
        .executable(name: "rollctl", targets: ["rollctl"]),
        .executable(name: "fleetsim", targets: ["fleetsim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The one HTTP client (Prometheus, Alertmanager, webhooks) and the /metrics listener (NIO's HTTP/1).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // rollctl's own metrics in the Prometheus text format.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Dependencies point one way, down this list (docs/architecture.md has the map).
        //
        // Basics: durations, sizes, ratios, shell quoting, text helpers (no dependencies).
        .target(name: "Basics"),
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        // The system's OpenSSL 3: TLS (SMTP STARTTLS, https webhooks) and the plan hash.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // libpq (PostgreSQL's own client library): the journal's PostgreSQL backend. Its blocking
        // calls fit the journal's synchronous API; docs/architecture.md says why not postgres-nio.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // Swift face of libpq: sessions, parameterised statements, transactions, SQLSTATE errors.
        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        // Network I/O: TCP connect with a deadline, line connections, TLS, one HTTP response
        // reader and one URL type (the probe and the webhook share them), SHA-256.
        .target(name: "NetIO", dependencies: ["Basics", "COpenSSL"]),
        // Swift face of libssh2. Blocking C calls run on dedicated threads.
        .target(name: "SSH", dependencies: ["Basics", "NetIO", "CLibSSH2", .product(name: "Logging", package: "swift-log")]),
        // HTTP APIs over AsyncHTTPClient: the one client (deadlines, bounded bodies, no redirects),
        // Prometheus queries (PromQL with escaped placeholders), Alertmanager alerts and silences,
        // and a small /metrics listener on NIO's HTTP/1 server.
        .target(name: "WebAPI", dependencies: [
            "Basics", "NetIO",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Probes and the health gate. Knows nothing of SSH: reads hosts through `HostReader`.
        .target(name: "HealthGate", dependencies: ["Basics", "NetIO", "WebAPI", .product(name: "Logging", package: "swift-log")]),
        // RolloutConfig: inventory, plan model and loader, customers, the YAML reader, input errors.
        .target(name: "RolloutConfig", dependencies: [
            "Basics", "NetIO", "SSH", "HealthGate", "WebAPI",
            .product(name: "Yams", package: "Yams"),
        ]),
        // The journal: storage, migrations, the outbox, typed states, the driver lease.
        .target(name: "RolloutJournal", dependencies: [
            "Basics", "RolloutConfig", "Postgres",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // Customer notices: sender, templates, mail message, SMTP, webhook.
        .target(name: "Notices", dependencies: [
            "Basics", "NetIO", "RolloutConfig", "RolloutJournal", "WebAPI",
            .product(name: "Mustache", package: "swift-mustache"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The engine: planner, dry-run, survey, orchestrator, bootloaders, RolloutService.
        .target(name: "Engine", dependencies: [
            "Basics", "NetIO", "SSH", "HealthGate", "RolloutConfig", "RolloutJournal", "Notices", "WebAPI",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Logging", package: "swift-log"),
            // Local hooks (built for fleetsim anyway: no build cost).
            .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        // The CLI's commands: parsing and rendering only.
        .target(name: "RollctlCommands", dependencies: [
            "Basics", "SSH", "HealthGate", "RolloutConfig", "RolloutJournal", "Notices", "Engine", "WebAPI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "rollctl", dependencies: ["RollctlCommands"]),
        .executableTarget(name: "fleetsim", dependencies: [
            "FleetsimCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // fleetsim's logic (scenario, GRUB model, supervisor), a library so tests can reach it.
        .target(name: "FleetsimCore", dependencies: [
            "Basics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        .testTarget(name: "FleetsimTests", dependencies: ["FleetsimCore", "Basics"]),
        // Test support for the engine: `SimHost`, a Debian host in memory (bench-core and EngineTests drive the real orchestrator over it).
        .target(name: "RolloutTesting", dependencies: ["Basics", "Engine", "RolloutConfig", "RolloutJournal", "HealthGate", "SSH", "FleetsimCore", .product(name: "Logging", package: "swift-log")], path: "Tests/RolloutTesting"),
        .testTarget(name: "EngineTests", dependencies: ["RolloutTesting", "Engine", "NetIO", "RolloutConfig", "RolloutJournal", "Notices", "HealthGate", "SSHTesting", "PostgresTesting"]),
        // Test support: a real sshd on loopback with throwaway keys.
        .target(name: "SSHTesting", path: "Tests/SSHTesting"),
        .testTarget(name: "SSHTests", dependencies: ["SSH", "NetIO", "SSHTesting"]),
        .testTarget(name: "HealthGateTests", dependencies: ["HealthGate", "NetIO", "Basics", "WebAPI"]),
        // Test support: a real PostgreSQL server (Debian's postgresql) in a temporary folder, on a loopback port.
        .target(name: "PostgresTesting", dependencies: ["SSHTesting"], path: "Tests/PostgresTesting"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "PostgresTesting"]),
        .testTarget(name: "RolloutTests", dependencies: ["Basics", "NetIO", "RolloutConfig", "RolloutJournal", "Notices", "Engine", "SSHTesting", "RolloutTesting", "PostgresTesting"], exclude: ["corpus", "ansible", "Support/smtp_sink.py", "Support/webhook_sink.py", "Support/tls_echo.py"]),
        .testTarget(name: "RollctlTests", dependencies: ["SSHTesting", "PostgresTesting", "RolloutConfig", "RolloutJournal", "Engine"]),
        // In-process unit tests of the CLI's rendering (Console); RollctlTests runs the binary.
        .testTarget(name: "RollctlCommandsTests", dependencies: ["RollctlCommands"]),
    ],
    swiftLanguageModes: [.v6]
)

// bench-core (bench/: the orchestration core at scale over in-process hosts) is not part of
// the default build: `make bench` sets ROLLCTL_BENCH=1.
if Context.environment["ROLLCTL_BENCH"] != nil {
    package.targets.append(.executableTarget(name: "bench-core", dependencies: [
        "Basics", "Engine", "RolloutConfig", "RolloutJournal", "HealthGate", "FleetsimCore", "RolloutTesting",
        .product(name: "Logging", package: "swift-log"),
    ]))
}
