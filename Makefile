# rollctl — the README's commands.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)
APT_PACKAGES := libssh2-1-dev libssl-dev libsqlite3-dev openssh-server openssh-client iproute2 iptables python3 procps python3-aiosmtpd sqlite3 util-linux rsync openssl
SWIFT_TEST_FLAGS ?=

.PHONY: deps build test demo bench test-vm clean

## deps: install the Debian packages the build and tests need (root), make sshd's run dir.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p /run/sshd

build: deps
	swift build

# Suites that run whole processes (rollctl, fleetsim fleets) block a thread while they
# wait; they run one at a time after the rest, so they neither starve the unit tests'
# cooperative thread pool nor fight each other for the 2 cores. The HTTP client's hostile-peer
# suites join them: they check that a deadline holds, and on 2 cores a pool busy with other
# suites' blocking work delays the wake-up itself (seen: a 1 s deadline observed at 3.6 s).
PROCESS_SUITES := E2ETests|FleetsimTests|FleetCommandTests|PlanCommandTests|NoticeHostileWebhookTests|PrometheusCheckTests

## test: everything, against real sshd on loopback and fleetsim hosts.
test: deps
	swift build --build-tests
	swift test --skip-build --skip '$(PROCESS_SUITES)' $(SWIFT_TEST_FLAGS)
	swift test --skip-build --no-parallel --filter '$(PROCESS_SUITES)' $(SWIFT_TEST_FLAGS)

demo: deps
	@scripts/demo.sh

## bench: figures against the peers (bench/README.md, results in bench/RESULTS.md).
## Not a test: nothing in `make test` depends on it. Release builds in .build-bench.
BENCH_APT := pssh python3-venv time
bench: deps
	@missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	ROLLCTL_BENCH=1 swift build -c release --scratch-path .build-bench
	bench/survey.sh
	bench/connections.sh
	bench/halt-latency.sh
	bench/core.sh

## test-vm: rollctl against real Debian 12 VMs under qemu, software emulation (docs/vm-tests.md).
## Root. Builds a cached base image first (/var/cache/rollctl-vm, ~1 min once); ~8 min warm.
VM_APT := qemu-system-x86 qemu-utils debootstrap fdisk
test-vm: deps
	@missing=""; for p in $(VM_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	swift build
	ROLLCTL=.build/debug/rollctl scripts/vm/test-vm.sh

clean:
	rm -rf .build .fleetsim
