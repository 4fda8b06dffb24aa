"""The settings of checking and warming images by reference (``warmer check``, ``warmer warm``,
the receiver's ``/check`` and ``/warm``): the hosts under which clients reach this registry.

A part of :class:`~worker.config.settings.Settings`, which inherits these fields (read as
``WARMER_<NAME>`` like the rest); kept apart so that each module stays one concern.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from worker.errors import InvalidReferenceError
from worker.registry import reference

__all__ = ["ImageSettings"]


class ImageSettings(BaseSettings):
    """Which registry hosts an image reference may name."""

    registry_hosts: str | None = Field(
        default=None,
        description=(
            "Comma-separated `host[:port]` under which clients reach this registry: an image "
            "reference naming one of them is this registry's (one naming no host is too); "
            "any other host is refused by `warmer check`/`warm`, `/check` and `/warm`, and a "
            "Harbor webhook's resource of another host is skipped by `POST /harbor` (Harbor's "
            "external host belongs here)."
        ),
    )

    @field_validator("registry_hosts")
    @classmethod
    def _hosts(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            hosts = [reference.host(h) for h in value.split(",") if h.strip()]
        except InvalidReferenceError as exc:
            raise ValueError(str(exc)) from None
        return ",".join(dict.fromkeys(hosts))

    @property
    def known_hosts(self) -> frozenset[str]:
        """The hosts of ``registry_hosts``, lower-cased; empty when unset."""
        return frozenset(self.registry_hosts.split(",")) if self.registry_hosts else frozenset()
