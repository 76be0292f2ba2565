"""The ceiling: a bare ASGI app that answers every request with one fixed SCIM ListResponse.

Served by `python -m uvicorn bench.bare_app:app` with the same options as both SCIM servers,
its throughput is what the ASGI server and the loopback allow; our share of it says how much
of a request's cost is ours.
"""

import orjson

BODY = orjson.dumps({
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 1,
    "itemsPerPage": 1, "startIndex": 1,
    "Resources": [{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "id": "0190b4a8-0000-7000-8000-000000000000",
                   "userName": "bench-user-00001@example.com", "active": True}]})
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/scim+json"),
                     (b"content-length", str(len(BODY)).encode())]}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):  # read the request body, as a server must
        pass
    await send(START)
    await send(END)
