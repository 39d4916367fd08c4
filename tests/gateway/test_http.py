"""The gateway's plain HTTP side: the page, health, and a clear 404."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from salon.platform import Running


def fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_the_page_and_health_are_served(salon: Running) -> None:
    status, content_type, body = fetch(salon.http_url)
    assert status == 200 and content_type.startswith("text/html") and "<title>" in body
    assert fetch(salon.http_url + "healthz")[2] == "ok\n"


def test_unknown_paths_say_where_the_websocket_is(salon: Running) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        fetch(salon.http_url + "nope")
    assert caught.value.code == 404 and "/v1/ws" in caught.value.read().decode()
