"""In-process delivery: the request an app sees, and what the harness makes of its answer.

`deliver` calls the ASGI app directly; these tests hold it to what a server would hand the app
for the bytes Cloud Tasks sends, and to what the service would conclude from the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from pytest_cloudtasks.delivery import Delivered, deliver

pytestmark = pytest.mark.asyncio

URL = "https://worker.example.com:8443/tasks/a%2Fb/caf%C3%A9?x=1&y=%2F&z=a+b"
SEEN: list[dict[str, Any]] = []
app = FastAPI()


@app.api_route("/tasks/{rest:path}", methods=["GET", "POST"])
async def echo(rest: str, request: Request) -> dict[str, Any]:
    SEEN.append({"scope": dict(request.scope), "body": await request.body(),
                 "url": str(request.url), "rest": rest, "query": dict(request.query_params)})
    return {"ok": True}


@app.post("/raise")
async def boom() -> None:
    raise RuntimeError("kaput")


@app.post("/after")
async def fails_after_answering(tasks: BackgroundTasks) -> dict[str, bool]:
    def later() -> None:
        raise RuntimeError("background job failed")

    tasks.add_task(later)
    return {"ok": True}


@app.post("/busy")
async def busy() -> Response:
    return Response(status_code=429, headers={"Retry-After": "30"})


@app.post("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(5):
            await asyncio.sleep(0)
            yield f"chunk{n};".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.head("/head")
async def head() -> Response:
    return Response(content=b"x" * 10)


async def send(path: str, body: bytes = b"", method: str = "POST",
               headers: dict[str, str] | None = None) -> Delivered:
    return await deliver(app, method, f"https://worker.example.com{path}", headers or {}, body)


async def test_the_app_sees_the_request_a_server_builds_from_the_wire() -> None:
    SEEN.clear()
    result = await deliver(app, "POST", URL, {"X-CloudTasks-TaskName": "t1",
                                               "Content-Type": "application/json"}, b"{}")

    assert result.status_code == 200
    assert result.exception is None
    [seen] = SEEN
    scope = seen["scope"]
    assert scope["path"] == "/tasks/a/b/café"
    assert scope["raw_path"] == b"/tasks/a%2Fb/caf%C3%A9"
    assert scope["query_string"] == b"x=1&y=%2F&z=a+b"
    assert seen["rest"] == "a/b/café"  # decoded once, as uvicorn does: %2F is a slash
    assert seen["query"] == {"x": "1", "y": "/", "z": "a b"}
    assert scope["scheme"] == "https"
    assert scope["server"] == ("worker.example.com", 8443)
    assert scope["http_version"] == "1.1"
    assert scope["root_path"] == ""
    assert sorted(scope["headers"]) == sorted([
        (b"host", b"worker.example.com:8443"), (b"x-cloudtasks-taskname", b"t1"),
        (b"content-type", b"application/json"), (b"content-length", b"2"),
    ])
    assert seen["url"].startswith("https://worker.example.com:8443/tasks/")  # Host kept
    assert seen["body"] == b"{}"


async def test_the_senders_framing_and_connection_fields_do_not_reach_the_app() -> None:
    """As over the emulator's wire: hop-by-hop fields are the connection's, not the task's."""
    SEEN.clear()
    await deliver(app, "POST", "http://w/tasks/a", {
        "Transfer-Encoding": "chunked", "Connection": "close", "Keep-Alive": "5", "TE": "x",
        "Trailer": "X-T", "Upgrade": "h2c", "Host": "elsewhere", "X-Kept": "yes"}, b"{}")

    assert sorted(SEEN[0]["scope"]["headers"]) == [
        (b"content-length", b"2"), (b"host", b"w"), (b"x-kept", b"yes")]


async def test_a_post_without_a_body_says_content_length_0_a_get_says_nothing() -> None:
    SEEN.clear()
    await deliver(app, "POST", "http://w/tasks/a/b", {}, b"")
    await deliver(app, "GET", "http://w/tasks/a/b", {}, b"")
    assert (b"content-length", b"0") in SEEN[0]["scope"]["headers"]


async def test_characters_that_cannot_go_on_the_wire_are_percent_encoded() -> None:
    SEEN.clear()
    await deliver(app, "POST", "http://w/tasks/a b/é?q=é ü", {}, b"")
    scope = SEEN[0]["scope"]
    assert scope["raw_path"] == b"/tasks/a%20b/%C3%A9"
    assert scope["path"] == "/tasks/a b/é"
    assert scope["query_string"] == b"q=%C3%A9%20%C3%BC"


async def test_the_response_is_an_httpx_response_built_when_read() -> None:
    result = await send("/tasks/a/b", b"{}")
    assert "response" not in result.__dict__  # not built until a test asks
    assert result.response is not None
    assert result.response.json() == {"ok": True}
    assert result.response.headers["content-type"] == "application/json"
    assert str(result.response.request.url) == "https://worker.example.com/tasks/a/b"


async def test_an_exception_before_answering_is_a_500_and_is_kept() -> None:
    result = await send("/raise")
    assert result.status_code == 500
    assert isinstance(result.exception, RuntimeError)
    assert str(result.exception) == "kaput"


async def test_an_exception_after_the_response_leaves_the_status_the_client_got() -> None:
    """A background task failing after a 200 went out: the service saw the 200."""
    result = await send("/after")
    assert result.status_code == 200
    assert result.response is not None
    assert result.response.json() == {"ok": True}
    assert str(result.exception) == "background job failed"


async def test_an_app_that_never_answers_is_a_500() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    result = await deliver(silent, "POST", "http://w/x", {}, b"")
    assert result.status_code == 500
    assert result.response is None
    assert result.exception is None


async def test_an_app_that_stops_mid_response_is_a_500() -> None:
    async def partial(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    result = await deliver(partial, "POST", "http://w/x", {}, b"")
    assert result.status_code == 500
    assert result.response is None


async def test_a_streaming_response_is_read_to_its_end() -> None:
    """StreamingResponse listens for a disconnect while it sends: it must not come early."""
    result = await send("/stream")
    assert result.status_code == 200
    assert result.response is not None
    assert result.response.text == "chunk0;chunk1;chunk2;chunk3;chunk4;"


async def test_head_gets_headers_and_no_body() -> None:
    result = await send("/head", method="HEAD")
    assert result.status_code == 200
    assert result.body == b""
    assert result.header(b"content-length") == "10"


async def test_response_headers_are_read_by_lower_case_name() -> None:
    result = await send("/busy")
    assert result.status_code == 429
    assert result.header(b"retry-after") == "30"
    assert result.header(b"x-missing") is None


async def test_a_header_that_is_not_ascii_is_a_failed_attempt_with_the_reason() -> None:
    """As httpx refused it (and the emulator refuses it): nothing reaches the app."""
    SEEN.clear()
    result = await send("/tasks/a/b", headers={"X-Name": "café"})
    assert result.status_code == 500
    assert isinstance(result.exception, UnicodeEncodeError)
    assert SEEN == []
