"""OpenRouter's HTTP API as the router uses it: one pooled async client, tolerant parsing."""

from service.openrouter.client import OpenRouterClient, OpenRouterError
from service.openrouter.endpoint_figures import EndpointFigures, model_figures, variant_endpoints
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
    "EndpointFigures",
    "EndpointStats",
    "ListedModel",
    "OpenRouterClient",
    "OpenRouterError",
    "model_figures",
    "parse_endpoints",
    "parse_models",
    "parse_price",
    "variant_endpoints",
]
