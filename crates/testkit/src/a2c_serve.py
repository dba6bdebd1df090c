# Serves acme2certifier's WSGI application over HTTPS with the standard library only.
# argv: host port cert key ready_file. Config comes from $ACME_SRV_CONFIGFILE.
import socketserver
import ssl
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from acme2certifier.share.acme2certifier_wsgi import application


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
