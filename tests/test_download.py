"""The text8 downloader against a real HTTP server on 127.0.0.1 serving a small zip it builds."""
import hashlib
import http.server
import io
import socket
import threading
import zipfile

import pytest

import data

TEXT = b" a tiny stand in for text eight"


def make_zip(member="text8", text=TEXT):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, text)
    return buf.getvalue()


GOOD = make_zip()
SHA1 = hashlib.sha1(TEXT).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        Handler.hits.append(self.path)
        body, status, length = {
            "/ok.zip": (GOOD, 200, len(GOOD)),
            "/404": (b"", 404, 0),
            "/500": (b"", 500, 0),
            "/truncated.zip": (GOOD[:20], 200, len(GOOD)),  # promises more than it sends
            "/corrupt.zip": (b"x" * len(GOOD), 200, len(GOOD)),
            "/nomember.zip": (make_zip("other"), 200, None),
            "/badsha.zip": (make_zip(text=TEXT.upper()), 200, None),
        }[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def download(url, cache, size=len(GOOD)):
    return data.download_text8(cache, url=url, size=size, sha1=SHA1, timeout=(2, 5))


def assert_nothing_acceptable_left(cache, url, message):
    assert url in message and str(cache / "text8.zip") in message and "--data PATH" in message
    assert "\n" not in message
    assert not (cache / "text8.zip").exists()
    assert [p.name for p in cache.iterdir()] == [] if cache.exists() else True


def test_success_then_cached_run_makes_no_request(server, tmp_path):
    Handler.hits.clear()
    path = download(server + "/ok.zip", tmp_path)
    assert path == tmp_path / "text8.zip" and path.read_bytes() == GOOD
    assert Handler.hits == ["/ok.zip"]
    assert download(server + "/ok.zip", tmp_path) == path
    assert Handler.hits == ["/ok.zip"]  # the cache answered
    assert data.load_text(path) == TEXT.decode()
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("route, size, reason", [
    ("/404", len(GOOD), "HTTP 404"),
    ("/500", len(GOOD), "HTTP 500"),
    ("/ok.zip", len(GOOD) + 1, f"received {len(GOOD):,} bytes, expected {len(GOOD) + 1:,}"),
    ("/truncated.zip", len(GOOD), "download broke off"),
    ("/corrupt.zip", len(GOOD), "not a valid zip"),
    ("/nomember.zip", len(make_zip("other")), "no 'text8' member"),
    ("/badsha.zip", len(make_zip(text=TEXT.upper())), "SHA-1"),
])
def test_failures_leave_nothing_and_say_what_to_do(server, tmp_path, route, size, reason):
    url = server + route
    with pytest.raises(data.DataError) as e:
        download(url, tmp_path, size)
    message = str(e.value)
    assert reason in message
    assert_nothing_acceptable_left(tmp_path, url, message)


def test_connection_refused(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/text8.zip"
    with pytest.raises(data.DataError, match="could not connect") as e:
        download(url, tmp_path)
    assert_nothing_acceptable_left(tmp_path, url, str(e.value))


def test_bad_cached_file_is_removed_and_reported(server, tmp_path):
    (tmp_path / "text8.zip").write_bytes(b"not a zip at all")
    Handler.hits.clear()
    with pytest.raises(data.DataError, match="cached file was bad") as e:
        download(server + "/ok.zip", tmp_path)
    assert Handler.hits == []
    assert_nothing_acceptable_left(tmp_path, server + "/ok.zip", str(e.value))
    assert download(server + "/ok.zip", tmp_path).exists()  # the next run downloads afresh


def test_load_corpus_downloads_into_the_cache(server, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "TEXT8_URL", server + "/ok.zip")
    monkeypatch.setattr(data, "TEXT8_ZIP_SIZE", len(GOOD))
    monkeypatch.setattr(data, "TEXT8_SHA1", SHA1)
    ids, source = data.load_corpus(None, cache_dir=tmp_path)
    assert source == "text8" and data.ids_to_text(ids) == TEXT.decode()
