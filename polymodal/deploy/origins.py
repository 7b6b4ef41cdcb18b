"""Which requests the HTTP service answers by where they say they are going and where they come
from: a browser can be made to send requests to the service by any web page it opens.

- **DNS rebinding.** A page on ``evil.example`` whose name is made to resolve to 127.0.0.1 reads
  a service listening there as its own site. Its requests still name ``evil.example`` in their
  ``Host`` header, so a request that arrived on a loopback address (the service bound to loopback,
  or to every interface and called through loopback) is answered only when addressed to a
  loopback name (``localhost``) or address (``127.0.0.1``, ``[::1]``), on any port. A service
  bound to another interface without a token is open to whoever reaches that interface, a page
  rebinding a name to it included: the command line warns of it.
- **Cross-site posts.** Any page may post a form (or a ``fetch`` without custom headers) to the
  service; it cannot read the answer, but the service runs the model for it. A ``POST`` whose
  ``Origin`` header is not the service's own (the page at ``/`` sends its own) is refused. The
  service's own is the ``Host`` the request was sent to or, behind a reverse proxy that rewrites
  ``Host``, the ``X-Forwarded-Host`` the proxy adds (a cross-site page cannot set that header
  without a CORS preflight, which the service does not grant).

A client that sends neither header differently (curl, a script) is unaffected. A bearer token
(``--token``) already stops both where it is set; these checks guard a service without one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from polymodal.deploy.errors import RequestError

LOOPBACK_NAMES = ("localhost",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # cannot change or cost anything a cross-site page could read back


def is_loopback(host: str) -> bool:
    """Whether the interface ``host`` (``--host``) is this machine's loopback: ``localhost`` or an
    address in 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(netloc: str) -> str:
    """The name or address in a ``Host`` header or URL authority, without its port: ``[::1]:8000``
    -> ``::1``, ``Localhost:80`` -> ``localhost``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc[1:]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def port(netloc: str) -> str:
    """The ``:port`` of a ``Host`` header or URL authority (``''`` without one)."""
    end = netloc.rfind("]")
    rest = netloc[end + 1:] if end >= 0 else netloc
    return ":" + rest.rsplit(":", 1)[1] if rest.count(":") == 1 else ""


DEFAULT_PORTS = (":80", ":443")  # left out of an Origin, perhaps spelled out by a proxy's X-Forwarded-Host


def _site(netloc: str) -> str:
    """A ``Host`` or URL authority as compared: lower case, without a default port."""
    netloc = netloc.strip().lower()
    return netloc[:-len(port(netloc))] if port(netloc) in DEFAULT_PORTS else netloc


def refusal(method: str, headers: Mapping[str, str], *, loopback: bool,
            listening: int | None = None) -> RequestError | None:
    """Why the service refuses a request with ``method`` and ``headers`` (lower-case names), or
    None (see the module docstring; ``loopback``: the request arrived on a loopback address;
    ``listening``: the port it arrived on, which the address to call instead names)."""
    host = headers.get("host", "")
    if loopback and not is_loopback(host_name(host)):
        at = f":{listening}" if listening is not None and listening != 80 else port(host)
        return RequestError(f"this service listens on loopback and answers requests addressed to localhost, "
                            f"127.0.0.1 or [::1] only; this one was addressed to Host '{host}' (a web page on "
                            "another site can reach a loopback service through a name of its own: DNS rebinding). "
                            f"Call it at http://127.0.0.1{at}/, or have a reverse proxy in front of it send "
                            "one of those as Host", status=400, code="bad_host", field="Host")
    origin = headers.get("origin")
    if origin is None or method.upper() in SAFE_METHODS:
        return None
    own = {_site(host), _site(headers.get("x-forwarded-host", "").split(",")[0])} - {""}
    sent = _site(urlsplit(origin.strip()).netloc)
    if sent not in own:
        return RequestError(f"a {method} from a page at Origin '{origin}' is refused: this service answers posts "
                            f"from its own pages (whose Origin names the Host they were sent to, '{host}') and from "
                            "clients that send no Origin (curl, scripts), not from other sites' pages. Behind a reverse proxy that rewrites Host, have it "
                            "send the site's own as X-Forwarded-Host", status=403, code="cross_origin",
                            field="Origin")
    return None


class SameSiteOnly:
    """ASGI middleware answering a request :func:`refusal` refuses with the service's JSON error
    (``{"error": {"code", "message", "field"}}``), before any route, the docs and the static files
    included, reads it. Whether a request arrived on loopback is read from the address it came in
    on (the ASGI scope's ``server``), so that a service bound to every interface guards its
    loopback callers and answers the others; ``loopback`` stands in where the server does not say."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, loopback: bool):
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            server = scope.get("server")  # (host, port) of the socket the request came in on
            arrived = is_loopback(str(server[0])) if server else self.loopback
            error = refusal(scope["method"], Headers(scope=scope), loopback=arrived,
                            listening=int(server[1]) if server and server[1] is not None else None)
            if error is not None:
                await JSONResponse(error.to_json(), status_code=error.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
