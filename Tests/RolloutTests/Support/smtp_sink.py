#!/usr/bin/python3
"""A real SMTP server for rollctl's notice tests (aiosmtpd, Debian python3-aiosmtpd).

Listens on 127.0.0.1 on a free port (or --port), writes the port to --port-file once it
accepts connections, and stores each accepted message as NNNN.eml (raw) and
NNNN.json (envelope plus the decoded headers and body) in --folder.

  --auth USER:PASSWORD   require AUTH (PLAIN or LOGIN, without TLS: loopback only)
  --reject ADDRESS       answer RCPT TO for ADDRESS with 550 (repeatable)
  --tls-cert F --tls-key K   offer STARTTLS with this certificate, and require it
                         (before MAIL and AUTH)
  --login-only           offer AUTH LOGIN only (not PLAIN)
  --greylist-first N     answer the first N RCPT TO with 450 (try again later)
  --hang-first N         store the first N messages but never answer the end of
                         DATA (the window where the server accepted and the
                         client does not know)
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, folder, reject, hang_first, greylist_first=0):
        self.greylist_first = greylist_first
        self.rcpts = 0
        self.folder = folder
        self.reject = set(reject)
        self.hang_first = hang_first
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpts += 1
        if self.rcpts <= self.greylist_first:
            return "450 4.2.0 <%s>: Recipient address rejected: Greylisted, try again later" % address
        if address in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = "%04d" % self.count
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        info = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "date": str(msg["date"]),
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "body": msg.get_content().replace("\r\n", "\n"),
            "authenticated": bool(session.authenticated),
            "tls": session.ssl is not None,
            "connection": "%s:%s" % tuple(session.peer[:2]),
            "raw_max_line": max((len(l) for l in raw.split(b"\r\n")), default=0),
            "window": str(msg["x-rollctl-window"]) if msg["x-rollctl-window"] else None,
            "notice": str(msg["x-rollctl-notice"]) if msg["x-rollctl-notice"] else None,
        }
        with open(os.path.join(self.folder, name + ".eml"), "wb") as f:
            f.write(raw)
        tmp = os.path.join(self.folder, name + ".json.tmp")
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        if self.count <= self.hang_first:
            await asyncio.sleep(3600)
        return "250 2.0.0 Ok: queued as %s" % name


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--folder", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--port", type=int, default=0, help="listen here instead of a free port")
    p.add_argument("--auth")
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--hang-first", type=int, default=0)
    p.add_argument("--greylist-first", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--login-only", action="store_true")
    a = p.parse_args()
    sink = Sink(a.folder, a.reject, a.hang_first, a.greylist_first)

    authenticator = None
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok, handled=False)

    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)

    def factory():
        return SMTP(sink, hostname="sink.test", ident="rollctl-test-sink", authenticator=authenticator,
                    auth_required=bool(a.auth), auth_require_tls=tls is not None,
                    tls_context=tls, require_starttls=tls is not None,
                    auth_exclude_mechanism=["PLAIN"] if a.login_only else None)

    async def serve():
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", a.port)
        port = server.sockets[0].getsockname()[1]
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(a.port_file + ".tmp", a.port_file)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
