"""Query parameters that take one of a few values (phase, status, format) answer an unknown value with a 422
naming the allowed ones, never with an empty list."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from seispick.service.api.routers import events, stream
from seispick.service.api.schemas import PicksQuery
from seispick.service.publish.publisher import STATUSES, PickPublisher


@pytest.fixture(scope="module")
def client() -> TestClient:
    publisher = PickPublisher(redis_url=None)
    app = FastAPI()
    app.include_router(stream.router)
    app.include_router(stream.ws_router)
    app.dependency_overrides[stream.get_runtime] = lambda: SimpleNamespace(publisher=publisher)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/v1/picks", "/v1/stream/picks"])
@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ({"phase": "X"}, "use P, S"),
        ({"phase": "p"}, "use P, S"),
        ({"phase": "P,Pn"}, "use P, S"),
        ({"status": "final"}, "use preliminary, confirmed, rejected"),
    ],
)
def test_an_unknown_value_is_a_422_naming_the_allowed_ones(client, path, query, allowed):
    response = client.get(path, params=query)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    name, value = next(iter(query.items()))
    assert problem["loc"] == ["query", name] and allowed in problem["msg"], problem
    assert value.split(",")[-1] in problem["msg"]


def test_known_values_and_lists_of_them_still_filter(client):
    for query in ({"phase": "P"}, {"phase": "S, P"}, {"phase": ""}, {"status": "confirmed,rejected"}):
        response = client.get("/v1/picks", params=query)
        assert response.status_code == 200 and response.json() == {"picks": [], "count": 0}, query


def test_the_websocket_closes_on_an_unknown_phase(client):
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/v1/ws/picks?phase=X") as ws:
        ws.receive_text()
    assert closed.value.code == 1008 and "unknown phase X: use P, S" in closed.value.reason


def test_the_schema_documents_the_allowed_values(client):
    parameters = client.app.openapi()["paths"]["/v1/picks"]["get"]["parameters"]
    schemas = {p["name"]: p["schema"] for p in parameters}
    assert schemas["phase"]["pattern"] == stream.choices_pattern(("P", "S"))
    assert schemas["status"]["pattern"] == stream.choices_pattern(STATUSES)


def test_other_routers_take_only_known_formats():
    """The other enum-like query parameters are typed (Literal), so FastAPI's 422 lists their values."""
    assert PicksQuery.model_fields["format"].annotation.__args__ == ("json", "csv", "quakeml")
    assert {"json", "quakeml"} <= set(events.Format.__origin__.__args__)
