"""Locust users for `bench_load` (run by it, headless). Each class hits one endpoint; what to
call comes from the JSON file named by QUANYI_LOAD_PLAN, written by bench_load's set-up."""

from __future__ import annotations

import json
import os
import random
from typing import Any

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

PLAN: dict[str, Any] = json.loads(open(os.environ["QUANYI_LOAD_PLAN"], encoding="utf-8").read())  # noqa: SIM115, PTH123


class _User(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: each user sends its next request on the answer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random()  # noqa: S311 - a load pattern, not security


class Bare(_User):
    @task
    def bare(self) -> None:
        self.client.get("/__bench__/json/", name="bare")


class ConsentCheck(_User):
    @task
    def check(self) -> None:
        headers = {"Authorization": f"Api-Key {PLAN['api_key']}"}
        self.client.get(self.rng.choice(PLAN["checks"]), headers=headers, name="consent-check")


class RequestStatus(_User):
    @task
    def status(self) -> None:
        subject = self.rng.choice(PLAN["subjects"])
        self.client.get(
            f"/api/v1/requests/{subject['request']}/",
            headers={"X-Session-Token": subject["token"]},
            name="request-status",
        )


class RequestSubmit(_User):
    @task
    def submit(self) -> None:
        subject = self.rng.choice(PLAN["subjects"])
        self.client.post(
            "/api/v1/requests/",
            json={"type": "explanation", "details": "load test"},
            headers={"X-Session-Token": subject["token"]},
            name="request-submit",
        )
