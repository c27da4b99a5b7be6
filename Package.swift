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
    ],
    targets: [
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        // Swift face of libssh2. Blocking C calls run on dedicated threads.
        .target(name: "SSH", dependencies: ["CLibSSH2"]),
        // Probes and the health gate. Knows nothing of SSH: reads hosts through `HostReader`.
        .target(name: "HealthGate"),
        // Inventory, plans, the wave planner, the survey and (later) the orchestrator.
        .target(name: "Rollout", dependencies: [
            "SSH", "HealthGate",
            .product(name: "Yams", package: "Yams"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Mustache", package: "swift-mustache"),
        ]),
        // The CLI's commands: parsing and rendering only.
        .target(name: "RollctlCommands", dependencies: [
            "Rollout",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "rollctl", dependencies: ["RollctlCommands"]),
        .executableTarget(name: "fleetsim", dependencies: [
            "FleetsimCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // fleetsim's logic (scenario, GRUB model, supervisor), a library so tests can reach it.
        .target(name: "FleetsimCore", dependencies: [
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        .testTarget(name: "FleetsimTests", dependencies: ["FleetsimCore"]),
        .executableTarget(name: "bench-core", dependencies: ["Rollout", "HealthGate", "FleetsimCore", "RolloutTesting"]),  // bench/: the orchestration core at scale
        // Test support for the engine: `SimHost`, a Debian host in memory (bench-core and EngineTests drive the real orchestrator over it).
        .target(name: "RolloutTesting", dependencies: ["Rollout", "HealthGate", "SSH", "FleetsimCore"], path: "Tests/RolloutTesting"),
        .testTarget(name: "EngineTests", dependencies: ["RolloutTesting", "Rollout", "HealthGate", "SSHTesting"]),
        // Test support: a real sshd on loopback with throwaway keys.
        .target(name: "SSHTesting", path: "Tests/SSHTesting"),
        .testTarget(name: "SSHTests", dependencies: ["SSH", "SSHTesting"]),
        .testTarget(name: "HealthGateTests", dependencies: ["HealthGate"]),
        .testTarget(name: "RolloutTests", dependencies: ["Rollout", "SSHTesting"], exclude: ["corpus"]),
        .testTarget(name: "RollctlTests", dependencies: ["SSHTesting", "Rollout"]),
        // In-process unit tests of the CLI's rendering (Console); RollctlTests runs the binary.
        .testTarget(name: "RollctlCommandsTests", dependencies: ["RollctlCommands"]),
    ],
    swiftLanguageModes: [.v6]
)
