"""The run records store on SQLite and PostgreSQL: runs, their steps, and schedule leases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard import NotFoundError
from shipyard.datasets.run_records import (
    CACHED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Runs,
    ScheduleStates,
)
from shipyard.store import Database


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A fresh, migrated database of each backend."""
    opened = Database.open(database_url)
    try:
        yield opened
    finally:
        opened.dispose()


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


def test_a_run_is_recorded_step_by_step_and_read_back(database: Database, tmp_path: Path) -> None:
    runs = Runs(database)
    for run_id, pipeline in (("20260302T060000-aaaaaa", "churn"), ("20260302T070000-bbbbbb", "x")):
        runs.create(
            run_id=run_id,
            pipeline=pipeline,
            steps=["load", "train"],
            params={"n": 1},
            trigger="manual",
            actor="ann",
            log_root=tmp_path / run_id,
        )
    first = runs.get("20260302T060000-aaaaaa")
    assert first.status == RUNNING
    assert first.finished_at is None
    assert [(s.step, s.status) for s in first.steps] == [("load", PENDING), ("train", PENDING)]
    assert first.step("train").log_dir == str(tmp_path / first.id / "train")

    done = {"model": {"kind": "artifact", "digest": "d1"}}
    runs.update_step(first.id, "load", status=SUCCEEDED, cache_key="k1", outputs={}, attempts=1)
    runs.update_step(first.id, "train", status=FAILED, error="boom")
    runs.finish(first.id, FAILED, "train failed")
    runs.update_step("20260302T070000-bbbbbb", "train", status=CACHED, cache_key="k2",
                     outputs=done, finished_at=at(8))  # fmt: skip

    first = runs.get(first.id)
    assert first.status == FAILED
    assert first.error == "train failed"
    assert first.finished_at is not None
    assert [s.step for s in first.failed_steps] == ["train"]
    assert [r.pipeline for r in runs.list(pipeline="churn")] == ["churn"]
    assert len(runs.list()) == 2
    with pytest.raises(NotFoundError, match="runs list"):
        runs.get("nope")

    assert runs.cached_outputs("k1") == [{}]
    assert runs.cached_outputs("k2") == [done]
    assert runs.cached_outputs("missing") == []
    assert runs.recent_outputs(10, pipeline="x", step="train") == [done]
    assert runs.recent_outputs(10, pipeline="churn", step="train") == []  # it failed
    assert len(runs.recent_outputs(10)) == 2  # every done step run of every pipeline


def due_now(stored: datetime) -> list[datetime]:
    """Every due fire time fires."""
    return [stored]


def test_a_schedule_lease_is_held_renewed_and_released(database: Database) -> None:
    states = ScheduleStates(database)

    # First sight: the next fire time is recorded, nothing is due yet.
    first = states.claim("nightly", owner="a", now=at(5), expires_at=at(5, 5),
                         next_fire_at=at(6), due=due_now)  # fmt: skip
    assert first is None
    claim = states.claim("nightly", owner="a", now=at(6), expires_at=at(6, 5),
                         next_fire_at=at(7), due=due_now)  # fmt: skip
    assert claim is not None
    assert claim.times == [at(6)]
    assert claim.taken_from is None
    # A live lease is respected.
    assert states.claim("nightly", owner="b", now=at(6, 1), expires_at=at(6, 6),
                        next_fire_at=at(7), due=due_now) is None  # fmt: skip
    assert states.renew(["nightly"], owner="b", expires_at=at(9)) == 0  # not b's
    assert states.renew(["nightly"], owner="a", expires_at=at(6, 10)) == 1
    assert states.advance("nightly", owner="b", last_fire_at=at(6), next_fire_at=at(7)) is False
    assert states.advance("nightly", owner="a", last_fire_at=at(6), next_fire_at=at(7)) is True
    # An expired lease is taken over once the next fire time comes.
    taken = states.claim("nightly", owner="b", now=at(7), expires_at=at(7, 5),
                         next_fire_at=at(8), due=due_now)  # fmt: skip
    assert taken is not None
    assert taken.times == [at(7)]
    assert taken.taken_from == "a"
    assert states.release("a") == 0
    assert states.release("b", ["nightly"]) == 1


def test_a_claim_with_nothing_due_moves_on_without_the_lock(database: Database) -> None:
    states = ScheduleStates(database)
    states.claim("nightly", owner="a", now=at(5), expires_at=at(5, 5), next_fire_at=at(6),
                 due=lambda stored: [stored])  # fmt: skip
    skipped = states.claim("nightly", owner="a", now=at(9), expires_at=at(9, 5),
                           next_fire_at=at(10), due=lambda stored: [])  # fmt: skip
    assert skipped is None
    assert states.release("a") == 0  # the lock was never taken
    claim = states.claim("nightly", owner="b", now=at(10), expires_at=at(10, 5),
                         next_fire_at=at(11), due=lambda stored: [stored])  # fmt: skip
    assert claim is not None
    assert claim.times == [at(10)]
