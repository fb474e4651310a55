"""An upstream that echoes the API key does not put it in the server's log (issue 27, item 5).

The real API cuts keys in its own texts ("Incorrect API key provided: sk-abc***wxyz"), but a proxy or
another upstream may quote the `Authorization` header verbatim. Through a live Daphne: one upstream
refuses at the upgrade with a JSON body quoting the header, the next accepts and then sends the
in-band `invalid_api_key` error quoting it (the real API's shape for a wrong key: error, then close 3000).
"""

import asyncio
import json
import logging

import pytest
import websockets
from websockets.datastructures import Headers
from websockets.http11 import Response

from config.logging import MASK, StructuredFormatter, mask_credentials
from tutor.tests.live import daphne_server, free_port
from tutor.tests.test_faults_numbers import login, open_tutor, read_until

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-proj-" + "Zx9" * 16  # shaped like a real key; the server never sent it anywhere real


def test_the_formatter_masks_keys_and_bearer_tokens_in_the_whole_line():
    record = logging.makeLogRecord({
        "name": "tutor", "levelname": "WARNING", "levelno": 30, "msg": f"refused: Bearer {KEY}",
        "error_message": f"Incorrect API key provided: {KEY}.", "token": "Bearer abc.def-ghi",
    })
    line = StructuredFormatter().format(record)
    assert KEY not in line and "abc.def-ghi" not in line and line.count(MASK) == 3
    assert mask_credentials("Incorrect API key provided: sk-abc*****wxyz.") == "Incorrect API key provided: sk-abc*****wxyz."
    assert mask_credentials("a custom key: hunter2-hunter2", ("hunter2-hunter2",)) == f"a custom key: {MASK}"


@pytest.mark.services
def test_an_upstream_echoing_the_key_leaves_it_out_of_the_log(make_user):
    cookie = login(make_user, "echoed")
    port = free_port()
    connections = []

    async def refuse(connection, request):
        connections.append(request.headers.get("Authorization", ""))
        if len(connections) == 1:  # HTTP 401 at the upgrade, the body quoting the header
            body = json.dumps({"error": {"code": "invalid_api_key", "message": f"Bad header: {connections[-1]}"}})
            return Response(401, "Unauthorized", Headers({"Content-Type": "application/json"}), body.encode())
        return None

    async def in_band(ws):
        await ws.send(json.dumps({"type": "error", "event_id": "event_1", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "param": None, "event_id": None,
            "message": f"Incorrect API key provided: {connections[-1].removeprefix('Bearer ')}."}}))
        await ws.close(3000, "invalid_api_key")

    async def run(base_url):
        async with websockets.serve(in_band, "127.0.0.1", port, process_request=refuse):
            codes = []
            for _ in range(2):
                ws = await open_tutor(base_url, cookie)
                await ws.send(json.dumps({"type": "session.start"}))
                codes.append((await read_until(ws, lambda e: e["type"] == "error"))["code"])
                await ws.close()
            return codes

    env = {"OPENAI_API_KEY": KEY, "PARLA_GRADER": "rules", "PARLA_RATER": "offline"}
    with daphne_server(realtime_url=f"ws://127.0.0.1:{port}/v1/realtime", redis_url=None, extra_env=env) as url:
        codes = asyncio.run(run(url))
        log = url.log_path.read_text()
    assert codes == ["upstream_auth", "upstream_auth"]
    assert connections == [f"Bearer {KEY}"] * 2  # the key was sent, and echoed back twice
    refusals = [line for line in log.splitlines() if "upstream refused the session" in line]
    assert len(refusals) == 2 and all(MASK in line for line in refusals), refusals
    assert KEY not in log
