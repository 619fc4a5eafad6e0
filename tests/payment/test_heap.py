"""The served app moves its start-up heap out of the garbage collector's reach once started."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from payment.api import create_app
from tests.payment.conftest import make_settings


def test_a_started_app_with_freeze_heap_leaves_full_collections_little_to_walk() -> None:
    gc.unfreeze()
    try:
        with TestClient(create_app(make_settings("sqlite://", auto_migrate=True))) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0  # the default: tests and tools keep the collector as it is
        with TestClient(create_app(make_settings("sqlite://", auto_migrate=True), freeze_heap=True)) as client:
            assert client.get("/healthz").status_code == 200
            frozen = gc.get_freeze_count()
            # Everything alive at start-up (modules, routes, models, this test session) is out of reach now.
            assert frozen > 50_000
            assert len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()
