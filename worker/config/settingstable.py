"""The settings table of docs/configuration.md, made from the settings' own fields (a test keeps
the page and the fields the same)."""

from __future__ import annotations

from worker.config.imagesettings import ImageSettings
from worker.config.jobsettings import JobSettings
from worker.config.logformat import LogSettings
from worker.config.settings import Settings, env_name

__all__ = ["settings_table"]


def settings_table() -> str:
    """The table, in Markdown: every setting's variable, default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    # The connections first; the settings of the parts (the jobs', the logs', the images':
    # inherited, so listed first) last.
    parts = (
        JobSettings.model_fields.keys()
        | LogSettings.model_fields.keys()
        | ImageSettings.model_fields.keys()
    )
    fields = sorted(Settings.model_fields.items(), key=lambda item: item[0] in parts)
    for name, field in fields:
        if field.exclude:
            continue
        default = field.default
        shown = "(unset)" if default is None else f"`{getattr(default, 'value', default)}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)
