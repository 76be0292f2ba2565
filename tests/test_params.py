"""Query parameters (scim_server.params) as pure functions: what a URL's query or a .search
body may hold, and what each becomes."""

import pytest

from scim_server import params
from scim_server.errors import ScimError
from scim_server.filters import Compare
from scim_server.limits import MAX_INDEX
from scim_server.resources import Projection
from scim_server.schemas import GROUP_TYPE, USER_TYPE


def test_names_match_in_any_case_the_first_wins_and_unknown_ones_are_ignored():
    got = params.from_query([("FILTER", 'userName eq "a"'), ("filter", "ignored"),
                             ("startindex", "2"), ("utm_source", "x")])
    assert got == {"filter": 'userName eq "a"', "startIndex": "2"}


def test_a_search_body_keeps_json_types_and_must_be_an_object():
    assert params.from_search_body({"Count": 5, "attributes": ["userName"], "x": 1}) == \
        {"count": 5, "attributes": ["userName"]}
    with pytest.raises(ScimError) as e:
        params.from_search_body(["filter"])
    assert e.value.scim_type == "invalidSyntax"


@pytest.mark.parametrize("given,expected", [
    ({}, (1, 100)),
    ({"startIndex": "0", "count": "-5"}, (1, 0)),  # RFC 7644 §3.4.2.4: clamped, not refused
    ({"startIndex": "3", "count": "1000"}, (3, 100)),
    ({"startIndex": "99999999999999999999"}, (MAX_INDEX, 100)),  # past the end: empty page
    ({"startIndex": 7, "count": 2.0}, (7, 2)),  # a .search body's numbers
    ({"startIndex": ""}, (1, 100)),
])
def test_paging_is_clamped(given, expected):
    assert params.page(given, max_results=100) == expected


@pytest.mark.parametrize("given", [{"count": "ten"}, {"startIndex": True}, {"count": 1.5},
                                   {"count": float("inf")}, {"count": {}}, {"count": "1e3"}])
def test_a_page_parameter_that_is_no_integer_is_400(given):
    with pytest.raises(ScimError) as e:
        params.page(given, max_results=100)
    assert (e.value.status, e.value.scim_type) == (400, "invalidValue")


def test_a_query_holds_the_parsed_filter_order_and_page():
    q = params.query({"filter": 'userName eq "a"', "sortBy": "userName",
                      "sortOrder": "Descending", "startIndex": "2", "count": "5"},
                     Projection(), max_results=100)
    assert q.filter == Compare("userName", "eq", "a")
    assert (q.sort_by, q.descending, q.start_index, q.count) == ("userName", True, 2, 5)
    assert params.query({"filter": "  "}, Projection(), 100).filter is None


@pytest.mark.parametrize("given,scim_type", [
    ({"filter": 7}, "invalidFilter"),
    ({"filter": "userName eq"}, "invalidFilter"),
    ({"sortOrder": "up"}, "invalidValue"),
    ({"sortBy": 1}, "invalidValue"),
    ({"sortBy": {}}, "invalidValue"),
])
def test_a_bad_parameter_is_400_with_its_scim_type(given, scim_type):
    with pytest.raises(ScimError) as e:
        params.query(given, Projection(), 100)
    assert (e.value.status, e.value.scim_type) == (400, scim_type)


def test_related_resources_are_loaded_only_where_the_projection_shows_them():
    groups = params.projection(GROUP_TYPE, {"excludedAttributes": "members"})
    assert not params.query({}, groups, 100).with_members
    users = params.projection(USER_TYPE, {"attributes": ["userName", "emails"]})
    q = params.query({}, users, 100)
    assert not q.with_groups
    assert params.query({}, Projection(), 100).with_groups


def test_attribute_lists_are_strings_or_arrays_of_strings():
    assert params.projection(USER_TYPE, {"attributes": "userName"}) == \
        params.projection(USER_TYPE, {"attributes": ["userName"]})
    with pytest.raises(ScimError):
        params.projection(USER_TYPE, {"attributes": [1]})
