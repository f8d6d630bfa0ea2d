"""/docs and /redoc work on an air-gapped network: every script, style sheet and icon they reference is
served by the service itself (no CDN, no web fonts), and those URLs answer 200."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from seispick.service.settings import Settings
from tests.service_harness import ServiceHarness


class _Refs(HTMLParser):
    """Every src/href/spec-url of a page, and URLs inside inline scripts (Swagger UI's url: '/openapi.json')."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self._script = False

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]
        self._script = tag == "script"

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script:
            self.refs += re.findall(
                r"""['"]((?:https?:)?//[^'"]+|/[\w./-]+\.(?:js|css|json|png))['"]""", data
            )


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings(models=["phasenet-original"], default_model="phasenet-original")) as s:
        yield s


@pytest.mark.parametrize(
    "page, asset", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_reference_only_local_urls_that_answer(service, page: str, asset: str) -> None:
    response = service.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    parser = _Refs()
    parser.feed(response.text)
    refs = parser.refs
    assert any(ref.endswith(asset) for ref in refs), refs
    assert "/openapi.json" in refs
    external = [ref for ref in refs if re.match(r"^(https?:)?//", ref)]
    assert not external, f"{page} loads from outside the service: {external}"
    for ref in refs:
        fetched = service.get(ref)
        assert fetched.status_code == 200, (ref, fetched.status_code)
        assert len(fetched.content) > 0
    big = service.get(next(ref for ref in refs if ref.endswith(asset)))
    assert len(big.content) > 100_000 and "javascript" in big.headers["content-type"]


def test_docs_routes_stay_out_of_the_api_schema(service) -> None:
    paths = service.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc", "/static")) for p in paths)
