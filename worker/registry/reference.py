"""Repository names and digests: distribution's grammar, checked before any path or key is built.

Everything that reaches :mod:`worker.storage` or :mod:`worker.cache` from outside passes through
:func:`repository_name` or :func:`digest` first; both return the value unchanged or raise a
subclass of :class:`~worker.errors.InvalidReferenceError` that says what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from worker.errors import (
    ForeignRegistryError,
    InvalidDigestError,
    InvalidReferenceError,
    InvalidRepositoryNameError,
)

__all__ = [
    "DEFAULT_TAG",
    "DIGEST_ALGORITHMS",
    "HEX_DIGITS",
    "MAX_REFERENCE",
    "MAX_REPOSITORY_NAME",
    "ImageReference",
    "digest",
    "host",
    "image_reference",
    "repository_name",
    "repository_prefix",
    "split_digest",
    "tag",
]

#: Longest repository name distribution accepts.
MAX_REPOSITORY_NAME: Final = 255
#: Longest image reference read: a host, the longest name, tag and digest fit well within.
MAX_REFERENCE: Final = 1024
#: The tag of a reference that names neither a tag nor a digest, as clients take it.
DEFAULT_TAG: Final = "latest"

#: Hex length of each accepted digest algorithm; anything else is refused.
DIGEST_ALGORITHMS: Final = {"sha256": 64, "sha512": 128}
#: The digits a digest's hex is spelled with (lower case only, as distribution writes them).
HEX_DIGITS: Final = "0123456789abcdef"

# distribution/reference: path-component = alpha-numeric (separator alpha-numeric)*,
# separator = [._] | __ | [-]*. No component can be "." or "..", so no name can climb a path.
# "[-]*" admits an empty separator, which makes the grammar ambiguous: harmless in Go's linear
# RE2, exponential backtracking in Python's re ("aaaa...a!" never finishes). "-+" spells the
# same language (an empty separator only splits one alphanumeric run in two) unambiguously.
_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMOTE_RE: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# The optional first component, a registry host: dot-separated labels of letters, digits and
# inner dashes, or a bracketed IPv6 address (distribution 3.x), then an optional ":port". The
# grammar allows capitals in a host; the registry refuses them ("repository name must be
# lowercase"), and so does the warmer. No label is "." or "..", no "/" inside; each label ends
# at a "." or ":", so the regex stays linear.
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_DOMAIN_RE: Final = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-f0-9:]+\])(?::[0-9]+)?")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE: Final = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


def repository_name(name: object) -> str:
    """Return ``name`` if it is a valid repository name, else raise InvalidRepositoryNameError."""
    if not isinstance(name, str) or not name:
        raise InvalidRepositoryNameError("repository name is empty")
    if len(name) > MAX_REPOSITORY_NAME:
        raise InvalidRepositoryNameError(
            f"repository name is {len(name)} characters long, over {MAX_REPOSITORY_NAME}"
        )
    if _REMOTE_RE.fullmatch(name) is None and not _with_domain(name):
        raise InvalidRepositoryNameError(
            f"invalid repository name {name!r}: components of lowercase letters and digits, "
            "separated by '.', '_', '__' or dashes, joined by '/', optionally after a first "
            "HOST[:PORT]/ component"
        )
    return name


def repository_prefix(prefix: str) -> bool:
    """True when ``prefix`` can begin a repository name at a '/': a storage walk descends
    through ``localhost:5000`` on its way to ``localhost:5000/app``."""
    first, _, rest = prefix.partition("/")
    if not rest:
        return _DOMAIN_RE.fullmatch(first) is not None or _REMOTE_RE.fullmatch(first) is not None
    # Past the first "/", every prefix of a valid name is a valid name itself.
    try:
        repository_name(prefix)
    except InvalidRepositoryNameError:
        return False
    return True


def _with_domain(name: str) -> bool:
    # A domain never holds a "/": the first one ends it, so there is one way to split.
    domain, slash, remote = name.partition("/")
    return (
        bool(slash)
        and _DOMAIN_RE.fullmatch(domain) is not None
        and _REMOTE_RE.fullmatch(remote) is not None
    )


def digest(value: object) -> str:
    """Return ``value`` if it is a valid digest, else raise InvalidDigestError."""
    if not isinstance(value, str) or _DIGEST_RE.fullmatch(value) is None:
        raise InvalidDigestError(
            f"invalid digest {value!r}: expected sha256:<64 lowercase hex> or "
            "sha512:<128 lowercase hex>"
        )
    return value


def split_digest(value: str) -> tuple[str, str]:
    """Validate ``value`` and return its ``(algorithm, hex)`` parts."""
    algorithm, _, hex_ = digest(value).partition(":")
    return algorithm, hex_


def tag(value: object) -> str:
    """Return ``value`` if it is a valid tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``), else raise."""
    if not isinstance(value, str) or _TAG_RE.fullmatch(value) is None:
        raise InvalidReferenceError(f"invalid tag {value!r}")
    return value


def host(value: str) -> str:
    """Return ``value`` lower-cased if it is a registry host, ``host[:port]`` (a domain name,
    an IPv4 address or a bracketed IPv6 one), else raise InvalidReferenceError."""
    lowered = value.strip().lower()
    if _DOMAIN_RE.fullmatch(lowered) is None:
        raise InvalidReferenceError(f"invalid registry host {value!r}: expected HOST[:PORT]")
    return lowered


@dataclass(frozen=True, slots=True)
class ImageReference:
    """An image named as clients name it: ``[host[:port]/]repository[:tag][@digest]``.

    ``host`` is None when the reference names none (this registry). A digest, when given, is
    what is pulled (the tag is then only shown, as clients do); neither means ``latest``.
    """

    text: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    host: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What names the same image whatever the spelling: the repository, and the digest
        when given, else the tag (``latest`` when none)."""
        return self.repository, self.digest or self.tag or DEFAULT_TAG


def image_reference(text: object, hosts: Collection[str] = ()) -> ImageReference:
    """Parse an image reference by distribution's grammar (``reference.Parse``), the first
    component taken as a host as clients take it (it holds a "." or a ":", or is
    ``localhost``). A host must be one of ``hosts`` (lower-cased), the names under which
    clients reach this registry: ForeignRegistryError otherwise. Every other fault is an
    InvalidReferenceError that names it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReferenceError("image reference is empty")
    if len(text) > MAX_REFERENCE:
        raise InvalidReferenceError(
            f"image reference is {len(text)} characters long, over {MAX_REFERENCE}"
        )
    value = text.strip()
    name, at, digest_text = value.partition("@")
    found_digest = None
    if at:
        try:
            found_digest = digest(digest_text)
        except InvalidDigestError as exc:
            raise InvalidReferenceError(f"image reference {value!r}: {exc}") from None
    slash = name.rfind("/")
    colon = name.rfind(":")
    found_tag = None
    if colon > slash:
        name, found_tag = name[:colon], name[colon + 1 :]
        if _TAG_RE.fullmatch(found_tag) is None:
            raise InvalidReferenceError(f"image reference {value!r}: invalid tag {found_tag!r}")
    first, sep, rest = name.partition("/")
    found_host = None
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        found_host, name = host(first), rest
    if name != name.lower():
        raise InvalidReferenceError(f"image reference {value!r}: repository name must be lowercase")
    if len(name) > MAX_REPOSITORY_NAME or _REMOTE_RE.fullmatch(name) is None:
        raise InvalidReferenceError(
            f"image reference {value!r}: invalid repository name {name!r} (components of "
            "lowercase letters and digits, separated by '.', '_', '__' or dashes, joined by "
            f"'/', at most {MAX_REPOSITORY_NAME} characters)"
        )
    if found_host is not None and found_host not in hosts:
        known = ", ".join(sorted(hosts)) or "none configured"
        raise ForeignRegistryError(
            f"image reference {value!r} names registry {found_host}, not this one "
            f"(WARMER_REGISTRY_HOSTS: {known})"
        )
    return ImageReference(value, name, found_tag, found_digest, found_host)
