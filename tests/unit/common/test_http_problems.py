"""The app factory's error behaviour, without any server: every error is problem+json."""

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.types import ASGIApp, Receive, Scope, Send

from optisync_common.http import create_app
from optisync_common.problems import PROBLEM_JSON, ProblemError
from optisync_common.resources import NotReady
from optisync_common.settings import ServiceSettings


class Body(BaseModel):
    count: int
    name: str


router = APIRouter()


@router.post("/echo")
async def echo(body: Body) -> Body:
    return body


@router.get("/conflict")
async def conflict() -> None:
    raise ProblemError(409, "slot_taken", "that slot was just booked")


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals /etc/passwd")


# A data store not answering, as its client raises it.
AWAY = {
    "redis": RedisConnectionError("Error 111 connecting to redis:6379. Connection refused."),
    "redis-slow": RedisTimeoutError("Timeout reading from redis:6379"),
    "mongo": ServerSelectionTimeoutError("mongo:27017: [Errno 111] Connection refused"),
    "mongo-failover": AutoReconnect("connection closed"),
}


@router.get("/away/{store}")
async def away(store: str) -> None:
    raise AWAY[store]


class RedisAwayInMiddleware:
    """A middleware's own store read, outside the router's exception handling."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/middleware-away":
            raise AWAY["redis"]
        await self.app(scope, receive, send)


@pytest.fixture
def client():
    settings = ServiceSettings(service_name="probe", max_body_bytes=1024)
    app = create_app(
        settings, title="t", description="d", routers=[router], kafka=False, mongo=False,
        redis=False,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_valid_request_passes(client):
    resp = await client.post("/echo", json={"count": 1, "name": "x"})
    assert resp.status_code == 200
    assert resp.json() == {"count": 1, "name": "x"}


async def test_malformed_json_is_400_with_code(client):
    resp = await client.post(
        "/echo", content=b'{"count": 1,', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == PROBLEM_JSON
    assert resp.json()["code"] == "malformed_json"


async def test_wrong_types_are_422_with_field_errors(client):
    resp = await client.post("/echo", json={"count": "many", "name": 3})
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "invalid_request"
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "count"), ("body", "name")}


async def test_huge_body_is_413(client):
    resp = await client.post(
        "/echo", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload_too_large"


async def test_streamed_huge_body_without_length_is_413(client):
    async def chunks():
        for _ in range(10):
            yield b"x" * 500

    resp = await client.post(
        "/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413


async def test_domain_problem_keeps_its_code(client):
    resp = await client.get("/conflict")
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/slot_taken")


async def test_unknown_route_is_problem_404(client):
    resp = await client.get("/nope")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM_JSON


async def test_unexpected_error_is_500_without_internals(client):
    resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error"
    assert "passwd" not in resp.text and "Traceback" not in resp.text


@pytest.mark.parametrize("store", sorted(AWAY))
async def test_a_data_store_away_is_503_to_retry(client, store):
    resp = await client.get(f"/away/{store}")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == PROBLEM_JSON
    assert resp.json()["code"] == "unavailable" and "111" not in resp.text
    assert int(resp.headers["retry-after"]) > 0


async def test_a_data_store_away_in_a_middleware_is_503_too():
    app = create_app(
        ServiceSettings(service_name="probe"), title="t", description="d", kafka=False,
        mongo=False, redis=False, middleware=[RedisAwayInMiddleware],
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.get("/middleware-away")
    assert (resp.status_code, resp.json()["code"]) == (503, "unavailable")
    assert int(resp.headers["retry-after"]) > 0


async def test_health_and_metrics_exist(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    await client.get("/healthz")
    metrics = (await client.get("/metrics")).text
    assert 'optisync_http_requests_total{method="GET",route="/healthz"' in metrics


async def test_healthz_fails_while_a_liveness_check_fails():
    broken = False

    async def stream_alive() -> None:
        if broken:
            raise NotReady("a task group failed for good")

    app = create_app(
        ServiceSettings(service_name="probe"), title="t", description="d", kafka=False,
        mongo=False, redis=False, liveness_checks={"stream": stream_alive},
    )  # fmt: skip
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).json() == {
                "status": "ok", "checks": {"stream": "ok"}
            }  # fmt: skip
            broken = True
            resp = await client.get("/healthz")
            assert resp.status_code == 503
            assert resp.json()["checks"]["stream"].startswith("failed: NotReady")
