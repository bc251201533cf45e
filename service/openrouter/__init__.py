"""OpenRouter's HTTP API as the router uses it: one pooled async client, tolerant parsing."""

from service.openrouter.client import OpenRouterClient, OpenRouterError
from service.openrouter.models import (
    DYNAMIC_PRICE,
    EndpointStats,
    ListedModel,
    parse_endpoints,
    parse_models,
    parse_price,
)

__all__ = [
    "DYNAMIC_PRICE",
    "EndpointStats",
    "ListedModel",
    "OpenRouterClient",
    "OpenRouterError",
    "parse_endpoints",
    "parse_models",
    "parse_price",
]
