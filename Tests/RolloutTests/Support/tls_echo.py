#!/usr/bin/python3
"""A TLS server for rollctl's TLSSession tests: 127.0.0.1, a free port written
to --port-file, --tls-cert/--tls-key (the chain to present). Per line the
client sends: "send N" is answered with N bytes of "x" and a newline, anything
else with "got N" (the line's length without its newline). --max-tls 1.1
offers TLS 1.1 at most (which the client must refuse). Each handshake's
outcome is appended to --folder/handshakes.log."""
import argparse
import os
import socket
import ssl
import threading
import warnings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--folder", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--tls-cert", required=True)
    p.add_argument("--tls-key", required=True)
    p.add_argument("--max-tls")
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if a.max_tls == "1.1":
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.load_cert_chain(a.tls_cert, a.tls_key)
    log_lock = threading.Lock()

    def log(text):
        with log_lock, open(os.path.join(a.folder, "handshakes.log"), "a") as f:
            f.write(text + "\n")

    def serve(conn):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("failed: %s" % e)
            conn.close()
            return
        log("ok: %s" % tls.version())
        try:
            f = tls.makefile("rb")
            for line in f:
                line = line.rstrip(b"\n")
                if line.startswith(b"send "):
                    tls.sendall(b"x" * int(line[5:]) + b"\n")
                else:
                    tls.sendall(b"got %d\n" % len(line))
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
