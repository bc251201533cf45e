"""The router's parts wired together once, for the gRPC server, the CLI and the tests."""

from __future__ import annotations

from dataclasses import dataclass

from service.catalogue_keeper import CatalogueKeeper, initial_catalogue
from service.config import Settings
from service.openrouter import OpenRouterClient
from service.router import ModelRouter


@dataclass(frozen=True)
class Runtime:
    router: ModelRouter
    keeper: CatalogueKeeper
    client: OpenRouterClient

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        catalogue, source = initial_catalogue(settings)
        router = ModelRouter(catalogue, settings)
        client = OpenRouterClient(
            settings.openrouter_base_url,
            settings.openrouter_api_key,
            timeout_s=settings.openrouter_timeout_s,
        )
        return cls(router, CatalogueKeeper(router, client, settings, source), client)

    async def aclose(self) -> None:
        await self.client.aclose()
