"""Bearer keys, and `GET /key`: what the key has spent, its limit and its tier."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .errors import ErrorResult, error, json_response
from .state import FakeState, user_id_for

KEY_PREFIX = "sk-or-v1-"


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
            "is_management_key": False,
            "is_provisioning_key": False,
            "creator_user_id": user_id_for(key),
            "expires_at": None,
            "rate_limit": {
                "requests": -1,
                "interval": "10s",
                "note": "This field is deprecated and safe to ignore.",
            },
        }
        return json_response({"data": data})
