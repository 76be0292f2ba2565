"""kubectl joyn's printing (joyn_operator/ctl/views.py): ages, masks, rows and tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from joyn_operator.ctl import views

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (45, "45s"), (119, "119s"), (120, "2m"), (3599, "59m"), (3600, "1h"),
    (3600 + 25 * 60, "1h25m"), (9 * 3600, "9h"), (47 * 3600, "47h"), (3 * 86400, "3d"),
    (-5, "0s")])
def test_ages_read_like_kubectls(seconds, text):
    assert views.age(timedelta(seconds=seconds)) == text


def test_a_masked_token_keeps_only_its_last_four_characters():
    token = "Q" * 39 + "x9Z2"
    shown = views.mask(token)
    assert "x9Z2" in shown and "43 characters" in shown
    assert "Q" not in shown


def tenant(name="acme", ns="crm", **status):
    return {"metadata": {"name": name, "namespace": ns}, "status": status}


def test_a_row_holds_readiness_url_token_dates_and_activity():
    t = tenant(url="https://acme.joyn.example/scim/v2",
               conditions=[{"type": "Ready", "status": "True", "reason": "Ready"}],
               token={"issuedAt": "2026-12-01T12:00:00Z",
                      "previousValidUntil": "2026-12-04T12:00:00Z"},
               activity={"lastRequestAt": "2026-12-03T11:20:00Z", "users": 12, "groups": 3,
                         "unauthorizedLastHour": 0})
    row = views.tenant_row(t, NOW)
    assert row == {"name": "acme", "namespace": "crm", "ready": "True", "reason": "Ready",
                   "message": None, "url": "https://acme.joyn.example/scim/v2",
                   "tokenIssuedAt": "2026-12-01T12:00:00Z", "tokenRotatedAt": None,
                   "previousValidUntil": "2026-12-04T12:00:00Z",
                   "lastRequestAt": "2026-12-03T11:20:00Z", "users": 12, "groups": 3,
                   "unauthorizedLastHour": 0}
    table = views.tenants_table([row], NOW, namespaces=True).splitlines()
    assert table[0].split()[:4] == ["NAME", "NAMESPACE", "READY", "REASON"]
    cells = table[1].split()
    assert cells[:5] == ["acme", "crm", "True", "Ready", "https://acme.joyn.example/scim/v2"]
    assert cells[5] == "2d" and "40m" in cells and cells[-3:] == ["12", "3", "0"]


def test_wide_adds_the_last_rotation_and_the_ready_message_last():
    t = tenant(url="https://acme.joyn.example/scim/v2",
               conditions=[{"type": "Ready", "status": "False", "reason": "ServerUnavailable",
                            "message": "0 of 1 pods ready"}],
               token={"issuedAt": "2026-12-03T11:00:00Z", "rotatedAt": "2026-12-03T11:00:00Z"})
    row = views.tenant_row(t, NOW)
    narrow = views.tenants_table([row], NOW, namespaces=False).splitlines()
    wide = views.tenants_table([row], NOW, namespaces=False, wide=True).splitlines()
    assert wide[0].startswith(narrow[0]) and wide[0].endswith("LAST ROTATED   MESSAGE")
    assert wide[1].endswith("1h ago         0 of 1 pods ready")
    assert "pods ready" not in narrow[1]


def test_a_tenant_never_reconciled_shows_as_such():
    row = views.tenant_row(tenant(), NOW)
    assert (row["ready"], row["reason"], row["url"]) == ("Unknown", "NotReconciled", None)
    line = views.tenants_table([row], NOW, namespaces=False).splitlines()[1]
    assert line.split()[:4] == ["acme", "Unknown", "NotReconciled", "-"]


def test_until_says_how_long_is_left_or_that_it_passed():
    assert views.until("2026-12-03T15:00:00Z", NOW) == "2026-12-03T15:00:00Z (in 3h)"
    assert views.until("2026-12-03T11:00:00Z", NOW) == "2026-12-03T11:00:00Z (passed)"
    assert views.until(None, NOW) == "-"


def test_tables_align_columns():
    out = views.table(["A", "LONGER"], [["xxxxx", "1"], ["y", "22"]]).splitlines()
    assert [line.index(c) for line, c in zip(out, ["LONGER", "1", "22"], strict=True)] == [8] * 3


# -- kubectl joyn events ----------------------------------------------------------------------

CREATE = {"iss": "https://acme.example/scim/v2", "iat": 1796126400, "jti": "s1.7", "txn": "7",
          "aud": "joyn-fsm", "sub_id": {"format": "scim", "uri": "/Users/2819c223"},
          "events": {"urn:ietf:params:scim:event:prov:create:full": {
              "data": {"userName": "ada"}, "version": 'W/"a1"'}}}


def test_an_event_is_one_row_time_txn_kind_resource_version():
    assert views.event_row(CREATE) == ["2026-12-01T12:00:00Z", "7", "create", "/Users/2819c223",
                                       'W/"a1"']
    disabled = {**CREATE, "events": {
        "urn:ietf:params:scim:event:prov:patch:full": {"version": 'W/"a2"'},
        "urn:ietf:params:scim:event:prov:deactivate": {}}}
    assert views.event_row(disabled)[2:] == ["patch+deactivate", "/Users/2819c223", 'W/"a2"']
    gone = {**CREATE, "events": {"urn:ietf:params:scim:event:prov:delete": {}}}
    assert views.event_row(gone)[2:] == ["delete", "/Users/2819c223", "-"]


def test_tail_lines_print_events_and_warn_of_resyncs_and_misses():
    import json
    text, warning = views.tail_line(json.dumps(CREATE))
    assert warning is None and text.split() == ["2026-12-01T12:00:00Z", "7", "create",
                                                "/Users/2819c223", 'W/"a1"']
    head = views.event_line(views.EVENT_HEAD)
    assert head.index("EVENT") == text.index("create")  # the columns line up
    gap = {"gap": {"events": {"https://scim.sevenlakes.com/events/resync": {
        "through": "41", "reason": "retention", "snapshot": "/events/snapshot"}}}}
    text, warning = views.tail_line(json.dumps(gap))
    assert text is None and "RESYNC required" in warning and "41" in warning
    assert "retention" in warning
    assert views.tail_line('{"missed": "events this server no longer holds"}') == (
        None, "warning: events this server no longer holds")
    assert views.tail_line("\n") == (None, None)  # a heartbeat
    assert views.tail_line("<html>")[1].startswith("warning: not a JSON line")
