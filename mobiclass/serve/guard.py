"""Who may talk to a server on this machine: the service (``serve``) and the studio share these checks.

* **Host allow-list** (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at 127.0.0.1 reaches the
  server with ``Host: evil.example``; only the names this server answers to are accepted.
* **Cross-site requests** (CSRF): a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming
  from another site (``Sec-Fetch-Site: cross-site|same-site``) or whose ``Origin`` is not this server is refused, as
  Go's ``http.CrossOriginProtection`` and Jupyter do. Programs (curl, Python) send neither header.
* **Proof of the page** (studio only): a state-changing POST must also carry JSON or the ``X-Mobiclass`` header, which
  no other site can send without a CORS preflight (never granted), or the token in ``Authorization``.
* **Token** when the server is exposed beyond loopback: ``Authorization: Bearer TOKEN`` or ``?token=``.
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_HEADER = "x-mobiclass"
ANY_ADDRESS = "(any address)"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or (_is_address(host) and ipaddress.ip_address(host).is_loopback)


def host_names(bind_host: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The names a server bound to `bind_host` answers to: loopback names, the bound address, on a wildcard address
    this machine's names and any IP address (a browser sends an address only when it was typed: rebinding needs a
    name), and `extra` (``*``: any)."""
    names = {*LOOPBACK_HOSTS, bind_host.lower(), *(h if h == "*" else host_of(h) for h in extra)}
    if bind_host in WILDCARD_HOSTS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower(), ANY_ADDRESS}
    return frozenset(n for n in names if n)


def host_of(header: str) -> str:
    """``name`` of a Host header ``name:port`` or ``[v6]:port``, lower case, without a trailing dot."""
    parts = urlsplit("//" + header)
    try:
        return (parts.hostname or "").rstrip(".")
    except ValueError:
        return ""


@dataclass(frozen=True)
class Guard:
    hosts: frozenset[str]             # accepted Host names; "*" accepts any
    token: str | None = None          # required on `token_paths` when set
    token_paths: tuple[str, ...] = ("/",)
    page_proof: bool = False          # state-changing POSTs need JSON, the X-Mobiclass header or the token

    def refusal(self, request: Request) -> JSONResponse | None:
        """The answer refusing `request`, or None when it may pass."""
        host = host_of(request.headers.get("host", ""))
        if not self._answers_to(host):
            return _refuse(403, "host", f"this server does not answer to the host name {host or '(none)'!r}; if "
                                        f"that name is yours, start it with --allowed-host {host or 'NAME'}")
        path = request.url.path
        if self.token and any(path.startswith(p) for p in self.token_paths) and not self._has_token(request):
            return _refuse(401, "token", "this server needs its token: send 'Authorization: Bearer TOKEN' (the token "
                                         "was printed when the server started)")
        if request.method in STATE_CHANGING:
            return self._cross_site(request)
        return None

    def _answers_to(self, host: str) -> bool:
        return "*" in self.hosts or host in self.hosts or (ANY_ADDRESS in self.hosts and _is_address(host))

    def _has_token(self, request: Request) -> bool:
        given = _bearer(request) or request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), (self.token or "").encode())

    def _cross_site(self, request: Request) -> JSONResponse | None:
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if site is not None and site not in ("same-origin", "none"):
            return _refuse(403, "cross_site", f"a {site[:20]} request cannot change anything here: use this server's "
                                              f"own page")
        if origin is not None and not _same_origin(origin, request):
            return _refuse(403, "cross_site", f"a request from {origin[:100]} cannot change anything here: use "
                                              f"this server's own page")
        if self.page_proof and request.method == "POST" and not (
                _is_json(request) or PAGE_HEADER in request.headers or (self.token and _bearer(request))):
            return _refuse(403, "cross_site", "a POST that changes something must send JSON or the header "
                                              "'X-Mobiclass: 1' (e.g. curl -H 'X-Mobiclass: 1' ...), as the "
                                              "studio's page does")
        return None

    def install(self, app: FastAPI) -> None:
        """Check every request to `app` before it reaches a route."""

        @app.middleware("http")
        async def guard(request: Request, call_next):
            return self.refusal(request) or await call_next(request)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _bearer(request: Request) -> str:
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _same_origin(origin: str, request: Request) -> bool:
    """Whether `origin` (scheme://host[:port]) is the server the request reached."""
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) and anything odd
    default = 443 if parts.scheme == "https" else 80
    expected = urlsplit("//" + request.headers.get("host", ""))
    try:
        expected_port = expected.port or default
    except ValueError:
        return False
    return parts.hostname == (expected.hostname or "") and (port or default) == expected_port


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)
