# Serves acme2certifier's WSGI application over HTTPS with the standard library only.
# argv: host port cert key ready_file [request_log]. Config comes from $ACME_SRV_CONFIGFILE.
# With request_log, the decoded JWS payload of every POST is appended to it as a JSON line
# ({"path": ..., "payload": ...}), so tests can see what a client put on the wire (e.g. the
# RFC 9773 `replaces` field, which acme2certifier accepts but does not record).
import base64
import io
import json
import socketserver
import ssl
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from acme2certifier.share.acme2certifier_wsgi import application as a2c_application

request_log = sys.argv[6] if len(sys.argv) > 6 else None
log_lock = threading.Lock()


def b64url_json(text):
    if not text:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def application(environ, start_response):
    if request_log and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            payload = b64url_json(json.loads(body).get("payload", ""))
        except ValueError:
            payload = None
        with log_lock, open(request_log, "a") as f:
            f.write(json.dumps({"path": environ.get("PATH_INFO"), "payload": payload}) + "\n")
    return a2c_application(environ, start_response)


class Handler(WSGIRequestHandler):
    def get_environ(self):
        env = super().get_environ()
        env["HTTPS"] = "on"  # so acme2certifier builds https:// URLs
        return env

    def log_message(self, fmt, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))


class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


host, port, cert, key, ready = sys.argv[1:6]
httpd = make_server(host, int(port), application, server_class=Server, handler_class=Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
open(ready, "w").close()
sys.stderr.write("acme2certifier listening on https://%s:%s\n" % (host, port))
sys.stderr.flush()
httpd.serve_forever()
