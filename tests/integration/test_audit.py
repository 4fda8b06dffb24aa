"""The audit (``warmer fsck`` and the ``warmer.audit`` beat job): the cache checked against a
real store, each finding counted, repaired through the write rule, within a budget."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from bench.layout import LayoutWriter
from bench.s3_endpoint import client
from tasks import worker_app
from tests.integration.test_store_s3 import _buckets, _store, large_cache_then_deletes
from tests.support.redisdbs import shared_env
from tests.support.redisdump import dump
from worker.celeryapp.names import AUDIT_TASK
from worker.cli import app
from worker.config.settings import load_settings
from worker.core.audit import AuditSummary, Repair, _check, audit, audit_within_budget
from worker.core.blobservice import CachedBlobService
from worker.core.rewarm import rewarm
from worker.receiver.metrics import prometheus_text
from worker.state import StateStore
from worker.storage import paths


@pytest.fixture
def image(service: CachedBlobService, layout: LayoutWriter) -> dict[str, str]:
    manifest, blobs = layout.image("team/app", "v1", b"kept", b"unlinked", b"collected", b"bent")
    layout.image("other", "v1", b"kept")  # shares the "kept" layer
    rewarm(service)
    names = ("config", "kept", "unlinked", "collected", "bent")
    return {"manifest": manifest, **dict(zip(names, blobs, strict=True))}


def _break(layout: LayoutWriter, cache_redis: redis.Redis, image: dict[str, str]) -> None:
    # One of each finding: a blob delete, a garbage-collect, a size the store does not have.
    os.remove(layout.store.os_path(paths.layer_link("team/app", image["unlinked"])))
    os.remove(layout.store.os_path(paths.blob_data(image["collected"])))
    cache_redis.hset(f"blobs::{image['bent']}", "size", 1)


def test_each_finding_is_counted_and_nothing_changes_without_repair(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    image: dict[str, str],
) -> None:
    clean = audit(service.cache, service.store)
    assert (clean.found, clean.errors, clean.checked) == (0, 0, clean.members + clean.descriptors)
    _break(layout, cache_redis, image)
    before = dump(cache_redis)
    summary = audit(service.cache, service.store)
    assert summary.stale_members == 1  # unlinked: the data lives on
    assert summary.unstored_members == 1  # collected: no data at all
    assert summary.stale_descriptors == 1  # collected's global descriptor
    # bent: wrong in team/app's membership and in its global descriptor
    assert summary.wrong_descriptors == 2
    assert (summary.found, summary.repaired, summary.repositories) == (5, 0, 2)
    assert dump(cache_redis) == before


def test_repair_forgets_the_stale_and_rewrites_the_wrong_from_the_store(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    image: dict[str, str],
) -> None:
    _break(layout, cache_redis, image)
    cache_redis.hset(f"repository::other::blobs::{image['kept']}", "mediatype", "text/plain")
    summary = audit(service.cache, service.store, service.writer, repair=Repair.ALL)
    # bent's global descriptor is written again through team/app's membership, before the
    # descriptor walk could find it: 5, where a look without repair counts 6.
    assert summary.repaired == summary.found == 5
    again = audit(service.cache, service.store)
    assert (again.found, again.errors) == (0, 0), again
    cache = service.cache
    assert not cache.contains("team/app", image["unlinked"])
    assert not cache.contains("team/app", image["collected"])
    assert cache.stat(image["bent"], "team/app").size == service.store.stat(image["bent"]).size
    assert cache.stat(image["kept"], "other").media_type == "application/octet-stream"


def test_reconcile_is_the_audit_forgetting_only_the_stale(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    image: dict[str, str],
) -> None:
    _break(layout, cache_redis, image)
    audit(service.cache, service.store, repair=Repair.STALE)
    left = audit(service.cache, service.store)
    assert (left.stale_members, left.unstored_members, left.stale_descriptors) == (0, 0, 0)
    assert left.wrong_descriptors == 2  # wrong is not stale: reconcile leaves it


def test_a_sample_checks_at_most_its_size_and_finds_what_is_stale(
    service: CachedBlobService, layout: LayoutWriter, image: dict[str, str]
) -> None:
    for repository in ("team/app", "other"):  # every link gone: whatever is picked is stale
        for digest in layout.store.layers(repository):
            os.remove(layout.store.os_path(paths.layer_link(repository, digest)))
        for digest in layout.store.revisions(repository):
            os.remove(layout.store.os_path(paths.revision_link(repository, digest)))
    summary = audit(service.cache, service.store, sample=3)
    assert summary.sampled
    assert 1 <= summary.checked <= 3
    assert summary.members == 0 or summary.stale_members + summary.unstored_members > 0


def test_the_continuous_audit_spends_only_what_pulls_earned(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    state: StateStore,
    image: dict[str, str],
) -> None:
    _break(layout, cache_redis, image)
    budget = state.audit_budget

    def look(pulls: int, cap: float = 100) -> Any:
        return audit_within_budget(
            service.cache,
            service.store,
            service.writer,
            budget,
            pulls=pulls,
            per_1000_pulls=1.0,
            cap=cap,
        )

    assert look(50_000).checked == 0  # the first look: pulls before it earn nothing
    assert look(50_000).checked == 0  # no pulls since: the store is not read
    assert 1 <= look(53_000).checked <= 3  # 3,000 pulls: 3 requests (a filesystem: entries)
    assert 1 <= look(1_000_000, cap=2).checked <= 2  # however many pulls, the cap holds
    totals = budget.totals()
    assert totals["checked"] <= 5
    assert totals["requests"] >= totals["checked"]
    assert b"warmer_audit_checked_total" in prometheus_text(state)


def test_the_beat_task_records_its_look(
    redis_proc: Any, layout: LayoutWriter, state: StateStore, image: dict[str, str]
) -> None:
    urls = shared_env(redis_proc)
    settings = load_settings(
        redis_url=urls["WARMER_REDIS_URL"],
        state_url=urls["WARMER_STATE_URL"],
        storage_root=str(layout.store.root),
        audit_requests_per_minute=600,
    )
    worker = worker_app(settings)
    assert "audit" in worker.conf.beat_schedule
    state.record_pulls({"team/app": 1}, at=0)
    worker.tasks[AUDIT_TASK].apply().get()  # the first look earns nothing
    state.record_pulls({"team/app": 10_000}, at=0)
    result = worker.tasks[AUDIT_TASK].apply().get()
    assert result["checked"] >= 1
    assert result["found"] == 0
    assert state.last("audit") is not None


def _cli(redis_proc: Any, root: str, *args: str) -> Any:
    env = {**shared_env(redis_proc), "WARMER_STORAGE_ROOT": root}
    return CliRunner().invoke(app, ["fsck", *args], env=env)


def test_fsck_exits_0_clean_1_found_2_when_it_cannot_check(
    redis_proc: Any,
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    image: dict[str, str],
) -> None:
    root = str(layout.store.root)
    clean = _cli(redis_proc, root, "--json")
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output.strip().splitlines()[-1])["found"] == 0
    _break(layout, cache_redis, image)
    found = _cli(redis_proc, root)
    assert found.exit_code == 1, found.output
    assert "memberships whose link is gone" in found.output
    repaired = _cli(redis_proc, root, "--repair", "--json")
    assert repaired.exit_code == 1  # it found them (and repaired them)
    # bent counted once: team/app's repair wrote its global descriptor before the walk came
    assert json.loads(repaired.output.strip().splitlines()[-1])["repaired"] == 4
    assert _cli(redis_proc, root).exit_code == 0
    absent = _cli(redis_proc, root + "/absent")
    assert absent.exit_code == 2
    assert "error" in absent.output


def test_on_s3_a_whole_audit_lists_instead_of_asking_entry_by_entry(
    layout: LayoutWriter, s3_endpoint: str, bucket: str, cache_redis: redis.Redis
) -> None:
    cache, blobs, _, _ = large_cache_then_deletes(layout, s3_endpoint, bucket, cache_redis)
    cache_redis.hset(f"blobs::{blobs[100]}", "size", 1)
    summary = audit(cache, _store(s3_endpoint, bucket))
    assert (summary.stale_members, summary.unstored_members) == (2, 3)
    assert (summary.stale_descriptors, summary.wrong_descriptors) == (3, 2)
    # A GET and a HEAD an entry would be 1,200 requests: the listings are a few.
    assert summary.store_requests <= 12, summary
    sampled = audit(cache, _store(s3_endpoint, bucket), sample=5)
    assert 1 <= sampled.checked <= 5
    assert sampled.store_requests <= 2 * 5 + 1  # a link and a HEAD an entry, and the check
    # A budget of 5 requests: the store's check, then entries of two requests (a membership)
    # or one (a global descriptor) until it is spent: four entries at most, never ten.
    limited = audit(cache, _store(s3_endpoint, bucket), sample=10, budget=5)
    assert 1 <= limited.checked <= 4, limited
    assert limited.store_requests <= 5 + 2, limited
    # The check alone spends a budget of one: no entry is asked for.
    spent = audit(cache, _store(s3_endpoint, bucket), sample=10, budget=1)
    assert (spent.checked, spent.store_requests) == (0, 1), spent


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"audit-test-{next(_buckets)}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


def test_repairing_a_member_whose_data_is_gone_drops_its_global_descriptor_too(
    service: CachedBlobService,
    layout: LayoutWriter,
    cache_redis: redis.Redis,
    image: dict[str, str],
) -> None:
    # As a sample meets it (2.x GC: the link stays, the data goes), with no descriptor walk after.
    collected = image["collected"]
    os.remove(layout.store.os_path(paths.blob_data(collected)))
    summary = AuditSummary()
    group = ("team/app", [collected])
    _check(service.cache, service.writer, group, summary, repair=Repair.ALL, seen=None)
    assert summary.unstored_members == summary.stale_descriptors == 1
    assert summary.repaired == 2  # the membership, and the global descriptor
    assert not cache_redis.exists(f"blobs::{collected}")  # the registry would answer from it


def test_two_looks_at_once_never_spend_the_same_credit(state: StateStore) -> None:
    budget = state.audit_budget
    assert budget.grant(1_000, 1.0, cap=100) == 0  # the first look: nothing earned
    assert budget.grant(11_000, 1.0, cap=100) == 10
    assert budget.grant(11_000, 1.0, cap=100) == 0  # taken by the look before, not spent yet
    budget.spend(10, 4, {"checked": 4})  # that look left 6
    assert budget.grant(11_000, 1.0, cap=100) == 6
