"""The pure part of the rep commands (joyn_operator/ctl/commands.py): the status text."""

from datetime import UTC, datetime

from joyn_operator.ctl.commands import status_text

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def tenant(**status) -> dict:
    return {"metadata": {"name": "acme", "namespace": "crm"}, "spec": {"displayName": "Acme"},
            "status": status}


def test_status_says_nothing_of_a_stream_that_is_off():
    assert "Stream:" not in status_text(tenant(), [], NOW)


def test_status_shows_the_streams_backlog_delivery_and_trouble():
    text = status_text(tenant(events={
        "enabled": True, "delivery": "push", "backlog": 12,
        "oldestUnackedAt": "2026-12-03T11:40:00Z", "lastDeliveryAt": "2026-12-03T11:39:00Z",
        "failingSince": "2026-12-03T11:39:30Z", "lastError": "timeout",
        "resyncRequired": True}), [], NOW)
    assert "Stream:     push; 12 waiting, the oldest for 20m; last delivered 21m ago" in text
    assert "PUSH FAILING since 2026-12-03T11:39:30Z: timeout" in text
    assert "RESYNC REQUIRED" in text
    fresh = status_text(tenant(events={"enabled": True, "delivery": "poll"}), [], NOW)
    assert "Stream:     poll; not read yet; last delivered never" in fresh
