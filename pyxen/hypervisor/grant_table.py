"""Grant tables (v1): a domain's table of pages it lets other domains use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .domain import Domain


class GrantTable:
    def __init__(self, domain: Domain):
        self.domain = domain

    def release(self) -> None:
        """The domain is being destroyed: give back the table's frames and mappings."""
