"""Merges of wanted digests with an S3 listing: every size or link wanted found, in few
requests, the folder listed whole when a batch's digests cover it (so the next batches need no
request), and nothing hidden by keys of other kinds.

The merges take the function that lists one page; here it is a sorted list of keys answered as
S3 answers ``ListObjectsV2`` (Prefix, StartAfter, 1,000 keys a page). The same functions over
moto's server are in tests/integration/test_store_s3.py.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from worker.errors import StoreError
from worker.storage import s3merge
from worker.storage.s3listing import prefetched
from worker.storage.s3merge import blob_sizes, links_among

BLOBS = "root/docker/registry/v2/blobs/"
BASE = f"{BLOBS}sha256/"
LINKS = "root/docker/registry/v2/repositories/team/app/_layers/"


def _hexes(count: int, algorithm: str = "sha256") -> list[str]:
    digest = getattr(hashlib, algorithm)
    return sorted(digest(f"blob {i}".encode()).hexdigest() for i in range(count))


def _size(key: str) -> int:
    return len(key) * 7 % 1000


class Listing:
    """Keys answered page by page as S3 does, counting requests and the threads that sent them."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys)
        self.requests = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, *, Prefix: str, StartAfter: str = "") -> dict[str, Any]:
        with self._lock:
            self.requests += 1
            self.threads.add(threading.get_ident())
        start = bisect.bisect_right(self.keys, max(Prefix, StartAfter))
        page: list[str] = []
        for key in self.keys[start:]:
            if not key.startswith(Prefix) or len(page) == 1001:
                break
            page.append(key)
        contents = [{"Key": k, "Size": _size(k)} for k in page[:1000]]
        return {"Contents": contents, "IsTruncated": len(page) > 1000}


def _blob_keys(hexes: list[str], base: str = BASE) -> list[str]:
    return [f"{base}{h[:2]}/{h}/data" for h in hexes]


def _sizes(listing: Listing, wanted: list[str], memo: dict[str, int], **kw: Any) -> None:
    blob_sizes(listing, BASE, "sha256", sorted(wanted), memo, **kw)


def _expected(hexes: list[str]) -> dict[str, int]:
    return {f"sha256:{h}": _size(k) for h, k in zip(hexes, _blob_keys(hexes), strict=True)}


@pytest.mark.parametrize("parallel", [False, True])
def test_a_batch_across_a_large_folder_lists_it_once_whole(parallel: bool) -> None:
    hexes = _hexes(20_000)
    listing = Listing(_blob_keys(hexes))
    batches = [random.Random(n).sample(hexes, 1000) for n in range(3)]
    memo: dict[str, int] = {}
    with ThreadPoolExecutor(16) as pool:
        _sizes(listing, batches[0], memo, **({"pool": pool} if parallel else {}))
    # Its 1,000 digests are spread over the whole folder: so is the listing, gaps included.
    assert memo == _expected(hexes)
    first = listing.requests
    assert first <= 20 + 16 + 1  # its pages, one more a hex digit listed apart, the first
    for batch in batches[1:]:
        _sizes(listing, [h for h in batch if f"sha256:{h}" not in memo], memo)
    assert listing.requests == first  # the next batches found every size in the memo
    assert (len(listing.threads) > 1) is parallel


def test_a_few_digests_far_apart_cost_a_request_each_not_the_folder() -> None:
    hexes = _hexes(20_000)
    listing = Listing(_blob_keys(hexes))
    wanted = hexes[100::5000]  # 4 digests, 5,000 keys apart
    memo: dict[str, int] = {}
    _sizes(listing, wanted, memo)
    assert all(f"sha256:{h}" in memo for h in wanted)
    assert listing.requests <= 1 + len(wanted)  # the first page, then a seek to each


def test_a_small_folder_is_one_request() -> None:
    hexes = _hexes(300)
    listing = Listing(_blob_keys(hexes))
    memo: dict[str, int] = {}
    _sizes(listing, hexes[::7], memo)
    assert listing.requests == 1
    assert memo == _expected(hexes)


def test_a_digest_not_in_the_store_gets_no_size() -> None:
    hexes = _hexes(5_000)
    listing = Listing(_blob_keys(hexes))
    absent = hashlib.sha256(b"not stored").hexdigest()
    memo: dict[str, int] = {}
    _sizes(listing, [absent, *hexes[::100]], memo)
    assert f"sha256:{absent}" not in memo
    assert all(f"sha256:{h}" in memo for h in hexes[::100])


def test_sha512_blobs_are_merged_as_sha256_ones() -> None:
    hexes = _hexes(3_000, "sha512")
    listing = Listing(_blob_keys(hexes, f"{BLOBS}sha512/"))
    memo: dict[str, int] = {}
    blob_sizes(listing, f"{BLOBS}sha512/", "sha512", hexes[::50], memo)
    assert all(f"sha512:{h}" in memo for h in hexes[::50])


def test_keys_of_other_kinds_hide_no_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys beside each wanted one that sort just before it but spell no digest of their own:
    # a stray suffix, a blob under the wrong two-digit folder, a digest too short.
    monkeypatch.setattr(s3merge, "SEEN_LIMIT", 0)  # only what is wanted goes into the memo
    hexes = _hexes(3_000)
    wanted = hexes[5::30]
    strays = [f"{BASE}{h[:2]}/{h}.bak/data" for h in wanted]
    strays += [f"{BASE}{h[:2]}/{h}-partial/data" for h in wanted]
    strays += [f"{BASE}{h[:2]}/{h[:-1]}/data" for h in wanted]
    listing = Listing(_blob_keys(hexes) + strays)
    memo: dict[str, int] = {}
    _sizes(listing, wanted, memo)
    assert memo == _expected(wanted)
    links = Listing(
        [f"{LINKS}sha256/{h}/link" for h in hexes]
        + [f"{LINKS}sha256/{h}.bak/link" for h in wanted]
        + [f"{LINKS}sha256/{h}/link.tmp" for h in wanted]
    )
    found = links_among(links, LINKS, [f"sha256:{h}" for h in wanted], pool=None)
    assert found == {f"sha256:{h}" for h in wanted}


def test_a_seek_never_asks_again_for_a_page_it_had() -> None:
    # An absent digest followed by more than a page of keys of another kind: a seek back to
    # it would list the same page for ever.
    hexes = _hexes(20_000)
    absent = "8" + "0" * 63
    junk = [f"{BASE}80/{absent[:-4]}{i:04x}/data.partial" for i in range(1_200)]
    listing = Listing(_blob_keys(hexes) + junk)
    wanted = [absent, *[h for h in hexes if h > absent][1000:1003]]
    memo: dict[str, int] = {}
    _sizes(listing, [hexes[0], *wanted], memo)
    assert f"sha256:{absent}" not in memo
    assert all(f"sha256:{h}" in memo for h in wanted[1:])
    assert listing.requests <= 10


def test_links_among_a_large_folder_in_parallel() -> None:
    hexes = _hexes(8_000)
    listing = Listing([f"{LINKS}sha256/{h}/link" for h in hexes])
    wanted = [f"sha256:{h}" for h in random.Random(1).sample(hexes, 1000)]
    gone = [f"sha256:{h}" for h in _hexes(8_010)[-10:] if h not in set(hexes)]
    with ThreadPoolExecutor(16) as pool:
        found = links_among(listing, LINKS, wanted + gone, pool=pool)
    assert found == set(wanted)
    assert listing.requests <= 8 + 16 + 1


def test_a_listing_out_of_key_order_is_an_error_not_an_answer() -> None:
    hexes = _hexes(100)
    listing = Listing(_blob_keys(hexes))
    listing.keys.reverse()  # as an S3 Express directory bucket may list
    with pytest.raises(StoreError, match="out of key order"):
        _sizes(listing, hexes[:3], {})


def test_a_listers_error_is_the_merges_and_no_lister_goes_on_after_it() -> None:
    hexes = _hexes(20_000)
    inner = Listing(_blob_keys(hexes))

    def failing(**kw: Any) -> dict[str, Any]:
        if kw["Prefix"].endswith("/sha256/7"):
            raise StoreError("cannot list: AccessDenied")
        return inner(**kw)

    with ThreadPoolExecutor(16) as pool:
        with pytest.raises(StoreError, match="AccessDenied"):
            blob_sizes(failing, BASE, "sha256", random.Random(2).sample(hexes, 1000), {}, pool=pool)
        after = inner.requests
        pool.submit(lambda: None).result()  # anything still queued would have run by now
    assert inner.requests == after


def test_a_lister_that_fails_with_any_error_fails_the_walk_and_never_hangs_it() -> None:
    def pages(fail: bool) -> Iterator[list[str]]:
        yield ["a"]
        if fail:
            raise KeyError("Contents")  # a bug, or a reply botocore could not parse
        yield ["b"]

    with ThreadPoolExecutor(2) as pool:
        walk = prefetched(pool, [pages(False), pages(True)])
        with pytest.raises(KeyError, match="Contents"):
            list(walk)
