"""A bare RFC 8935 receiver for the push benchmark: 202 to every POST, counting them and noting
the time of the first and the last; `GET /stats` reads both. It verifies nothing and stores
nothing, so what is measured is the server's sending."""

import time

import orjson

STATS = {"count": 0, "first": 0.0, "last": 0.0}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["method"] == "GET":
        body = orjson.dumps(STATS)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    now = time.monotonic()
    STATS["count"] += 1
    STATS["first"] = STATS["first"] or now
    STATS["last"] = now
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})
