"""Filter and sort compilation to SQLite (scim_server.storage.sqlfilter) as pure functions:
values are always bound parameters, folded where the schema is case-insensitive, and the
storage knows which filters an index answers. test_sqlite.py checks the query plans."""

import pytest

from scim_server.errors import ScimError
from scim_server.filters import parse_filter
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage.sqlfilter import (
    compile_filter,
    compile_sort,
    range_on_index,
    served_by_index,
)


def compiled(text, rt=USER_TYPE):
    return compile_filter(rt, parse_filter(text))


def test_values_are_bound_never_spliced_into_the_sql():
    sql, params = compiled('userName eq "Robert\'); DROP TABLE users; --"')
    assert "DROP" not in sql and sql.count("?") == 1
    assert params == ["robert'); drop table users; --"]  # userName is caseExact false


def test_case_exact_attributes_compare_exactly_and_dates_in_one_form():
    _, params = compiled('id eq "AbC"')
    assert params == ["AbC"]
    sql, params = compiled('meta.lastModified gt "2026-01-01T01:00:00+01:00"')
    assert sql == "(r.last_modified > ?)" and params == ["2026-01-01T00:00:00.000000Z"]


def test_both_spellings_of_the_work_email_filter_compile_alike():
    assert compiled('emails[type eq "work"].value eq "A@x.com"') == \
        compiled('emails[type eq "work" and value eq "A@x.com"]')


@pytest.mark.parametrize("text,indexed", [
    ('userName eq "a"', True),
    ('externalId eq "e" or id eq "i"', True),
    ('emails.value eq "a@x.com"', True),
    ('emails[type eq "work"].value eq "a@x.com"', True),
    ('userName eq "a" and title eq "t"', False),
    ('userName sw "a"', False),
    ('emails[type eq "work"]', False),
    ('nosuch eq "a"', False),
])
def test_which_filters_an_index_answers(text, indexed):
    assert served_by_index(USER_TYPE, parse_filter(text)) is indexed


@pytest.mark.parametrize("text,ranged", [
    ('meta.lastModified gt "2026-01-01T00:00:00Z"', True),
    ('meta.created le "2026-01-01T00:00:00Z" and title co "x"', True),
    ('meta.lastModified gt "2026-01-01T00:00:00Z" or title pr', False),
    ('title gt "x"', False),
])
def test_which_filters_hold_a_range_on_an_index(text, ranged):
    assert range_on_index(USER_TYPE, parse_filter(text)) is ranged


def test_an_unknown_attribute_is_400_invalid_filter():
    with pytest.raises(ScimError) as e:
        compiled('nosuch eq "a"')
    assert (e.value.status, e.value.scim_type) == (400, "invalidFilter")
    with pytest.raises(ScimError):
        compiled('userName eq "a"', GROUP_TYPE)


def test_sorting_uses_the_folded_column_and_refuses_what_has_no_order():
    assert compile_sort(USER_TYPE, "userName") == "r.user_name_fold"
    assert "primary" in compile_sort(USER_TYPE, "emails.value")  # the primary value sorts
    for bad in ("members", "name", "nosuch"):
        with pytest.raises(ScimError) as e:
            compile_sort(GROUP_TYPE if bad == "members" else USER_TYPE, bad)
        assert e.value.status == 400 and bad in e.value.detail
