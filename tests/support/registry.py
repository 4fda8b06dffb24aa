"""The real registry helpers live in the package (``make demo`` uses them too)."""

from worker.demo.registry import Registry, free_port, running_registry, tools_missing, wait_for

__all__ = ["Registry", "free_port", "running_registry", "tools_missing", "wait_for"]
