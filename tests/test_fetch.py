"""Source fetching: inline base64 and SSRF-safe URL downloads, against servers on 127.0.0.1 only."""

from __future__ import annotations

import base64
import re
import socket
import time

import pytest

from gpu_worker.errors import FetchError, InvalidInput, JobError, LimitExceeded
from gpu_worker.fetch import decode_base64, fetch_source, fetch_url, redact_url
from http_servers import LoopbackServer

pytestmark = pytest.mark.usefixtures("clean_env")  # see conftest

ALLOW = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"
# Bytes with every value, so any mangling (text decoding, newline translation) shows.
PAYLOAD = bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n"
MB = 1 << 20


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------




@pytest.fixture
def allow_private(monkeypatch):
    monkeypatch.setenv(ALLOW, "true")


@pytest.fixture
def server():
    srv = LoopbackServer().start()
    srv.add_bytes("/img.bin", PAYLOAD, content_type="image/png")
    yield srv
    srv.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# base64
# ---------------------------------------------------------------------------------------------

B64 = base64.b64encode(PAYLOAD).decode()


def test_base64_plain():
    assert decode_base64(B64, MB) == PAYLOAD


@pytest.mark.parametrize(
    "prefix",
    ["data:image/png;base64,", "DATA:image/jpeg;BASE64,", "data:application/octet-stream;base64,", "data:;base64,"],
)
def test_base64_data_uri_prefix(prefix):
    assert decode_base64(prefix + B64, MB) == PAYLOAD


def test_base64_data_uri_without_base64_is_refused():
    with pytest.raises(FetchError, match=r"image\.base64 .*data URI without ';base64'"):
        decode_base64("data:image/png," + B64, MB)


def test_base64_whitespace_and_newlines():
    wrapped = "\n".join(B64[i : i + 76] for i in range(0, len(B64), 76))
    assert decode_base64("  " + wrapped + "\r\n\t ", MB) == PAYLOAD
    assert decode_base64("data:image/png;base64,\n" + wrapped.replace("\n", "\r\n"), MB) == PAYLOAD


def test_base64_urlsafe_alphabet():
    text = base64.urlsafe_b64encode(PAYLOAD).decode()
    assert "-" in text or "_" in text  # the test would prove nothing otherwise
    assert decode_base64(text, MB) == PAYLOAD


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 256])
def test_base64_missing_padding(n):
    data = PAYLOAD[:n]
    text = base64.b64encode(data).decode().rstrip("=")
    assert decode_base64(text, MB) == data


@pytest.mark.parametrize(
    "text, detail",
    [
        ("aGVsbG8!d29ybGQ=", r"character '!' at position 7 of the data"),
        ("aGVs bG8*", r"character '\*'"),
        ("aGVsbG8=d29y", r"padding in the middle"),
        ("aGVsb", r"digits"),  # 4n+1 digits: truncated
        ("aGVsbG8é", r"character 'é'"),
    ],
)
def test_base64_invalid(text, detail):
    with pytest.raises(FetchError, match=r"^image\.base64 is not valid base64: .*" + detail):
        decode_base64(text, MB)


@pytest.mark.parametrize("text", ["", "   \n", "data:image/png;base64,", "data:image/png;base64,  ==\n"])
def test_base64_empty(text):
    with pytest.raises(FetchError, match=r"image\.base64 is empty"):
        decode_base64(text, MB)


def test_base64_over_limit_refused_before_decoding(monkeypatch):
    import gpu_worker.fetch as fetch_mod

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although over the limit")

    monkeypatch.setattr(fetch_mod.pybase64, "b64decode", no_decoding)
    with pytest.raises(LimitExceeded, match=r"image\.base64 .*over the limit MAX_SOURCE_BYTES=1000 bytes"):
        decode_base64(base64.b64encode(b"x" * 1003).decode(), 1000)
    # Invalid text over the limit is refused for its size, not its content (no scan at all).
    with pytest.raises(LimitExceeded):
        decode_base64("!" * 10_000, 1000)


def test_base64_exactly_at_limit():
    data = PAYLOAD[:1000]
    assert decode_base64(base64.b64encode(data).decode(), 1000) == data


# ---------------------------------------------------------------------------------------------
# URL: address checks (the SDK's) and schemes
# ---------------------------------------------------------------------------------------------


def test_loopback_refused_by_default(server):
    expected = r"^image\.url refused: 127\.0\.0\.1 is not a public address \(set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true"
    with pytest.raises(FetchError, match=expected):
        fetch_url(server.url("/img.bin"), MB, 5)
    assert server.hits["/img.bin"] == 0  # refused before connecting


@pytest.mark.parametrize(
    "host, shown",
    [
        ("2130706433", r"2130706433 \(resolves to 127\.0\.0\.1\)"),  # decimal integer
        ("0x7f000001", r"0x7f000001 \(resolves to 127\.0\.0\.1\)"),  # hex integer
        ("127.1", r"127\.1 \(resolves to 127\.0\.0\.1\)"),  # short dotted form
        ("0177.0.0.1", r"0177\.0\.0\.1 \(resolves to 127\.0\.0\.1\)"),  # octal
        ("[::ffff:127.0.0.1]", r"::ffff:127\.0\.0\.1"),  # IPv4-mapped IPv6
        ("[::ffff:7f00:1]", r"::ffff:7f00:1 \(resolves to ::ffff:127\.0\.0\.1\)"),  # mapped, hex spelling
        ("[::1]", r"::1"),  # IPv6 loopback
        ("localhost", r"localhost \(resolves to "),
        ("0.0.0.0", r"0\.0\.0\.0"),  # unspecified
        ("169.254.169.254", r"169\.254\.169\.254"),  # cloud metadata (link-local)
        ("10.0.0.1", r"10\.0\.0\.1"),  # RFC 1918
        ("100.64.0.1", r"100\.64\.0\.1"),  # CGNAT
    ],
)
def test_non_public_address_forms_refused(server, host, shown):
    # Nothing is contacted: the SDK resolves the name and refuses before connecting.
    with pytest.raises(FetchError, match=r"^image\.url refused: " + shown + r".* is not a public address"):
        fetch_url(server.url("/img.bin", host=host), MB, 5)
    assert server.hits["/img.bin"] == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "127.1", "localhost", "[::ffff:127.0.0.1]"])
def test_loopback_allowed_with_switch(server, allow_private, host):
    if "::" in host and not _ipv6_loopback_available():
        pytest.skip("no IPv6 on this machine")
    assert fetch_url(server.url("/img.bin", host=host), MB, 5) == PAYLOAD


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("ftp://127.0.0.1/img.bin", "ftp"),
        ("file:///etc/passwd", "file"),
        ("gopher://127.0.0.1:70/_x", "gopher"),
        ("//127.0.0.1/img.bin", "(none)"),
        ("127.0.0.1/img.bin", "(none)"),
    ],
)
def test_scheme_refused(allow_private, url, scheme):
    expected = rf"^image\.url refused: scheme '{re.escape(scheme)}' is not allowed, only http and https"
    with pytest.raises(FetchError, match=expected):
        fetch_url(url, MB, 5)


@pytest.mark.parametrize("url", ["http://[::1/x", "http://127.0.0.1:99999/x", "http:///x", ""])
def test_malformed_url(url):
    with pytest.raises(FetchError, match=r"^image\.url "):
        fetch_url(url, MB, 5)


# ---------------------------------------------------------------------------------------------
# URL: statuses, redirects, connection failures
# ---------------------------------------------------------------------------------------------


def test_bytes_come_back_intact_without_content_length(server, allow_private):
    server.add_bytes("/nolen.bin", PAYLOAD, send_length=False)
    assert fetch_url(server.url("/nolen.bin"), MB, 5) == PAYLOAD


def test_404_names_status_and_url_without_query(server, allow_private):
    url = server.url("/missing.png?X-Amz-Signature=secret&token=abc")
    with pytest.raises(FetchError) as info:
        fetch_url(url, MB, 5)
    message = str(info.value)
    assert "HTTP 404" in message
    assert f"127.0.0.1:{server.port}/missing.png" in message
    assert "secret" not in message and "token" not in message


def test_500_is_fetch_error(server, allow_private):
    server.add_bytes("/boom", b"oops", status=500)
    with pytest.raises(FetchError, match=r"HTTP 500"):
        fetch_url(server.url("/boom"), MB, 5)


def test_redirect_followed(server, allow_private):
    server.add_redirect("/old", "/img.bin")
    server.add_redirect("/abs", server.url("/old"), status=301)
    assert fetch_url(server.url("/abs"), MB, 5) == PAYLOAD
    assert server.hits["/abs"] == server.hits["/old"] == server.hits["/img.bin"] == 1


def test_redirect_to_other_scheme_refused(server, allow_private):
    server.add_redirect("/to-file", "file:///etc/passwd?x=secret")
    with pytest.raises(FetchError, match=r"^image\.url refused: .*scheme 'file'") as info:
        fetch_url(server.url("/to-file"), MB, 5)
    assert "secret" not in str(info.value)


def test_redirect_loop_refused(server, allow_private):
    server.add_redirect("/loop", "/loop")
    with pytest.raises(FetchError, match=r"^image\.url refused: exceeded maximum redirects"):
        fetch_url(server.url("/loop"), MB, 5)
    assert server.hits["/loop"] == 6  # the first request and five redirects, then stop


def test_redirecting_loopback_url_refused_without_switch(server):
    server.add_redirect("/old", "/img.bin")
    with pytest.raises(FetchError, match=r"not a public address"):
        fetch_url(server.url("/old"), MB, 5)
    assert server.hits["/old"] == 0


def test_connection_refused(allow_private, closed_port):
    url = f"http://127.0.0.1:{closed_port}/img.bin?token=secret"
    expected = r"^image\.url failed: could not connect to 127\.0\.0\.1 \(connection refused\)"
    with pytest.raises(FetchError, match=expected) as info:
        fetch_url(url, MB, 5)
    assert "secret" not in str(info.value)


def test_unresolvable_host():
    # .invalid never resolves (RFC 6761); the resolver answers locally without network.
    with pytest.raises(FetchError, match=r"^image\.url failed: could not resolve host no-such-host\.invalid"):
        fetch_url("http://no-such-host.invalid/x.png", MB, 5)


# ---------------------------------------------------------------------------------------------
# URL: size cap and total time limit
# ---------------------------------------------------------------------------------------------


def test_declared_content_length_over_cap_refused_up_front(server, allow_private):
    server.add_declared_length("/huge", 10**12)
    expected = r"declares 1000000000000 bytes \(Content-Length\), over the limit MAX_SOURCE_BYTES=1048576"
    with pytest.raises(LimitExceeded, match=expected):
        fetch_url(server.url("/huge"), MB, 5)


def test_body_over_cap_without_content_length_cut_off(server, allow_private):
    total = 100 * MB  # more than any socket buffers hold: a client reading it all would take it all
    server.add_stream("/stream", total)
    with pytest.raises(LimitExceeded, match=r"sent more than the limit MAX_SOURCE_BYTES=1048576 bytes"):
        fetch_url(server.url("/stream"), MB, 10)
    server.wait_for_ended("/stream")
    # The client hung up after the cap: the server wrote what the socket buffers took, not the body.
    assert server.hung_up["/stream"] == 1 and server.sent["/stream"][0] < total, server.sent


def test_body_exactly_at_cap_accepted(server, allow_private):
    assert fetch_url(server.url("/img.bin"), len(PAYLOAD), 5) == PAYLOAD
    with pytest.raises(LimitExceeded):
        fetch_url(server.url("/img.bin"), len(PAYLOAD) - 1, 5)


def test_lying_small_content_length_is_not_trusted_beyond_it(server, allow_private):
    # Content-Length says 10 bytes and the server sends more: only the declared 10 are read.
    server.add_declared_length("/liar", 10, body=b"0123456789" + b"x" * 5000)
    assert fetch_url(server.url("/liar"), MB, 5) == b"0123456789"


def test_trickling_body_cut_off_at_total_time_limit(server, allow_private):
    server.add_trickle("/slow", interval_s=0.2)
    start = time.monotonic()
    expected = r"image\.url from 127\.0\.0\.1 took longer than the limit FETCH_TIMEOUT_S=1 s"
    with pytest.raises(LimitExceeded, match=expected):
        fetch_url(server.url("/slow"), MB, 1.0)
    elapsed = time.monotonic() - start
    # A time limit: it did wait; the upper bound (10x) is only a guard against hanging, the
    # message names the limit that cut it (the trickle itself goes on for 30 s).
    assert 0.9 <= elapsed < 10.0
    server.wait_for_ended("/slow")  # the connection was shut down, not left to trickle on
    assert server.hung_up["/slow"] == 1


def test_trickling_headers_cut_off_at_total_time_limit(server, allow_private):
    server.add_trickle("/slow-headers", interval_s=0.1, headers_too=True)
    start = time.monotonic()
    with pytest.raises(LimitExceeded, match=r"took longer than the limit FETCH_TIMEOUT_S=1 s"):
        fetch_url(server.url("/slow-headers"), MB, 1.0)
    # As above: it waited the limit; 10x is a hang guard (the header block trickles for 30 s).
    assert 0.9 <= time.monotonic() - start < 10.0
    # The download thread ends when the server stops trickling (fixture teardown).


def test_errors_are_job_errors_with_field(server, allow_private):
    with pytest.raises(JobError, match=r"^images\[2\]\.url returned HTTP 404"):
        fetch_source({"url": server.url("/nope")}, max_bytes=MB, timeout_s=5, field="images[2]")


# ---------------------------------------------------------------------------------------------
# dispatch and helpers
# ---------------------------------------------------------------------------------------------


def test_fetch_source_base64():
    assert fetch_source({"base64": "data:image/png;base64," + B64}, max_bytes=MB, timeout_s=5) == PAYLOAD


def test_fetch_source_url(server, allow_private):
    assert fetch_source({"url": server.url("/img.bin")}, max_bytes=MB, timeout_s=5) == PAYLOAD


def test_fetch_source_attribute_object():
    class Source:
        url = None
        base64 = B64

    assert fetch_source(Source(), max_bytes=MB, timeout_s=5) == PAYLOAD


def test_fetch_source_neither_or_both():
    with pytest.raises(InvalidInput, match=r"image must give one of 'url' or 'base64'"):
        fetch_source({}, max_bytes=MB, timeout_s=5)
    with pytest.raises(InvalidInput, match=r"exactly one"):
        fetch_source({"url": "http://x/", "base64": B64}, max_bytes=MB, timeout_s=5)


def test_fetch_source_limits_apply_to_base64():
    with pytest.raises(LimitExceeded):
        fetch_source({"base64": B64}, max_bytes=100, timeout_s=5)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://u:pw@example.com/a/b.png?sig=1#frag", "https://example.com/a/b.png?..."),
        ("http://example.com/a.png", "http://example.com/a.png"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x?..."),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_body_shorter_than_content_length(server, allow_private):
    server.add_declared_length("/short", 1000, body=b"0123456789")
    expected = r"^image\.url failed: the body from 127\.0\.0\.1 ended early .*IncompleteRead"
    with pytest.raises(FetchError, match=expected):
        fetch_url(server.url("/short"), MB, 5)


def test_refused_redirect_target_is_named():
    # A public host redirecting to a private one cannot be staged on loopback (the switch is
    # all or nothing), so the translation of the SDK's refusal of a later hop is checked directly.
    from runpod.serverless.utils.rp_ssrf import SSRFError

    from gpu_worker.fetch import _translate

    err = SSRFError("host '169.254.169.254' resolves to non-public address 169.254.169.254")
    out = _translate(
        err, field="image.url", host="example.com", shown="https://example.com/a", max_bytes=1, timeout_s=1
    )
    assert isinstance(out, FetchError)
    assert str(out).startswith("image.url refused: redirect target 169.254.169.254 is not a public address")


def test_url_not_a_string():
    with pytest.raises(FetchError, match=r"^image\.url must be a string, got int"):
        fetch_source({"url": 42}, max_bytes=MB, timeout_s=5)
