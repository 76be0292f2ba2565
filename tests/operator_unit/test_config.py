"""The operator's settings (joyn_operator/config.py, main.config_from): parsed once, checked,
and a bad one named."""

import argparse
import json

import pytest
from joyn_operator.config import ConfigError, OperatorConfig
from joyn_operator.main import config_from
from joyn_operator.rollout import RolloutPolicy


def test_defaults_without_any_variable():
    cfg = OperatorConfig.from_env({})
    assert cfg == OperatorConfig()
    assert cfg.clusterwide and not cfg.namespace_globs
    assert cfg.metrics_address == "0.0.0.0:8080"
    assert cfg.liveness_endpoint == "http://0.0.0.0:8081/healthz"


def test_every_variable_is_read():
    cfg = OperatorConfig.from_env({
        "JOYN_OPERATOR_SERVER_IMAGE": "r/i:1", "JOYN_OPERATOR_DOMAIN": "d.example",
        "JOYN_OPERATOR_URL_SCHEME": "http", "JOYN_OPERATOR_INGRESS_CLASS": "nginx",
        "JOYN_OPERATOR_INGRESS_ANNOTATIONS": '{"a": "x,y=z"}',
        "JOYN_OPERATOR_TLS_ISSUER": "le", "JOYN_OPERATOR_INGRESS_NAMESPACE": "ing",
        "JOYN_OPERATOR_MONITORING_NAMESPACE": "mon",
        "JOYN_OPERATOR_WATCH_NAMESPACES": "a, team-*", "JOYN_OPERATOR_RESYNC_SECONDS": "7",
        "JOYN_OPERATOR_LOG_LEVEL": "DEBUG", "JOYN_OPERATOR_METRICS_ADDRESS": "",
        "JOYN_OPERATOR_LIVENESS_ENDPOINT": "", "JOYN_OPERATOR_KUBECONFIG": "/k",
        "JOYN_OPERATOR_CONTEXT": "prod", "JOYN_OPERATOR_ACTIVITY_SECONDS": "0",
        "JOYN_OPERATOR_POD_NAMESPACE": "joyn", "JOYN_OPERATOR_POD_LABELS": '{"app": "op"}'})
    assert cfg.ingress_annotations == {"a": "x,y=z"}  # JSON keeps commas and equals signs
    assert cfg.tls_issuer == {"name": "le", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert cfg.watch_namespaces == ("a", "team-*") and cfg.namespace_globs
    assert (cfg.resync_seconds, cfg.log_level, cfg.metrics_address, cfg.liveness_endpoint,
            cfg.kubeconfig, cfg.context, cfg.monitoring_namespace) == \
        (7.0, "debug", "", "", "/k", "prod", "mon")
    assert (cfg.activity_seconds, cfg.pod_namespace, cfg.pod_labels) == (0, "joyn", {"app": "op"})


def test_annotations_as_pairs_on_a_command_line():
    cfg = OperatorConfig.from_env({"JOYN_OPERATOR_INGRESS_ANNOTATIONS": "a=1, b=2"})
    assert cfg.ingress_annotations == {"a": "1", "b": "2"}


@pytest.mark.parametrize("name, value", [
    ("RESYNC_SECONDS", "often"), ("RESYNC_SECONDS", "0"), ("LOG_LEVEL", "verbose"),
    ("URL_SCHEME", "ftp"), ("METRICS_ADDRESS", "8080"), ("INGRESS_ANNOTATIONS", "{not json"),
    ("INGRESS_ANNOTATIONS", '{"a": 1}'), ("INGRESS_ANNOTATIONS", "novalue"),
    ("ACTIVITY_SECONDS", "-1"), ("ACTIVITY_SECONDS", "hourly"), ("POD_LABELS", "novalue"),
    ("SERVER_IMAGE_ROLLOUT", "Canary"), ("SERVER_IMAGE_BATCH_SIZE", "0"),
    ("SERVER_IMAGE_BATCH_SIZE", "2.5"), ("TENANT_DEFAULTS", "{not json"),
    ("TENANT_DEFAULTS", '{"server": []}'),
    ("TENANT_DEFAULTS", '{"server": {"image": "x"}}'),  # the image has a rollout of its own
    ("TENANT_DEFAULTS", '{"storage": {"deletionPolicy": "Delete"}}'),
    ("TENANT_DEFAULTS", '{"server": {"nodeSelector": ["a"]}}'),
    ("TENANT_DEFAULTS", '{"server": {"imagePullSecrets": ["regcred"]}}'),
])
def test_a_bad_setting_is_refused_naming_its_variable(name, value):
    with pytest.raises(ConfigError, match=f"JOYN_OPERATOR_{name}"):
        OperatorConfig.from_env({f"JOYN_OPERATOR_{name}": value})


def test_flags_win_over_the_environment():
    args = argparse.Namespace(namespaces=["x", "y"], liveness_endpoint="", metrics_address=None,
                              log_level="warning", kubeconfig=None, context="dev")
    cfg = config_from(args, {"JOYN_OPERATOR_WATCH_NAMESPACES": "z",
                             "JOYN_OPERATOR_LOG_LEVEL": "debug"})
    assert cfg.watch_namespaces == ("x", "y") and cfg.log_level == "warning"
    assert cfg.liveness_endpoint == "" and cfg.metrics_address == "0.0.0.0:8080"
    assert cfg.context == "dev"


def test_tenant_defaults_are_read_by_their_path_under_spec_and_empty_ones_set_nothing():
    cfg = OperatorConfig.from_env({"JOYN_OPERATOR_TENANT_DEFAULTS": json.dumps({
        "server": {"nodeSelector": {"pool": "scim"}, "tolerations": [],
                   "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": ""},
        "storage": {"storageClassName": "gp3", "size": "2Gi"}})})
    assert cfg.tenant_defaults == {"server.nodeSelector": {"pool": "scim"},
                                   "server.imagePullSecrets": [{"name": "regcred"}],
                                   "storage.storageClassName": "gp3", "storage.size": "2Gi"}


def test_the_server_image_rollout_policy():
    assert OperatorConfig.from_env({}).rollout == RolloutPolicy("Batches", 10)
    cfg = OperatorConfig.from_env({"JOYN_OPERATOR_SERVER_IMAGE_ROLLOUT": "OptIn",
                                   "JOYN_OPERATOR_SERVER_IMAGE_BATCH_SIZE": "3"})
    assert cfg.rollout == RolloutPolicy("OptIn", 3)
