"""The dashboard: a page with its script, and the figures it polls.

The page and the script hold no figures and nothing secret, so a browser loads them without a
key (as it does the API docs) and asks for one; the figures (`/dashboard/data`) need a key when
caller keys are on, as do the `/route` and `/explain` requests of the page's decision form.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response

from rest_gateway.backend import LocalBackend
from rest_gateway.deps import BackendDep, json_response
from service import dashboard

_FILES = resources.files("rest_gateway.dashboard")
_PAGE = (_FILES / "page.html").read_bytes()
_SCRIPT = (_FILES / "dashboard.js").read_bytes()
SCRIPT_PATH = "/dashboard/dashboard.js"
OPEN_PATHS = frozenset({"/dashboard", SCRIPT_PATH})
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
_NO_STORE = {"cache-control": "no-store"}

router = APIRouter(tags=["operations"])


@router.get("/dashboard", include_in_schema=False)
async def page() -> Response:
    return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get(SCRIPT_PATH, include_in_schema=False)
async def script() -> Response:
    return Response(_SCRIPT, media_type="text/javascript; charset=utf-8", headers=_HEADERS)


@router.get("/dashboard/data")
async def data(backend: BackendDep) -> Response:
    """What the dashboard shows, read when asked from the registry `/metrics` renders and from
    the router's state: traffic, latency percentiles, failovers, cache and sticky-session hit
    rates, spend today, every model's circuit and learned latency, the catalogue and the free
    variants' allowance. In front of a remote router, its status alone, and what is not shown
    (`unavailable`)."""
    if isinstance(backend, LocalBackend):
        body = await dashboard.snapshot(backend.core)
    else:
        body = dashboard.remote(await backend.status())
    return json_response(body, headers=_NO_STORE)
