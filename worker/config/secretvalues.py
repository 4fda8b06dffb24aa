"""The secrets among the settings: which token a registry can send, which value is only an
example's placeholder, and the one place credentials are hidden for logs and messages: in a URL
(:func:`redact_url`) or in any text, such as an error's (:func:`redact_text`)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["check_token", "is_placeholder", "redact_text", "redact_url"]

_TOKEN_CHARACTERS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)
# What examples and older versions put where a secret belongs.
_PLACEHOLDERS: Final = ("change-me", "changeme", "__warmer_webhook_token__")
# "scheme://user:password@" in free text, wherever it is.
_CREDENTIALS_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def check_token(token: str) -> str:
    """``token`` if the registry can send it as is, else ValueError naming what cannot work.

    It travels as ``Authorization: [Bearer <token>]`` in the registry's YAML config (compose
    puts it there through an environment variable, unquoted): RFC 6750's token characters
    (letters, digits, ``-._~+/``, trailing ``=``) are all that YAML, the header and compose
    leave as they are. The placeholders of the examples are refused too.
    """
    bad = sorted({c for c in token if c not in _TOKEN_CHARACTERS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(
            f"the token holds characters a registry cannot send as a Bearer token: {shown}; "
            "use letters, digits and - . _ ~ + / (e.g. from: openssl rand -hex 32)"
        )
    if "=" in token.rstrip("="):
        raise ValueError("the token may end with '=' but hold none before its end")
    if is_placeholder(token):
        raise ValueError("the token is the example's placeholder: set a secret of your own")
    return token


def is_placeholder(secret: str) -> bool:
    """True for what examples and older versions put where a secret belongs (``change-me``)."""
    return any(p in secret.lower() for p in _PLACEHOLDERS)


def redact_url(url: str) -> str:
    """``url`` with every password (its own, a Sentinel's) replaced by ``***``, for logs.

    Read as text, not parsed: a password with an unencoded ``/`` or ``#`` is not where a URL
    parser looks for it, and must be hidden all the same.
    """
    scheme, found, rest = url.partition("://")
    if not found:
        return url
    address, question, query = rest.partition("?")
    userinfo, at, hosts = address.rpartition("@")
    if at and ":" in userinfo:
        address = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = re.sub(r"(password=)[^&]*", r"\1***", query)
    return f"{scheme}://{address}{question}{query}"


def redact_text(text: str) -> str:
    """``text`` (an error's message, say) with the credentials of every URL in it replaced by
    ``***``, for logs.

    Where a URL ends in free text is a guess, so the whole ``user:password@`` goes, not only
    the password as :func:`redact_url` does with a URL it is given whole.
    """
    return _CREDENTIALS_RE.sub(r"\1***@", text)
