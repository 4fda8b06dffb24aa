"""Variables of the warmer's prefix that no setting reads: a misspelling (``WARMER_REDIS_URLL``)
would otherwise be ignored without a word, and the default used instead."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Final

__all__ = ["NOT_SETTINGS", "unknown_variables"]

#: Variables of the prefix that are no setting: the test suite's own switches, which no
#: warmer reads (``.ci/run`` and ``make test-model`` set them for a whole run, so every warmer
#: started then sees them).
NOT_SETTINGS: Final = frozenset(
    {
        "WARMER_REQUIRE_E2E",
        "WARMER_TEST_REGISTRY_V3",
        "WARMER_MODEL_EXAMPLES",
        "WARMER_MODEL_WRITERS",
        "WARMER_MODEL_VERSIONS",
    }
)


def unknown_variables(environ: Mapping[str, str], known: Collection[str], prefix: str) -> list[str]:
    """A line for each variable of ``environ`` with ``prefix`` that is not in ``known``, naming
    the nearest known one when one is near."""
    # Compared without the prefix, which every name shares: WARMER_FOO is near nothing.
    stems = {name.removeprefix(prefix): name for name in known}
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper in known or upper in NOT_SETTINGS:
            continue
        nearest = difflib.get_close_matches(upper.removeprefix(prefix), stems, n=1, cutoff=0.75)
        hint = (
            f": did you mean {stems[nearest[0]]}?"
            if nearest
            else " (docs/configuration.md lists the settings)"
        )
        lines.append(f"{name} is not a setting of the warmer, and is ignored{hint}")
    return lines
