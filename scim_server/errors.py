"""The one exception type a request can fail with, rendered as a SCIM error (RFC 7644 §3.12)."""

from __future__ import annotations

from .schemas import ERROR


class ScimError(Exception):
    """A request failure the client should see: HTTP status, optional `scimType`, `detail`.

    `detail` is shown to the client, so it must never contain a token or a stack trace.
    """

    def __init__(self, status: int, detail: str, scim_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = headers or {}

    def body(self) -> dict:
        # RFC 7644 §3.12 defines `status` as a JSON string.
        out: dict = {"schemas": [ERROR], "status": str(self.status)}
        if self.scim_type:
            out["scimType"] = self.scim_type
        out["detail"] = self.detail
        return out


def bad_request(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


def not_found(detail: str) -> ScimError:
    return ScimError(404, detail)


def internal_error(request_id: str) -> ScimError:
    """A handler failed: the client learns only which request to look up in the log."""
    return ScimError(500, f"Internal server error; see the server log for request {request_id}")
