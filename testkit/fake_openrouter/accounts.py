"""Bearer keys and the accounting endpoints: `/key` (and `/auth/key`), `/credits`, `/generation`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .errors import ErrorResult, error, json_response
from .state import FakeState, user_id_for

KEY_PREFIX = "sk-or-v1-"
ZOD_MISSING_ID = {
    "success": False,
    "error": {
        "issues": [
            {
                "code": "invalid_type",
                "expected": "string",
                "received": "undefined",
                "path": ["id"],
                "message": "Required",
            }
        ],
        "name": "ZodError",
    },
}


def authenticate(state: FakeState, request: Request) -> str | ErrorResult:
    """The bearer key, or the 401 OpenRouter gives for a missing or unknown one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    key = token.strip()
    if scheme.lower() != "bearer" or not key:
        return error(401, "No auth credentials found")
    if not state.is_valid_key(key):
        return error(401, "User not found.")
    return key


def masked(key: str) -> str:
    """The label OpenRouter shows for a key: `sk-or-v1-au7...890`, never the key itself."""
    head = key[: len(KEY_PREFIX) + 3] if key.startswith(KEY_PREFIX) else key[:3]
    return f"{head}...{key[-3:]}" if len(key) > len(head) + 6 else "..."


class AccountsApi:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def key(self, request: Request) -> Response:
        key = authenticate(self.state, request)
        if isinstance(key, ErrorResult):
            return key.response()
        spent = self.state.spent(key)
        limit = self.state.config.key_limit_usd
        management = key in self.state.management_keys
        data = {
            "label": masked(key),
            "limit": limit,
            "limit_remaining": None if limit is None else limit - spent,
            "limit_reset": None if limit is None else "monthly",
            "include_byok_in_limit": False,
            "usage": spent,
            "usage_daily": spent,
            "usage_weekly": spent,
            "usage_monthly": spent,
            "byok_usage": 0,
            "byok_usage_daily": 0,
            "byok_usage_weekly": 0,
            "byok_usage_monthly": 0,
            "is_free_tier": self.state.config.is_free_tier,
            "is_management_key": management,
            "is_provisioning_key": management,
            "creator_user_id": user_id_for(key),
            "expires_at": None,
            "rate_limit": {
                "requests": -1,
                "interval": "10s",
                "note": "This field is deprecated and safe to ignore.",
            },
        }
        return json_response({"data": data})

    async def credits(self, request: Request) -> Response:
        key = authenticate(self.state, request)
        if isinstance(key, ErrorResult):
            return key.response()
        if key not in self.state.management_keys:
            return error(403, "Only management keys can fetch credits").response()
        data = {"total_credits": self.state.credits_usd, "total_usage": self.state.spent()}
        return json_response({"data": data})

    async def generation(self, request: Request) -> Response:
        key = authenticate(self.state, request)
        if isinstance(key, ErrorResult):
            return key.response()
        generation_id = request.query_params.get("id")
        if not generation_id:
            return json_response(ZOD_MISSING_ID, 400)
        stored = self.state.visible_generation(generation_id)
        if stored is None:
            return error(404, f"Generation {generation_id} not found").response()
        if stored.key != key and key not in self.state.management_keys:
            return error(403, "Forbidden").response()
        return json_response({"data": dict(stored.data)})
