#!/usr/bin/python3
"""A small HTTP server for rollctl's webhook tests: 127.0.0.1, a free port
written to --port-file, each POST stored as NNNN.json (the body) and
NNNN.headers.json in --folder. --fail-first N answers the first N POSTs 503
(without storing them). --tls-cert/--tls-key serve https."""
import argparse
import json
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--folder", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    lock = threading.Lock()
    state = {"seen": 0, "stored": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state["seen"] += 1
                fail = state["seen"] <= a.fail_first
                if not fail:
                    state["stored"] += 1
                    name = "%04d" % state["stored"]
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    headers[":path"] = self.path
                    with open(os.path.join(a.folder, name + ".headers.json"), "w") as f:
                        json.dump(headers, f)
                    with open(os.path.join(a.folder, name + ".json.tmp"), "wb") as f:
                        f.write(body)
                    os.rename(os.path.join(a.folder, name + ".json.tmp"), os.path.join(a.folder, name + ".json"))
            reply = b'{"error":"busy"}' if fail else b'{"ok":true}'
            self.send_response(503 if fail else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
