"""What the HTTP servers the tests run on loopback (faultserver.py,
s3server.py) share: a threaded http.server that keeps quiet about clients
that went away, started on a free port of 127.0.0.1 with optional TLS, and
stopped."""

import ssl
import threading
from http.server import ThreadingHTTPServer

HOST = "127.0.0.1"


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that went away
        pass


def serve(owner, handler, tls=None, handshake_on_connect=True):
    """A QuietServer on a free port of HOST with owner as its .owner (the
    handler reaches it as self.server.owner), TLS when tls is (cert, key),
    serving from a daemon thread. Returns (server, thread)."""
    httpd = QuietServer((HOST, 0), handler)
    httpd.owner = owner
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                       do_handshake_on_connect=handshake_on_connect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


def shut(httpd):
    """Stop a server serve() started (None: nothing to stop)."""
    if httpd:
        httpd.shutdown()
        httpd.server_close()
