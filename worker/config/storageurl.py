"""The registry's storage as one URL (``WARMER_STORAGE_URL``): which driver, and where.

::

    file:///PATH                                      the filesystem driver's rootdirectory
    s3://[ACCESS_KEY:SECRET_KEY@]BUCKET[/ROOTDIRECTORY][?OPTIONS]

S3 options, each as the registry's ``storage.s3`` section names it: ``region``, ``endpoint``
(``regionendpoint``: an S3-compatible store such as MinIO or Ceph), ``path_style``
(``forcepathstyle``; path-style is the default when an endpoint is given) and ``verify``
(``false`` for ``skipverify``). Credentials, region and endpoint left out come from the standard
AWS chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL_S3``, profiles, instance and pod roles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = ["StorageTarget", "file_url", "parse_storage_url", "s3_url"]

_OPTIONS: Final = ("region", "endpoint", "path_style", "verify")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


@dataclass(frozen=True)
class StorageTarget:
    """What a storage URL names: the driver (``filesystem`` or ``s3``) and its parameters."""

    driver: str
    #: The filesystem's rootdirectory, or the S3 key prefix (rootdirectory, no leading slash).
    root: str
    bucket: str = ""
    region: str | None = None
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    path_style: bool | None = None
    verify: bool = True


def parse_storage_url(url: str) -> StorageTarget:
    """Read a storage URL (see the module); raise ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"a file URL names an absolute path: file:///PATH, not {url!r}")
        return StorageTarget("filesystem", unquote(parts.path))
    if parts.scheme != "s3":
        raise ValueError(
            f"storage URL scheme must be file or s3, not {parts.scheme or 'none'!r} "
            "(gcs and azure are not read by the warmer)"
        )
    userinfo, _, bucket = parts.netloc.rpartition("@")
    if not bucket:
        raise ValueError("an s3 URL names its bucket: s3://BUCKET/ROOTDIRECTORY")
    access, _, secret = userinfo.partition(":")
    if bool(access) != bool(secret):
        raise ValueError("an s3 URL gives both ACCESS_KEY:SECRET_KEY@ or neither")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise ValueError(f"unknown option {sorted(unknown)[0]!r} in the s3 URL")
    return StorageTarget(
        "s3",
        unquote(parts.path).strip("/"),
        bucket=bucket,
        region=options.get("region") or None,
        endpoint=options.get("endpoint") or None,
        access_key=unquote(access) or None,
        secret_key=unquote(secret) or None,
        path_style=_flag(options, "path_style"),
        verify=_flag(options, "verify") is not False,
    )


def _flag(options: dict[str, str], name: str) -> bool | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"option {name} of the s3 URL is true or false, not {value!r}")


def file_url(path: str) -> str:
    """The URL of a filesystem root."""
    return "file://" + quote(path)


def s3_url(
    bucket: str,
    rootdirectory: str = "",
    *,
    region: str | None = None,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    path_style: bool | None = None,
    verify: bool = True,
) -> str:
    """The URL of an S3 store, from the registry's ``storage.s3`` parameters."""
    userinfo = ""
    if access_key and secret_key:
        userinfo = f"{quote(access_key, safe='')}:{quote(secret_key, safe='')}@"
    options: dict[str, str] = {}
    if region:
        options["region"] = region
    if endpoint:
        options["endpoint"] = endpoint
    if path_style is not None:
        options["path_style"] = str(path_style).lower()
    if not verify:
        options["verify"] = "false"
    query = f"?{urlencode(options)}" if options else ""
    return f"s3://{userinfo}{bucket}/{quote(rootdirectory.strip('/'))}{query}"
