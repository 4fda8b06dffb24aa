"""One write path: outside worker/core/writes.py (and the cache itself), nothing in the product
calls the cache's write methods, so that every membership and descriptor written is re-checked
against the store (a delete always wins)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from worker.cache import BlobDescriptorCache

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ALLOWED = {ROOT / "worker" / "core" / "writes.py"}


def _write_methods() -> set[str]:
    # Every public method of the cache that writes: add and set_* (clears may come from anywhere).
    names = {n for n, _ in inspect.getmembers(BlobDescriptorCache, inspect.isfunction)}
    writes = {n for n in names if n == "add" or n.startswith("set_")}
    assert {"add", "set_descriptor", "set_descriptors", "set_descriptor_groups"} <= writes
    return writes


def _calls(path: Path, methods: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, target = node.func.attr, ast.unparse(node.func.value)
        # ``add`` is common (sets): it counts on something that names a cache.
        if name in methods and (name != "add" or "cache" in target.lower()):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {target}.{name}(...)")
    return found


def test_only_the_write_path_calls_the_caches_write_methods() -> None:
    methods = _write_methods()
    sources = [*(ROOT / "worker").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]
    outside = [
        call
        for path in sources
        if path not in ALLOWED and (ROOT / "worker" / "cache") not in path.parents
        for call in _calls(path, methods)
    ]
    assert outside == [], "cache writes outside worker/core/writes.py:\n" + "\n".join(outside)


def test_the_check_sees_a_write_outside_the_path(tmp_path: Path) -> None:
    rogue = ROOT / "worker" / "core" / "writes.py"  # a file known to call them
    assert _calls(rogue, _write_methods()), "the scan finds the write path's own calls"
