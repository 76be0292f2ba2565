"""The filter and PATCH-path parser, as pure functions."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scim_server.errors import ScimError
from scim_server.filters import (
    And,
    Compare,
    Not,
    Or,
    PatchPath,
    Present,
    ValuePath,
    _parse_any_filter,
    normalize_datetime,
    parse_filter,
    parse_patch_path,
)
from scim_server.limits import MAX_DEPTH, MAX_TERMS


def test_and_binds_tighter_than_or():
    assert parse_filter('a eq "1" or b eq "2" and c pr') == Or(
        Compare("a", "eq", "1"), And(Compare("b", "eq", "2"), Present("c")))


def test_parentheses_not_and_value_paths():
    assert parse_filter('not (a eq 1) and emails[type eq "work" and value co "@x"]') == And(
        Not(Compare("a", "eq", 1)),
        ValuePath("emails", And(Compare("type", "eq", "work"), Compare("value", "co", "@x"))))


def test_a_value_path_with_a_sub_attribute_compares_it_on_the_same_element():
    # Entra's filter for a mapping to emails[type eq "work"].value.
    assert parse_filter('emails[type eq "work"].value eq "a@x"') == ValuePath(
        "emails", And(Compare("type", "eq", "work"), Compare("value", "eq", "a@x")))
    assert parse_filter('emails[type eq "work"].value pr or x pr') == Or(
        ValuePath("emails", And(Compare("type", "eq", "work"), Present("value"))), Present("x"))


def test_literals_and_escapes():
    assert parse_filter('x eq "a \\"b\\" \\\\ c"') == Compare("x", "eq", 'a "b" \\ c')
    assert parse_filter("x eq true").value is True
    assert parse_filter("x eq null").value is None
    assert parse_filter("x gt 1.5e2").value == 150.0
    assert parse_filter('x EQ "(a)-[b]"') == Compare("x", "eq", "(a)-[b]")


def test_urn_qualified_attribute_keeps_its_dots():
    f = parse_filter('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value '
                     'eq "m"')
    assert f.path == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"


@pytest.mark.parametrize("text", ["", "a", "a eq", 'a eq "x" b', "(a pr", "a[b pr", "not a pr",
                                  'a eq "x" and', "eq eq \"x\"", "a eq b", '"x" eq a'])
def test_malformed_filters(text):
    with pytest.raises(ScimError) as e:
        parse_filter(text)
    assert e.value.status == 400 and e.value.scim_type == "invalidFilter"


def test_depth_limit():
    assert parse_filter("(" * MAX_DEPTH + "a pr" + ")" * MAX_DEPTH) == Present("a")
    for text in ("(" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1),
                 "not (" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1),
                 "a[" * (MAX_DEPTH + 1) + "b pr" + "]" * (MAX_DEPTH + 1)):
        with pytest.raises(ScimError) as e:
            parse_filter(text)
        assert f"more than {MAX_DEPTH} levels" in e.value.detail


def test_comparison_limit():
    assert parse_filter(" or ".join(["a pr"] * MAX_TERMS))
    with pytest.raises(ScimError) as e:
        parse_filter(" or ".join(["a pr"] * (MAX_TERMS + 1)))
    assert f"more than {MAX_TERMS} comparisons" in e.value.detail


def test_patch_paths():
    assert parse_patch_path("name.givenName") == PatchPath("name", None, "givenName")
    assert parse_patch_path('emails[type eq "work"].value') == PatchPath(
        "emails", Compare("type", "eq", "work"), "value")
    assert parse_patch_path('members[value eq "a]b"]') == PatchPath(
        "members", Compare("value", "eq", "a]b"), None)
    assert parse_patch_path(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value") == PatchPath(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", None, "value")
    for bad in ["emails[type eq", 'emails[type eq "w"]x', "a b", '[x eq "1"]']:
        with pytest.raises(ScimError) as e:
            parse_patch_path(bad)
        assert e.value.scim_type == "invalidPath"


def test_datetimes_normalise_to_one_instant():
    assert normalize_datetime("2015-10-10T14:38:21.8617979-07:00") == \
        "2015-10-10T21:38:21.861797Z"
    assert normalize_datetime("2015-10-10T21:38:21Z") == "2015-10-10T21:38:21.000000Z"
    # four year digits before year 1000 too, or "500-..." would sort after "2026-..."
    assert normalize_datetime("0500-01-01T00:00:00Z") == "0500-01-01T00:00:00.000000Z"


def parsed(parse, text):
    """A parse's node, or its 400, as a comparable value."""
    try:
        return parse(text)
    except ScimError as e:
        return (e.status, e.scim_type, e.detail)


@pytest.mark.parametrize("text", [
    'userName eq "bjensen@example.com"', ' USERNAME  EQ "a b" ', 'externalId eq ""',
    'emails.value co "x"', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:'
    'department eq "Field"', 'displayName eq "tab\there"', 'userName eq "a\\u0041"',
    'userName eq "\ud800"', 'and eq "x"', 'pr eq "x"', 'true eq "x"', 'userName eq x',
    'userName eq"x"', 'userName eq "x" or title pr', '(userName eq "x")', 'userName eq "x" ',
    'userName eq "' + "x" * 5000 + '"'])
def test_the_one_comparison_shortcut_gives_what_the_parser_gives(text):
    assert parsed(parse_filter, text) == parsed(_parse_any_filter, text)


@settings(max_examples=300, derandomize=True)
@given(st.text(alphabet='ab eqNOTorpr."\\\t\x00[]()1', max_size=24))
def test_the_shortcut_agrees_with_the_parser_on_any_text(text):
    assert parsed(parse_filter, text) == parsed(_parse_any_filter, text)
