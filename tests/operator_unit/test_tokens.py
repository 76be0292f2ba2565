"""Token lifecycle (joyn_operator.tokens) as pure functions."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from joyn_operator.signing import new_private_key, public_pem
from joyn_operator.tokens import (
    EVENTS_TOKEN,
    MAX_PREVIOUS,
    SIGNING_KEY,
    TokenState,
    new_token,
    next_state,
)

from scim_server.durations import parse_duration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=72)


def gen():
    c = count(1)
    return lambda: f"tok-{next(c)}"


def test_new_token_is_256_bits_urlsafe():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 43 for t in tokens)


def test_created_once_then_never_changed():
    state, events = next_state(None, None, DAY, NOW, gen())
    assert state.current == "tok-1" and state.previous == ()
    assert [e.reason for e in events] == ["TokenGenerated"]
    again, events = next_state(state, None, DAY, NOW + timedelta(days=30), gen())
    assert again == state and events == []


def test_rotation_keeps_previous_until_deadline_then_drops_it():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g)
    rotated, events = next_state(state, "2026-11-26T13:00", DAY, NOW + timedelta(hours=1), g)
    assert [p.token for p in rotated.previous] == [state.current]
    assert rotated.current != state.current
    assert rotated.previous_valid_until == NOW + timedelta(hours=1) + DAY
    assert [e.reason for e in events] == ["TokenRotated"]
    assert state.current not in events[0].message and rotated.current not in events[0].message
    # the same annotation value again: nothing happens
    same, events = next_state(rotated, "2026-11-26T13:00", DAY, NOW + timedelta(hours=2), g)
    assert same == rotated and events == []
    # past the deadline: the previous token goes
    later = NOW + timedelta(hours=1) + DAY
    expired, events = next_state(rotated, "2026-11-26T13:00", DAY, later, g)
    assert expired.previous == () and expired.current == rotated.current
    assert [e.reason for e in events] == ["PreviousTokenExpired"]


def test_a_second_rotation_in_an_overlap_keeps_the_first_ones_promise():
    g = gen()
    t0, _ = next_state(None, None, DAY, NOW, g)
    t1, _ = next_state(t0, "r1", DAY, NOW, g)
    t2, events = next_state(t1, "r2", DAY, NOW + timedelta(minutes=5), g)
    # Entra still holds t0's token: it works until the first deadline, t1's until the second
    assert [(p.token, p.valid_until) for p in t2.previous] == [
        (t0.current, NOW + DAY), (t1.current, NOW + timedelta(minutes=5) + DAY)]
    assert t2.previous_valid_until == NOW + DAY and [e.reason for e in events] == ["TokenRotated"]
    first_gone, events = next_state(t2, "r2", DAY, NOW + DAY, g)
    assert [p.token for p in first_gone.previous] == [t1.current]
    assert [e.reason for e in events] == ["PreviousTokenExpired"]


def test_rotations_beyond_the_limit_are_refused_once():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g)
    for i in range(MAX_PREVIOUS):
        state, _ = next_state(state, f"r{i}", DAY, NOW, g)
    refused, events = next_state(state, "one-more", DAY, NOW, g)
    assert refused.current == state.current and refused.previous == state.previous
    assert [(e.reason, e.type) for e in events] == [("RotationRefused", "Warning")]
    again, events = next_state(refused, "one-more", DAY, NOW, g)
    assert again == refused and events == []


def test_an_invalid_request_is_refused_once_and_changes_no_token():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g)
    refused, events = next_state(state, "r1", DAY, NOW, g, refuse="overlap is no duration")
    assert refused.current == state.current and refused.previous == ()
    assert [(e.reason, e.type, e.message) for e in events] == [
        ("RotationRefused", "Warning", "overlap is no duration")]
    again, events = next_state(refused, "r1", DAY, NOW, g)
    assert again == refused and events == []


def test_a_lost_secret_replaces_the_token_loudly_until_acknowledged():
    state, events = next_state(None, None, DAY, NOW, gen(), lost=True, acknowledge="old-ack")
    assert state.replaced_at == NOW and state.replaced_ack == "old-ack"
    assert [(e.reason, e.type) for e in events] == [("TokenReplaced", "Warning")]
    assert state.current not in events[0].message
    kept, events = next_state(state, None, DAY, NOW, gen(), acknowledge="old-ack")
    assert kept == state and events == []
    acked, events = next_state(state, None, DAY, NOW, gen(), acknowledge="handed over")
    assert acked.replaced_at is None and acked.current == state.current
    assert [e.reason for e in events] == ["TokenReplacementAcknowledged"]


def test_state_round_trips_through_the_secret():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g, lost=True)
    rotated, _ = next_state(state, "r1", DAY, NOW, g)
    twice, _ = next_state(rotated, "r2", DAY, NOW + timedelta(hours=1), g)
    assert TokenState.from_secret(twice.data(), twice.annotations(), NOW) == twice
    assert twice.data()["previous-token"] == f"{state.current}\n{rotated.current}"
    assert TokenState.from_secret({}, {}, NOW) is None


def test_a_previous_token_without_a_deadline_ends_now():
    data = {"token": "cur", "previous-token": "old"}
    state = TokenState.from_secret(data, {}, NOW)
    assert [(p.token, p.valid_until) for p in state.previous] == [("old", NOW)]
    assert next_state(state, None, DAY, NOW, gen())[0].previous == ()


@pytest.mark.parametrize("text,expected", [("72h", timedelta(hours=72)),
                                           ("24h30m", timedelta(hours=24, minutes=30)),
                                           ("90s", timedelta(seconds=90))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3 days", "h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# -- the event stream's two credentials: the same lifecycle, their own keys and words ---------

def test_the_receiver_token_lives_in_its_own_keys_with_its_own_event_reasons():
    g = gen()
    state, events = next_state(None, None, DAY, NOW, g, kind=EVENTS_TOKEN)
    assert state.data() == {"token": "tok-1"}
    assert [e.reason for e in events] == ["EventsTokenGenerated"]
    rotated, events = next_state(state, "r1", DAY, NOW, g, kind=EVENTS_TOKEN)
    assert rotated.data() == {"token": "tok-2", "previous-token": "tok-1"}
    assert [e.reason for e in events] == ["EventsTokenRotated"]
    assert "tok-" not in events[0].message
    _, events = next_state(rotated, "r1", DAY, NOW + DAY, g, kind=EVENTS_TOKEN)
    assert [e.reason for e in events] == ["PreviousEventsTokenExpired"]
    assert TokenState.from_secret(rotated.data(), rotated.annotations(), NOW,
                                  EVENTS_TOKEN) == rotated


def test_a_lost_receiver_token_is_replaced_with_a_warning_that_needs_no_acknowledging():
    state, events = next_state(None, None, DAY, NOW, gen(), kind=EVENTS_TOKEN, lost=True)
    assert [(e.reason, e.type) for e in events] == [("EventsTokenReplaced", "Warning")]
    assert state.replaced_at is None and "replaced-at" not in str(state.annotations())
    again, events = next_state(state, None, DAY, NOW, gen(), kind=EVENTS_TOKEN)
    assert again == state and events == []


def test_a_signing_key_rotation_keeps_only_the_public_half_of_the_previous_key():
    state, events = next_state(None, None, DAY, NOW, kind=SIGNING_KEY)
    assert [e.reason for e in events] == ["SigningKeyGenerated"]
    assert set(state.data()) == {"signing-key.pem"}
    assert state.current.startswith("-----BEGIN PRIVATE KEY-----")
    rotated, events = next_state(state, "r1", DAY, NOW, kind=SIGNING_KEY)
    assert [e.reason for e in events] == ["SigningKeyRotated"]
    assert "published until 2026-11-29T12:00:00Z" in events[0].message
    data = rotated.data()
    assert data["signing-key.pem"] != state.current
    assert data["previous-signing-keys.pem"] == public_pem(state.current)
    twice, _ = next_state(rotated, "r2", DAY, NOW + timedelta(hours=1), kind=SIGNING_KEY)
    blocks = twice.data()["previous-signing-keys.pem"]
    assert blocks == public_pem(state.current) + public_pem(rotated.current)
    # Read back from the Secret, as the next reconcile does: nothing changes, so nothing is
    # applied and the server's files stay as they are.
    back = TokenState.from_secret(twice.data(), twice.annotations(), NOW, SIGNING_KEY)
    assert back == twice and back.data() == twice.data()
    expired, events = next_state(twice, "r2", DAY, NOW + DAY, kind=SIGNING_KEY)
    assert [e.reason for e in events] == ["PreviousSigningKeyExpired"]
    assert expired.data()["previous-signing-keys.pem"] == public_pem(rotated.current)
    assert all("PRIVATE" not in e.message for e in events)


def test_a_signing_key_secret_without_a_usable_key_holds_none():
    for text in ("", "not a key", public_pem(new_private_key())):
        assert TokenState.from_secret({"signing-key.pem": text}, {}, NOW, SIGNING_KEY) is None
    # A key read with the blank space a hand edit leaves is the same key.
    key = new_private_key()
    back = TokenState.from_secret({"signing-key.pem": f"\n{key.strip()}  \n\n"}, {}, NOW,
                                  SIGNING_KEY)
    assert back.current == key
