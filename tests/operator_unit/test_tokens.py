"""Token lifecycle (joyn_operator.tokens) as pure functions."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from joyn_operator.tokens import TokenState, new_token, next_state, parse_duration

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
    assert state.current == "tok-1" and state.previous is None
    assert [e.reason for e in events] == ["TokenGenerated"]
    again, events = next_state(state, None, DAY, NOW + timedelta(days=30), gen())
    assert again == state and events == []


def test_rotation_keeps_previous_until_deadline_then_drops_it():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g)
    rotated, events = next_state(state, "2026-11-26T13:00", DAY, NOW + timedelta(hours=1), g)
    assert rotated.previous == state.current and rotated.current != state.current
    assert rotated.previous_valid_until == NOW + timedelta(hours=1) + DAY
    assert [e.reason for e in events] == ["TokenRotated"]
    assert state.current not in events[0].message and rotated.current not in events[0].message
    # the same annotation value again: nothing happens
    same, events = next_state(rotated, "2026-11-26T13:00", DAY, NOW + timedelta(hours=2), g)
    assert same == rotated and events == []
    # past the deadline: the previous token goes
    later = NOW + timedelta(hours=1) + DAY
    expired, events = next_state(rotated, "2026-11-26T13:00", DAY, later, g)
    assert expired.previous is None and expired.current == rotated.current
    assert [e.reason for e in events] == ["PreviousTokenExpired"]


def test_state_round_trips_through_secret_annotations():
    g = gen()
    state, _ = next_state(None, None, DAY, NOW, g)
    rotated, _ = next_state(state, "r1", DAY, NOW, g)
    data = {"token": rotated.current, "previous-token": rotated.previous}
    assert TokenState.from_secret(data, rotated.annotations(), NOW) == rotated
    assert TokenState.from_secret({}, {}, NOW) is None


@pytest.mark.parametrize("text,expected", [("72h", timedelta(hours=72)),
                                           ("24h30m", timedelta(hours=24, minutes=30)),
                                           ("90s", timedelta(seconds=90))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3 days", "h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
