#!/usr/bin/env python3
"""Stamps new sshd.log lines of every fleetsim host with the time they appeared.

    logtail.py FLEET_DIR OUT.tsv STOPFILE

Polls DIR/hosts/*/sshd.log every 50 ms (sshd -E writes no timestamps) and appends
"ISO-time<TAB>host<TAB>line" for lines that mention a connection or an accepted key,
until STOPFILE exists. Starts at the current end of each log."""
import glob, os, sys, time
from datetime import datetime, timezone

fleet, out, stop = sys.argv[1:4]
pos = {}
for p in glob.glob(f"{fleet}/hosts/*/sshd.log"):
    pos[p] = os.path.getsize(p)
with open(out, "a") as o:
    while True:
        done = os.path.exists(stop)
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for p in glob.glob(f"{fleet}/hosts/*/sshd.log"):
            try:
                size = os.path.getsize(p)
            except OSError:
                continue
            start = pos.get(p, 0)
            if size < start:
                start = 0
            if size == start:
                continue
            with open(p, "rb") as f:
                f.seek(start)
                data = f.read(size - start)
            cut = data.rfind(b"\n") + 1
            pos[p] = start + cut
            host = os.path.basename(os.path.dirname(p))
            for line in data[:cut].decode(errors="replace").splitlines():
                if "Accepted publickey" in line or "Connection from" in line or "Received disconnect" in line or "Disconnected from" in line:
                    o.write(f"{now}\t{host}\t{line}\n")
        o.flush()
        if done:
            break
        time.sleep(0.05)
