#!/usr/bin/env python3
"""A webhook sink for bench-core's customer notices: answers every POST 200 on loopback.

    notice-sink.py PORTFILE     binds 127.0.0.1 on a free port, writes the port to PORTFILE,
                                serves until killed, then prints how many notices it took.
"""
import http.server, signal, sys, threading

count = 0
lock = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global count
        self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1 << 20))
        with lock:
            count += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that closes its kept-alive connection by a reset is no news


server = Server(("127.0.0.1", 0), Sink)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
signal.signal(signal.SIGTERM, lambda *_: (print(f"notices taken: {count}", file=sys.stderr, flush=True), sys.exit(0)))
server.serve_forever()
