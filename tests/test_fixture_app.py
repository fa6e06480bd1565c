"""The fixture app on its own, in-process: if these fail, the e2e failures are noise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures import demo_app


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("FIXTURE_DB", str(tmp_path / "fixture.db"))
    with TestClient(demo_app.app, raise_server_exceptions=False) as client:
        yield client


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_items_are_seeded_listed_and_created(client: TestClient) -> None:
    listed = client.get("/items", params={"limit": 3}).json()
    assert [item["id"] for item in listed] == [1, 2, 3]
    assert client.get("/items/2").json() == {"id": 2, "name": "item 2", "price": 2.5}
    assert client.get("/items/999999").status_code == 404
    created = client.post("/items", json={"name": "hourglass", "price": 12.5})
    assert created.status_code == 201
    assert client.get(f"/items/{created.json()['id']}").json()["name"] == "hourglass"


def test_bad_input_is_a_422(client: TestClient) -> None:
    assert client.get("/items/not-a-number").status_code == 422
    assert client.post("/items", json={"name": ""}).status_code == 422
    assert client.get("/cpu", params={"ms": -1}).status_code == 422


@pytest.mark.parametrize("path", ["/cpu", "/sync-cpu"])
def test_cpu_burners_take_the_time_asked(client: TestClient, path: str) -> None:
    body = client.get(path, params={"ms": 30}).json()
    assert body["requested_ms"] == 30
    assert 30 <= body["elapsed_ms"] < 1000
    assert body["iterations"] > 0


def test_slow_io(client: TestClient) -> None:
    assert client.get("/slow-io", params={"ms": 10}).json() == {"slept_ms": 10}


def test_error_is_a_500(client: TestClient) -> None:
    assert client.get("/error").status_code == 500


def test_burners_have_distinct_names() -> None:
    # The e2e tests find these names in sampled stacks.
    assert demo_app.burn_cpu_async.__code__ is not demo_app.burn_cpu_sync.__code__
    assert demo_app.burn_cpu_async.__name__ == "burn_cpu_async"
    assert demo_app.burn_cpu_sync.__name__ == "burn_cpu_sync"
