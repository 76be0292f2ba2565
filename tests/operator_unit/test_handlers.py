"""The operator's scope: which namespaces the periodic resync lists and reconciles."""

from joyn_operator.handlers import in_scope, resync_urls

TENANTS = "/apis/scim.sevenlakes.com/v1alpha1"


def test_named_namespaces_are_listed_one_by_one():
    assert resync_urls(("a", "b")) == [f"{TENANTS}/namespaces/a/joynscimtenants",
                                       f"{TENANTS}/namespaces/b/joynscimtenants"]


def test_all_namespaces_or_a_glob_list_the_cluster():
    assert resync_urls(()) == [f"{TENANTS}/joynscimtenants"]
    assert resync_urls(("a", "team-*")) == [f"{TENANTS}/joynscimtenants"]


def test_scope_follows_kopf_glob_patterns():
    assert in_scope("anything", ())
    assert in_scope("team-x", ("a", "team-*")) and in_scope("a", ("a", "team-*"))
    assert not in_scope("b", ("a", "team-*")) and not in_scope("team", ("team-?",))
