"""Blob sizes from a listing of ``blobs/``: every size wanted found, in few requests, and the
folder listed whole when a batch's digests cover it, so the next batches need no request.

``blob_sizes`` takes the function that lists one page; here it is a sorted list of keys
answered as S3 answers ``ListObjectsV2`` (Prefix, StartAfter, 1,000 keys a page). The same
function over moto's server is in tests/test_store_s3.py.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from worker.storage.s3merge import blob_sizes

BASE = "root/docker/registry/v2/blobs/sha256/"


class Listing:
    """A folder of blob data keys answered page by page, counting requests and threads."""

    def __init__(self, count: int) -> None:
        self.hexes = sorted(hashlib.sha256(f"blob {i}".encode()).hexdigest() for i in range(count))
        self.keys = [f"{BASE}{h[:2]}/{h}/data" for h in self.hexes]
        self.requests = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def size(self, hex_: str) -> int:
        return int(hex_[:4], 16)

    def __call__(self, *, Prefix: str, StartAfter: str = "") -> dict[str, Any]:
        with self._lock:
            self.requests += 1
            self.threads.add(threading.get_ident())
        start = bisect.bisect_right(self.keys, max(Prefix, StartAfter) if StartAfter else Prefix)
        page: list[str] = []
        for key in self.keys[start:]:
            if not key.startswith(Prefix) or len(page) == 1001:
                break
            page.append(key)
        contents = [{"Key": k, "Size": self.size(k[len(BASE) + 3 :][:64])} for k in page[:1000]]
        return {"Contents": contents, "IsTruncated": len(page) > 1000}


def _sizes(listing: Listing, wanted: list[str], memo: dict[str, int], **kw: Any) -> None:
    blob_sizes(listing, BASE, "sha256", sorted(wanted), memo, **kw)


@pytest.mark.parametrize("parallel", [False, True])
def test_a_batch_across_a_large_folder_lists_it_once_whole(parallel: bool) -> None:
    listing = Listing(20_000)
    batches = [random.Random(n).sample(listing.hexes, 1000) for n in range(3)]
    memo: dict[str, int] = {}
    with ThreadPoolExecutor(16) as pool:
        _sizes(listing, batches[0], memo, **({"pool": pool} if parallel else {}))
    assert all(memo[f"sha256:{h}"] == listing.size(h) for h in batches[0])
    # Its 1,000 digests are spread over the whole folder: so is the listing, gaps included.
    assert len(memo) == 20_000
    first = listing.requests
    assert first <= 20 + 16 + 1  # its pages, one more a hex digit listed apart, the first
    for batch in batches[1:]:
        _sizes(listing, [h for h in batch if f"sha256:{h}" not in memo], memo)
    assert listing.requests == first  # the next batches found every size in the memo
    assert (len(listing.threads) > 1) is parallel


def test_a_few_digests_far_apart_cost_a_request_each_not_the_folder() -> None:
    listing = Listing(20_000)
    wanted = listing.hexes[100::5000]  # 4 digests, 5,000 keys apart
    memo: dict[str, int] = {}
    _sizes(listing, wanted, memo)
    assert all(f"sha256:{h}" in memo for h in wanted)
    assert listing.requests <= 1 + len(wanted)  # the first page, then a seek to each


def test_a_small_folder_is_one_request() -> None:
    listing = Listing(300)
    memo: dict[str, int] = {}
    _sizes(listing, listing.hexes[::7], memo)
    assert listing.requests == 1
    assert len(memo) == 300


def test_a_digest_not_in_the_store_gets_no_size() -> None:
    listing = Listing(5_000)
    absent = hashlib.sha256(b"not stored").hexdigest()
    memo: dict[str, int] = {}
    _sizes(listing, [absent, *listing.hexes[::100]], memo)
    assert f"sha256:{absent}" not in memo
    assert all(f"sha256:{h}" in memo for h in listing.hexes[::100])
