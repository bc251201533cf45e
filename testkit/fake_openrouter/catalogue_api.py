"""`GET /models` and `GET /models/{author}/{slug}/endpoints`."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from .accounts import authenticate
from .behaviours import HttpError, InvalidJson, ModelsReply
from .catalogue import Catalogue, Model
from .errors import ErrorResult, error, json_response, render_http_error
from .providers import endpoint_json
from .state import FakeState
from .wire import Frame, ScriptedResponse, partial_body

MODELS_PATH = "/api/v1/models"
LIST_HEADERS = {"Cache-Control": "public, max-age=120", "Access-Control-Allow-Origin": "*"}
CATEGORIES = frozenset(
    {
        "programming",
        "roleplay",
        "marketing",
        "marketing/seo",
        "technology",
        "science",
        "translation",
        "legal",
        "finance",
        "health",
        "trivia",
        "academia",
    }
)
OUTPUT_MODALITIES = frozenset({"text", "image", "audio", "embeddings"})
INPUT_MODALITIES = frozenset({"text", "image", "audio", "file", "video"})
DEFAULT_LIMIT, MAX_LIMIT = 500, 1000
FREE_SUFFIX = ":free"


class InvalidQuery(ValueError):
    pass


def _csv(value: str | None, allowed: frozenset[str] | None = None) -> list[str]:
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    if allowed is not None and not set(items) <= allowed:
        raise InvalidQuery(value)
    return items


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = default if value is None else int(value)
    except ValueError as exc:
        raise InvalidQuery(value) from exc
    if not low <= number <= high:
        raise InvalidQuery(value)
    return number


def select(catalogue: Catalogue, request: Request) -> list[Model]:
    params = request.query_params
    category = params.get("category")
    if category is not None and category not in CATEGORIES:
        raise InvalidQuery(category)
    output = params.get("output_modalities", "text")
    return catalogue.select(
        supported_parameters=_csv(params.get("supported_parameters")),
        output=None if output == "all" else _csv(output, OUTPUT_MODALITIES),
        input_=_csv(params.get("input_modalities"), INPUT_MODALITIES),
    )


def page(rows: Sequence[Model], request: Request) -> tuple[list[Model], str | None]:
    """Pagination is opt-in: without `offset` and `limit` the whole list and no next link."""
    params = request.query_params
    offset = _int(params.get("offset"), 0, 0, 1_000_000)
    limit = _int(params.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
    if "offset" not in params and "limit" not in params:
        return list(rows), None
    following = offset + limit
    if following >= len(rows):
        return list(rows[offset:following]), None
    kept = [(k, v) for k, v in params.multi_items() if k not in {"offset", "limit"}]
    query = urlencode([*kept, ("offset", following), ("limit", limit)])
    return list(rows[offset:following]), f"{MODELS_PATH}?{query}"


class CatalogueApi:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def models(self, request: Request) -> Response:
        catalogue, delay = self.state.catalogue, 0.0
        behaviour = self.state.next_models_behaviour()
        if isinstance(behaviour, HttpError):
            return render_http_error(behaviour).response()
        if isinstance(behaviour, InvalidJson):
            return Response(behaviour.body, 200, LIST_HEADERS, media_type="application/json")
        if isinstance(behaviour, ModelsReply):
            if behaviour.models is not None:
                catalogue = Catalogue(behaviour.models)
            delay = behaviour.delay_s
        try:
            selected = select(catalogue, request)
            rows, following = page(selected, request)
        except InvalidQuery:
            return error(400, "Invalid request parameters").response()
        listing = {"data": rows, "total_count": len(selected), "links": {"next": following}}
        body = json.dumps(listing, ensure_ascii=False).encode()
        if behaviour is None or isinstance(behaviour, ModelsReply):
            return ScriptedResponse(self._after(delay, body), headers=self._json_headers(body))
        return partial_body(self.state, behaviour, body, LIST_HEADERS)

    @staticmethod
    def _json_headers(body: bytes) -> dict[str, str]:
        return {
            **LIST_HEADERS,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }

    async def _after(self, delay_s: float, body: bytes) -> AsyncGenerator[Frame, None]:
        await self.state.pause(delay_s)
        yield body

    async def endpoints(self, request: Request) -> Response:
        """A `:free` id has no endpoints page (404, as observed): its free endpoints, priced 0,
        are listed under the base model, after the base model's own."""
        slug = _slug(request)
        row = None if slug.endswith(FREE_SUFFIX) else self.state.catalogue.for_endpoints(slug)
        if row is None:
            return error(404, "Resource not found").response()
        authenticated = not isinstance(authenticate(self.state, request), ErrorResult)
        free = self.state.catalogue.get(f"{row['id']}{FREE_SUFFIX}")
        served = [row] if free is None else [row, free]
        data = {
            "id": row["id"],
            "name": row.get("name", row["id"]),
            "created": row.get("created"),
            "description": row.get("description", ""),
            "architecture": row.get("architecture"),
            "endpoints": [
                endpoint_json(variant, endpoint, authenticated=authenticated)
                for variant in served
                for endpoint in self.state.endpoints(variant)
            ],
        }
        return json_response({"data": data})


def _slug(request: Request) -> str:
    """`author/slug` from raw path segments; an encoded slash matches nothing, as on OpenRouter."""
    if b"%2f" in request.scope.get("raw_path", b"").lower():
        return ""
    return f"{request.path_params['author']}/{request.path_params['slug']}"
