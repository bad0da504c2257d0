"""A loopback HTTP server for the download tests (127.0.0.1, bounded in time): no test here
touches the internet."""

import http.server
import socket
import threading

import pytest


class Server:
    """Serves ``files`` (URL path -> bytes); a path in ``drop`` is cut off half-way (the whole
    length announced, half sent, the connection closed) while it is there."""

    def __init__(self) -> None:
        self.files, self.drop, self.gets = {}, set(), []
        files, drop, gets = self.files, self.drop, self.gets

        class Handler(http.server.BaseHTTPRequestHandler):
            def _head(self):
                body = files.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                gets.append(self.path)
                body = self._head()
                if body is None:
                    return
                if self.path in drop:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:  # the client went first
                        pass
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a test never waits longer on the server
    srv = Server()
    yield srv
    srv.close()
    socket.setdefaulttimeout(old)
