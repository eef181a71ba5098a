#!/usr/bin/env python3
"""A real SMTP server for inferwatch's email tests: aiosmtpd with STARTTLS and AUTH.

    smtp_server.py --port 2525 --dir DIR [--tls starttls|implicit|none] [--user U --password P]
    smtp_server.py --port 0 --dir DIR --cert-only

Writes a self-signed certificate to DIR/cert.pem (with DIR/key.pem) when there is none,
and every message it accepts, byte for byte as received, to DIR/mail/NNNNNN.eml. Next to
it, DIR/mail/NNNNNN.json holds what a test checks, parsed by Python's `email` package: the
envelope (from, to), the decoded headers, and the decoded text and HTML parts. With
--user, AUTH (PLAIN, LOGIN) is required, and only after STARTTLS. Prints "ready" when it
listens. Run it with the Debian interpreter (/usr/bin/python3, package python3-aiosmtpd).
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import pathlib
import ssl
import logging
import subprocess

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Mailbox:
    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.n = len(list(folder.glob("*.eml")))

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        stem = self.folder / f"{self.n:06d}"
        raw = envelope.original_content or envelope.content
        (stem.with_suffix(".eml")).write_bytes(raw)
        tmp = stem.with_suffix(".tmp")
        tmp.write_text(json.dumps(parse(raw, envelope), indent=1))
        os.replace(tmp, stem.with_suffix(".json"))
        return "250 Message accepted for delivery"


def parse(raw: bytes, envelope) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = {}
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html") and kind not in parts:
            parts[kind] = part.get_content()
    return {
        "from": envelope.mail_from,
        "to": envelope.rcpt_tos,
        "headers": [[k, str(v)] for k, v in msg.items()],
        "text": parts.get("text/plain"),
        "html": parts.get("text/html"),
    }


def certificate(d: pathlib.Path):
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "30",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def main():
    # aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on
    # every AUTH; keep its real errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", default="starttls", choices=["starttls", "implicit", "none"])
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--cert-only", action="store_true",
                   help="write DIR/cert.pem and DIR/key.pem, then exit")
    a = p.parse_args()
    d = pathlib.Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    if a.cert_only:
        certificate(d)
        return
    ctx = certificate(d) if a.tls != "none" else None

    def authenticate(server, session, envelope, mechanism, data):
        ok = (isinstance(data, LoginPassword) and data.login.decode() == a.user
              and data.password.decode() == a.password)
        return AuthResult(success=ok)

    kwargs = dict(hostname="127.0.0.1", port=a.port)
    if a.tls == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    elif a.tls == "implicit":
        kwargs.update(ssl_context=ctx)
    if a.user:
        kwargs.update(authenticator=authenticate, auth_required=True,
                      auth_require_tls=a.tls != "none")
    else:
        kwargs.update(auth_require_tls=False)
    controller = Controller(Mailbox(d / "mail"), **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
