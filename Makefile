# rollctl — the README's commands.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)
# The monitoring e2e tests start their own Prometheus and Alertmanager (Debian's binaries); the
# report's test renders it in headless Chromium. All three come without their recommends.
MONITORING_APT := prometheus prometheus-alertmanager chromium tmux
# The PostgreSQL journal: libpq to build against; the tests start their own server (initdb into a
# temporary folder, their own loopback port), so the package's own cluster is never used.
POSTGRES_APT := libpq-dev postgresql
NO_RECOMMENDS_APT := $(MONITORING_APT) $(POSTGRES_APT)
# rpm: the real rpmbuild, for the e2e test that ships an .rpm kernel package to RHEL hosts.
APT_PACKAGES := libssh2-1-dev libssl-dev libsqlite3-dev $(POSTGRES_APT) openssh-server openssh-client iproute2 iptables python3 procps python3-aiosmtpd sqlite3 util-linux rsync openssl curl rpm $(MONITORING_APT)
SWIFT_TEST_FLAGS ?=

.PHONY: deps build test demo bench test-vm clean

## deps: install the Debian packages the build and tests need (root), make sshd's run dir.
## prometheus recommends prometheus-node-exporter, whose service listens on :9100 on every address:
## fleetsim then refuses its hosts' <address>:9100. So the monitoring packages come without their
## recommends (and so do libpq-dev and postgresql), and a node_exporter already running on *:9100 is stopped and disabled (systemd).
deps:
	@missing=""; bare=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 && continue; \
	  case " $(NO_RECOMMENDS_APT) " in *" $$p "*) bare="$$bare $$p";; *) missing="$$missing $$p";; esac; done; \
	if [ -n "$$missing$$bare" ]; then \
	  echo "installing:$$missing$$bare"; \
	  apt-get update -qq || exit 1; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; fi; \
	  if [ -n "$$bare" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$bare >/dev/null || exit 1; fi; \
	fi
	@if ss -Hltn 'sport = :9100' 2>/dev/null | grep -Eq '(\*|0\.0\.0\.0|\[::\]):9100'; then \
	  if [ -d /run/systemd/system ] && systemctl is-active -q prometheus-node-exporter 2>/dev/null; then \
	    echo "stopping and disabling prometheus-node-exporter: it holds *:9100, which fleetsim's hosts need"; \
	    systemctl disable --now prometheus-node-exporter; \
	  else echo "warning: something listens on *:9100; fleetsim will refuse its hosts (bind it to one address or stop it)" >&2; fi; \
	fi
	@mkdir -p /run/sshd

build: deps
	swift build

# Suites that run whole processes (rollctl, fleetsim fleets) block a thread while they
# wait; they run after the rest, one test at a time in each of two lanes, so they neither starve
# the unit tests' cooperative thread pool nor crowd the 2 cores. The HTTP client's hostile-peer
# suites join them: they check that a deadline holds, and on 2 cores a pool busy with other
# suites' blocking work delays the wake-up itself (seen: a 1 s deadline observed at 3.6 s).
# The upload suites join them too: they move ~150 MiB through sshd on loopback, which starved
# the engine's 600 ms driver lease in a parallel run, and they time a bandwidth cap.
PROCESS_SUITES := E2ETests|FleetsimTests|FleetCommandTests|PlanCommandTests|JournalCommandTests|NoticeHostileWebhookTests|PrometheusCheckTests|SSHUploadTests|PackageShippingTests
# They run in two lanes at once (scripts/process-lanes.sh): they mostly wait on soaks and reboots.
# Lane 1 runs these (~12 of the ~24 minutes); lane 2 the rest.
PROCESS_LANE_1 := RolloutE2ETests|GrubBLSE2ETests|AutoBootloaderE2ETests|MixedFleetE2ETests|SystemdBootE2ETests

## test: everything, against real sshd on loopback and fleetsim hosts.
test: deps
	swift build --build-tests
	swift test --skip-build --skip '$(PROCESS_SUITES)' $(SWIFT_TEST_FLAGS)
	scripts/process-lanes.sh '$(PROCESS_SUITES)' '$(PROCESS_LANE_1)' $(SWIFT_TEST_FLAGS)

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
