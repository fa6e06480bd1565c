"""Attribution under concurrency: each sample is charged to the request whose
code it shows, never to another (issue: exact attribution under concurrency).

One recording of `fixtures.concurrency_app` serves every test; see
`fixtures/attribution.py` for how samples are judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures import attribution
from fixtures.concurrency_app import BURNERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.core]

BURNER_FUNCTIONS = {f"burn_{name}" for name in BURNERS}


@dataclass
class Session:
    recorded: attribution.Recorded
    rows: list[dict[str, Any]]
    headers: dict[str, str]

    def rows_for(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["path"] == path]

    def judged(self, path: str, *, waits: bool = False) -> list[attribution.Judged]:
        own = "burn_" + path.rsplit("/", 1)[1]
        return [
            self.recorded.judge(r, own, BURNER_FUNCTIONS, waits=waits) for r in self.rows_for(path)
        ]


# Walks that race a 1 ms switch are charged to no request (switched or torn);
# on a busy 2-core VM fewer than 1 in 6 are charged. Below this many charged
# samples a burn says too little to judge, and the recording is made again.
MIN_SAMPLES = 25
ATTEMPTS = 3
# The split runs 600 ms at 1 kHz: 594-609 samples judged in eleven local runs,
# quiet or beside 2-4 CPU hogs (shares 0.689-0.724). CI once judged 460 and read
# 0.630: a machine that loses a quarter of the samples, in bursts, loses them
# unevenly between the two functions. Below this many the split is recorded
# again, as a burn with too few samples is.
MIN_SPLIT_SAMPLES = 500


def record(tmp: Path) -> Session:
    with attribution.recording(tmp) as (client, recorded):
        assert client.get("/health").status_code == 200
        # 1. Two async requests interleaving on one loop, 1 ms slices.
        assert attribution.together(client, ["/burn/alpha?ms=800", "/burn/beta?ms=800"]) == [
            200,
            200,
        ]
        # 2. A known split: 70% in one function, 30% in another.
        assert client.get("/split?ms=600&slice_ms=20").status_code == 200
        # 3. A sync endpoint (thread pool) and an async one at the same time.
        assert attribution.together(client, ["/sync-burn/gamma?ms=800", "/burn/delta?ms=800"]) == [
            200,
            200,
        ]
        # 4. Work in a child task, under the app's BaseHTTPMiddleware.
        child = client.get("/child-task?ms=300")
        assert child.status_code == 200
        headers = dict(child.headers)
        # 5. Work handed to a thread pool with run_in_executor and to_thread.
        assert client.get("/executor?ms=150").status_code == 200
        # 6. BackgroundTasks after the response; 7. a streamed body.
        assert client.get("/background?ms=200").status_code == 200
        streamed = client.get("/stream?chunks=10&ms=20")
        assert streamed.status_code == 200
        assert streamed.text.count("chunk") == 10
    return Session(recorded, recorded.rows(), headers)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """A recording with enough charged samples to judge; the same judgement on every try."""
    for attempt in range(ATTEMPTS):
        recorded = record(tmp_path_factory.mktemp(f"accuracy-{attempt}"))
        burns = [r for r in recorded.rows if "burn/" in r["path"]]
        if all(r["samples"] >= MIN_SAMPLES for r in burns) and (
            sum(split_counts(recorded)) >= MIN_SPLIT_SAMPLES
        ):
            break
    return recorded


def test_concurrent_async_requests_keep_their_own_samples(session: Session) -> None:
    for path in ("/burn/alpha", "/burn/beta"):
        (judged,) = session.judged(path)
        assert judged.samples >= MIN_SAMPLES, judged
        assert judged.other == 0, f"{path}: {judged.other} samples of the other request"
        assert judged.own_share >= 0.95, judged


def split_counts(session: Session) -> tuple[int, int]:
    """On-CPU samples of the split's two functions."""
    (row,) = session.rows_for("/split")
    seventy, thirty, _ = attribution.judge(
        session.recorded.folded(row["id"]), "seventy_percent", {"thirty_percent"}
    )
    return seventy, thirty


def test_a_known_split_is_measured_within_five_points(session: Session) -> None:
    seventy, thirty = split_counts(session)
    assert seventy + thirty >= 300, (seventy, thirty)
    share = seventy / (seventy + thirty)
    # Uncharged walks cluster at the suspend after each slice (after g), so
    # the slices are 20 ms: at 10 ms a machine with many torn walks read 0.75.
    assert 0.65 <= share <= 0.75, f"f got {share:.3f} of the samples (70% expected)"


def test_sync_and_async_requests_at_once_each_get_only_their_own(session: Session) -> None:
    # The two threads share the GIL, and how depends on the machine's load: one
    # of them may run for only a few percent of the 800 ms. Its samples waiting
    # for the GIL inside its burner are judged too (they name their request as
    # plainly), so both requests are judged on ~800 samples whatever the split.
    for path in ("/sync-burn/gamma", "/burn/delta"):
        (judged,) = session.judged(path, waits=True)
        assert judged.samples >= MIN_SAMPLES, judged
        assert judged.other == 0, f"{path}: {judged.other} samples of the other request"
        assert judged.own_share >= 0.95, judged


def test_work_in_a_child_task_is_charged_to_its_request(session: Session) -> None:
    # The app's @app.middleware("http") runs the rest of the app in a child task
    # of its own; the handler then awaits a task it created.
    assert session.headers.get("x-fixture") == "concurrency"
    (row,) = session.rows_for("/child-task")
    own, _, neither = attribution.judge(
        session.recorded.folded(row["id"]), "burn_in_child_task", set()
    )
    assert own >= 100, (own, neither)
    assert own / (own + neither) >= 0.95, (own, neither)


def test_work_handed_to_a_thread_pool_is_charged_to_its_request(session: Session) -> None:
    (row,) = session.rows_for("/executor")
    folded = session.recorded.folded(row["id"])
    for function in ("burn_in_executor", "burn_in_to_thread"):
        own, _, _ = attribution.judge(folded, function, set())
        # 150 ms in a pool thread holding the GIL: ~150 walks at 1 kHz.
        assert own >= 60, (function, own, folded[:2000])


def test_samples_between_requests_go_to_no_request(session: Session) -> None:
    for row in session.rows_for("/health"):
        stacks = session.recorded.folded(row["id"])
        assert "burn_" not in stacks, stacks


def test_background_tasks_are_a_stage_of_their_request_not_its_response_time(
    session: Session,
) -> None:
    (row,) = session.rows_for("/background")
    assert row["duration_ms"] < 150, row  # the response did not wait for the task
    assert row["background_ms"] is not None, row
    assert row["background_ms"] >= 150, row
    folded = session.recorded.folded(row["id"])
    in_background = in_response = 0
    for line in folded.splitlines():
        count = int(line.rsplit(" ", 1)[1])
        if "burn_in_background" in line:
            if line.startswith("[background];"):
                in_background += count
            else:
                in_response += count
    assert in_background >= 70, folded
    assert in_response == 0, folded


def test_a_streamed_response_ends_with_its_last_chunk(session: Session) -> None:
    (row,) = session.rows_for("/stream")
    # Ten chunks of 20 ms CPU and a 10 ms pause each.
    assert row["duration_ms"] >= 250, row
    assert (row["background_ms"] or 0.0) < 50, row
    own, _, _ = attribution.judge(session.recorded.folded(row["id"]), "burn_while_streaming", set())
    # At 1 kHz ~200 samples; the floor leaves room for a busy machine's slower sampler.
    assert own >= 80, own
