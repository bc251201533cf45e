"""What a model is for, read from its id: chat routes take chat models only (see the README's
"How a model is chosen")."""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["chat", "meta_router", "guard"]

# OpenRouter's own ids are routers that pick another model per request (openrouter/auto,
# openrouter/free, …); a guard classifies content as safe or not instead of answering it.
META_ROUTER_AUTHORS = frozenset({"openrouter"})
_GUARD = re.compile(r"guard|content-safety|safeguard|shieldgemma")


def model_kind(model_id: str) -> Kind:
    author, _, slug = model_id.lstrip("~").partition("/")
    if author in META_ROUTER_AUTHORS:
        return "meta_router"
    if _GUARD.search(slug.lower()):
        return "guard"
    return "chat"
