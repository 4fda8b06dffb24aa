"""A schedule setting of beat's jobs: seconds, or the five fields of a crontab line."""

from __future__ import annotations

__all__ = ["parse_schedule"]


def parse_schedule(value: str) -> float | tuple[str, str, str, str, str]:
    """Seconds (``"3600"``), or the five fields of a crontab line (``"0 4 * * *"``)."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(
                "expected seconds or a crontab line of five fields (minute hour day month "
                f"weekday), not {value!r}"
            ) from None
        return (fields[0], fields[1], fields[2], fields[3], fields[4])
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {value!r}")
    return seconds
