# Sourced (bash): the Debian mirror this machine's apt is configured with, so that no
# script names a mirror host of its own. Reads /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.list (one-line "deb [opts] URI SUITE COMPONENTS...") and
# /etc/apt/sources.list.d/*.sources (deb822 stanzas: Types, URIs, Suites, Enabled).
#
#   apt_mirror            the URI serving SUITE (default bookworm), e.g. http://.../debian
#   apt_mirror security   the URI serving SUITE-security; if apt has none, the main
#                         mirror's URI with "-security" appended (Debian's layout)
#
# Prints nothing and returns 1 when apt has no such source. APT_MIRROR_SUITE picks
# another suite; APT_SOURCES_DIR (default /etc/apt) is for tests.
apt_mirror() {
  APT_MIRROR_KIND=${1:-main} python3 - <<'PY'
import glob, os, sys

root = os.environ.get("APT_SOURCES_DIR", "/etc/apt")
suite = os.environ.get("APT_MIRROR_SUITE", "bookworm")
kind = os.environ.get("APT_MIRROR_KIND", "main")

def sources():
    """(uri, suites) of every enabled 'deb' source, in apt's reading order."""
    out = []
    files = [root + "/sources.list"] + sorted(glob.glob(root + "/sources.list.d/*.list"))
    for f in files:
        try:
            lines = open(f, encoding="utf-8", errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):  # [arch=amd64 signed-by=...]
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2:
                out.append((words[0], [words[1]]))
    for f in sorted(glob.glob(root + "/sources.list.d/*.sources")):
        try:
            text = open(f, encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:  # continuation line
                    fields[key] += " " + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
                continue
            for uri in fields.get("uris", "").split():
                out.append((uri, fields.get("suites", "").split()))
    return out

def find(want):
    for uri, suites in sources():
        if want in suites and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    return None

main = find(suite)
if kind == "security":
    uri = find(suite + "-security") or (main + "-security" if main else None)
else:
    uri = main
if not uri:
    sys.exit(1)
print(uri)
PY
}

# apt_mirror_reachable URI: HEAD-requests URI/dists/SUITE/Release (15 s); says why on stderr
# and returns 1 when it fails.
apt_mirror_reachable() {
  APT_MIRROR_URI=$1 python3 - <<'PY'
import os, sys, urllib.request
url = os.environ["APT_MIRROR_URI"].rstrip("/") + "/dists/" + os.environ.get("APT_MIRROR_SUITE", "bookworm") + "/Release"
try:
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15)
except Exception as e:
    print(f"mirror check {url}: {e}", file=sys.stderr)
    sys.exit(1)
PY
}
