"""The warmer's process helpers live in the package (``make demo`` uses them too)."""

from worker.demo.services import warmer_process, webhook_ready

__all__ = ["warmer_process", "webhook_ready"]
