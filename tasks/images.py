"""``warmer.warm_image``: one image warmed by its reference, a task an image (``warmer warm
--enqueue``, the receiver's ``POST /warm``), so that Flower shows each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.base import RetryOnTrouble
from worker.celeryapp.names import WARM_IMAGE_TASK
from worker.core.images import warm_reference

if TYPE_CHECKING:
    from worker.celeryapp import WarmerCelery

__all__ = ["register_image_tasks"]


def register_image_tasks(app: WarmerCelery) -> None:
    """Register ``warmer.warm_image`` on ``app``."""

    # Store or cache trouble is tried again (RetryOnTrouble); no such tag, platform or host
    # fails at once, its reason in the task's result as Flower shows it.
    @app.task(shared=False, name=WARM_IMAGE_TASK, base=RetryOnTrouble)
    def warm_image(reference: str, platform: str | None = None) -> dict[str, Any]:
        hosts = app.settings.known_hosts
        return warm_reference(app.context.service(), reference, hosts, platform)
