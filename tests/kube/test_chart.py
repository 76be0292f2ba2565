"""The Helm chart (charts/joyn-scim): lint, strict validation against the pinned Kubernetes
version, the schema refusing typos, the CRD's single source, the roles matching the docs'
tables; then installed on the real cluster: the operator in a pod under its own ServiceAccount,
`helm test`, the permissions it really has, a tenant served, upgrade and uninstall."""

from __future__ import annotations

import re
import tarfile

import pytest
import yaml
from joyn_operator.config import OperatorConfig
from joyn_operator.rollout import RolloutPolicy

from .conftest import CHART, CRD_PATH, ROOT, Helm, chart_values, eventually
from .kubeconform import validate, write_schemas
from .test_tenant_e2e import TENANTS, Entra, create_tenant, pods, secret, wait_ready

MONITORING = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
EVERYTHING = {
    "image": {"repository": "registry.example/joyn-scim", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccount": {"annotations": {"iam.example/role": "joyn"}},
    "operator": {
        "domain": "scim.example.com", "urlScheme": "http", "ingressClass": "nginx",
        "ingressAnnotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "2m",
                               "quoted": "a \"b\", c=d"},
        "tlsIssuer": {"name": "letsencrypt", "kind": "Issuer", "group": "example.io"},
        "ingressNamespace": "ingress", "monitoringNamespace": "monitoring",
        "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "edge"}},
                         "podSelector": {"matchLabels": {"app": "nginx"}}},
                        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.9.0/24"]}}],
        "routeCheck": {"address": "ingress-nginx-controller.ingress-nginx.svc:443",
                       "periodSeconds": 120},
        "watchNamespaces": ["team-a", "team-b"], "resyncSeconds": 42.5, "activitySeconds": 30,
        "logLevel": "debug",
        "serverImage": "registry.example/joyn-scim-server:1",
        "serverImageRollout": {"policy": "OptIn", "batchSize": 3},
        "tenantDefaults": {
            "server": {"resources": {"requests": {"cpu": "20m"}},
                       "nodeSelector": {"pool": "scim"},
                       "tolerations": [{"key": "scim", "operator": "Exists"}],
                       "affinity": {"podAntiAffinity": {}},
                       "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                                      "whenUnsatisfiable": "ScheduleAnyway"}],
                       "priorityClassName": "tenants", "podLabels": {"team": "p"},
                       "podAnnotations": {"a": "b"}, "imagePullSecrets": [{"name": "reg"}]},
            "storage": {"size": "2Gi", "storageClassName": "gp3"}}},
    "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "labels": {"team": "p"}},
                "prometheusRule": {"enabled": True}},
    "health": {"port": 9091},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                     "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {}}, "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"a": "b"}, "podLabels": {"team": "platform"},
}
VALUE_SETS = {
    "defaults": {},
    "exact namespaces": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "glob": {"operator": {"watchNamespaces": ["team-*", "ops"]}},
    "everything": EVERYTHING,
    "no CRD, no tests": {"crds": {"enabled": False}, "tests": {"enabled": False}},
}
# Every authenticated user may review its own access (system:basic-user).
SELF_REVIEWS = {"selfsubjectaccessreviews.authorization.k8s.io",
                "selfsubjectrulesreviews.authorization.k8s.io",
                "selfsubjectreviews.authentication.k8s.io"}


@pytest.fixture(scope="module")
def schemas(control_plane, tmp_path_factory):
    """kubeconform schemas from the test cluster's API server: the pinned version's own."""
    return write_schemas(control_plane.get_json("/openapi/v2"),
                         tmp_path_factory.mktemp("schemas"))


def docs(rendered: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None
                                                      or o["metadata"]["name"] == name)]


def documented_permissions() -> list[dict]:
    """The install guide's permission table, as rows {group, resource, verbs, scope}."""
    text = (ROOT / "docs" / "platform" / "install.md").read_text()
    table = text.split("<!-- permissions -->")[1].split("<!-- /permissions -->")[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        rows.append({"group": "" if cells[0] == "core" else cells[0], "resource": cells[1],
                     "verbs": {v.strip() for v in cells[2].split(",")}, "scope": cells[3]})
    return rows


def rules_as_rows(rules: list[dict]) -> set[tuple]:
    return {(g, r, frozenset(rule["verbs"])) for rule in rules for g in rule["apiGroups"]
            for r in rule["resources"]}


def rows(permissions: list[dict], *scopes: str) -> set[tuple]:
    return {(p["group"], p["resource"], frozenset(p["verbs"])) for p in permissions
            if p["scope"] in scopes}


# -- the chart as files ------------------------------------------------------------------------

def test_lint_strict(helm):
    r = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendering_is_valid_for_the_pinned_kubernetes(helm, tools_bins, schemas, name):
    rendered = helm.template(values=VALUE_SETS[name])
    # The Prometheus Operator's kinds have no schema here (its CRDs are not installed); the
    # CRD's own kind is recursive, which kubeconform's schema layout cannot express: the API
    # server validates it on install below, and test_crd.py validates crds/.
    r = validate(tools_bins / "kubeconform", schemas, rendered,
                 skip=("CustomResourceDefinition", *MONITORING))
    assert r.returncode == 0 and "Invalid: 0, Errors: 0" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("values, key", [
    ({"operator": {"domian": "x.example.com"}}, "domian"),
    ({"imag": {"tag": "1"}}, "imag"),
    ({"metrics": {"serviceMonitor": {"enabeld": True}}}, "enabeld"),
    ({"securityContext": {"readOnlyRootFilesytem": True}}, "readOnlyRootFilesytem"),
])
def test_a_misspelt_value_fails_naming_it(helm, values, key):
    r = helm.run("template", "t", str(CHART), *helm.values(values), check=False)
    assert r.returncode != 0 and key in r.stderr, r.stderr


@pytest.mark.parametrize("values, field", [
    ({"operator": {"resyncSeconds": "often"}}, "resyncSeconds"),
    ({"operator": {"logLevel": "verbose"}}, "logLevel"),
    ({"image": {"digest": "latest"}}, "digest"),
    ({"operator": {"watchNamespaces": ["Team A"]}}, "watchNamespaces"),
])
def test_a_wrong_value_fails_naming_it(helm, values, field):
    r = helm.run("template", "t", str(CHART), *helm.values(values), check=False)
    assert r.returncode != 0 and field in r.stderr, r.stderr


def test_the_chart_ships_the_crd_from_crds_byte_for_byte(helm, tmp_path):
    helm.run("package", str(CHART), "-d", str(tmp_path))
    [archive] = tmp_path.glob("joyn-scim-*.tgz")
    with tarfile.open(archive) as tar:
        shipped = tar.extractfile("joyn-scim/files/crd.yaml").read()
    assert shipped == CRD_PATH.read_bytes()
    source = yaml.safe_load(CRD_PATH.read_text())
    [crd] = find(docs(helm.template()), "CustomResourceDefinition")
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Kept from Argo CD's pruning too (deleting the CRD deletes every tenant).
    assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
    [loose] = find(docs(helm.template(values={"crds": {"keep": False}})),
                   "CustomResourceDefinition")
    assert not {"helm.sh/resource-policy", "argocd.argoproj.io/sync-options"} & \
        (loose["metadata"].get("annotations") or {}).keys()
    assert not find(docs(helm.template(values={"crds": {"enabled": False}})),
                    "CustomResourceDefinition")


def test_roles_hold_exactly_the_documented_permissions_and_no_wildcard(helm):
    table = documented_permissions()
    tenant_rows = rows(table, "tenant namespaces")
    cluster_rows = rows(table, "cluster")
    glob_rows = rows(table, "cluster, globs only")

    objs = docs(helm.template())
    [cluster] = find(objs, "ClusterRole", "t-joyn-scim")
    assert rules_as_rows(cluster["rules"]) == tenant_rows | cluster_rows
    assert not find(objs, "Role", "t-joyn-scim")

    objs = docs(helm.template(values=VALUE_SETS["exact namespaces"]))
    [cluster] = find(objs, "ClusterRole", "t-joyn-scim")
    assert rules_as_rows(cluster["rules"]) == cluster_rows
    roles = find(objs, "Role", "t-joyn-scim")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules_as_rows(r["rules"]) == tenant_rows for r in roles)
    assert sorted(b["metadata"]["namespace"] for b in find(objs, "RoleBinding", "t-joyn-scim")
                  ) == ["team-a", "team-b"]

    objs = docs(helm.template(values=VALUE_SETS["glob"]))
    [cluster] = find(objs, "ClusterRole", "t-joyn-scim")
    assert rules_as_rows(cluster["rules"]) == tenant_rows | cluster_rows | glob_rows

    # CloudNativePG Clusters in namespaces of their own: a Role in each, and nothing more.
    objs = docs(helm.template(values={"operator": {"postgresql": {
        "clusterNamespaces": ["databases"]}}}))
    [role] = find(objs, "Role", "t-joyn-scim-postgresql")
    assert role["metadata"]["namespace"] == "databases"
    assert rules_as_rows(role["rules"]) == rows(table, "cluster namespaces")
    [binding] = find(objs, "RoleBinding", "t-joyn-scim-postgresql")
    assert binding["metadata"]["namespace"] == "databases"
    assert not find(docs(helm.template()), "Role", "t-joyn-scim-postgresql")
    for values in VALUE_SETS.values():
        objs = docs(helm.template(values=values))
        for role in [*find(objs, "ClusterRole"), *find(objs, "Role")]:
            assert "*" not in str(role["rules"]), role


def test_the_rep_role_holds_exactly_the_documented_permissions(helm):
    text = (ROOT / "docs" / "reps.md").read_text()
    table = text.split("<!-- rep-permissions -->")[1].split("<!-- /rep-permissions -->")[0]
    documented = set()
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        documented.add(("" if cells[0] == "core" else cells[0], cells[1],
                        frozenset(v.strip() for v in cells[2].split(","))))
    [role] = find(docs(helm.template()), "ClusterRole", "t-joyn-scim-rep")
    assert rules_as_rows(role["rules"]) == documented
    assert not find(docs(helm.template()), "ClusterRoleBinding", "t-joyn-scim-rep")
    assert not find(docs(helm.template(values={"rbac": {"repRole": False}})), "ClusterRole",
                    "t-joyn-scim-rep")


def test_the_operator_values_map_one_to_one_onto_its_config(helm):
    [deployment] = find(docs(helm.template(values=EVERYTHING)), "Deployment")
    env = {e["name"]: e["value"] for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    cfg = OperatorConfig.from_env(env)
    op = EVERYTHING["operator"]
    assert cfg == OperatorConfig(
        server_image=op["serverImage"], domain=op["domain"], url_scheme=op["urlScheme"],
        ingress_class=op["ingressClass"], ingress_annotations=op["ingressAnnotations"],
        tls_issuer=op["tlsIssuer"], ingress_namespace=op["ingressNamespace"],
        monitoring_namespace=op["monitoringNamespace"],
        watch_namespaces=tuple(op["watchNamespaces"]), resync_seconds=op["resyncSeconds"],
        activity_seconds=op["activitySeconds"], log_level=op["logLevel"],
        metrics_address="0.0.0.0:9090", liveness_endpoint="http://0.0.0.0:9091/healthz",
        pod_namespace="ops", pod_labels=deployment["spec"]["selector"]["matchLabels"],
        rollout=RolloutPolicy("OptIn", 3),
        ingress_from=tuple(op["ingressFrom"]), route_check_address=op["routeCheck"]["address"],
        route_check_seconds=op["routeCheck"]["periodSeconds"],
        tenant_defaults={f"{section}.{key}": value
                         for section, fields in op["tenantDefaults"].items()
                         for key, value in fields.items()})
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/joyn-scim@sha256:" + "a" * 64
    # Unset, the tenants' servers run the operator's own image.
    [plain] = find(docs(helm.template()), "Deployment")
    env = {e["name"]: e["value"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOYN_OPERATOR_SERVER_IMAGE"] == \
        plain["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/sevenlakes/joyn-scim:" + yaml.safe_load((CHART / "Chart.yaml").read_text())[
            "appVersion"]


def test_monitoring_renders_in_auto_mode_only_where_it_is_served(helm):
    assert not [o for o in docs(helm.template()) if o["kind"] in MONITORING]
    served = docs(helm.template("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
                                "--api-versions", "monitoring.coreos.com/v1/PodMonitor",
                                "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"))
    assert sorted(o["kind"] for o in served if o["kind"] in MONITORING) == \
        ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    [rule] = find(served, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    runbook = (ROOT / "docs" / "platform" / "monitoring.md").read_text().split(
        "## Alerts and what to do")[1]
    for alert in alerts:  # each has a runbook paragraph
        assert f"**{alert}**" in runbook, f"{alert}: no runbook in docs/platform/monitoring.md"


def test_the_operator_service_selects_the_operator_pod_and_not_the_test_pod(helm):
    objs = docs(helm.template())
    [service] = find(objs, "Service")
    [deployment] = find(objs, "Deployment")
    [test_pod] = find(objs, "Pod")
    selector = service["spec"]["selector"].items()
    assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= test_pod["metadata"]["labels"].items()


# -- the chart installed on the real cluster ---------------------------------------------------

class Release:
    def __init__(self, helm: Helm, kube, cluster, namespace: str, tenants: str) -> None:
        self.helm, self.kube, self.cluster = helm, kube, cluster
        self.name, self.namespace, self.tenants = "joyn", namespace, tenants
        self.values = chart_values(cluster, tenants)

    def install(self, *extra: str, command: str = "install") -> None:
        self.helm.run(command, self.name, str(CHART), "-n", self.namespace, "--wait",
                      "--timeout", "4m", *self.helm.values(self.values), *extra, timeout=300)

    def operator_pods(self) -> list[dict]:
        return self.kube.get(f"/api/v1/namespaces/{self.namespace}/pods", params={
            "labelSelector": "app.kubernetes.io/component=operator,"
                             f"app.kubernetes.io/instance={self.name}"}).json()["items"]

    def logs(self) -> str:
        try:
            return self.cluster.cp.kubectl("logs", "-n", self.namespace,
                                           f"deploy/{self.name}-joyn-scim", "--tail=80")
        except RuntimeError as e:
            return str(e)


@pytest.fixture(scope="module")
def release(helm, kube, cluster, tenant_crd, request):
    """The chart installed in a namespace of its own, watching one tenant namespace, adopting
    the CRD the session applied with kubectl (docs/platform/upgrade.md's migration step)."""
    crd = "crd/joynscimtenants.scim.sevenlakes.com"
    ns, tenants = kube.namespace("joyn-scim-system"), kube.namespace("tenants")
    cluster.cp.kubectl("label", "--overwrite", crd, "app.kubernetes.io/managed-by=Helm")
    cluster.cp.kubectl("annotate", "--overwrite", crd, "meta.helm.sh/release-name=joyn",
                       f"meta.helm.sh/release-namespace={ns}")
    rel = Release(helm, kube, cluster, ns, tenants)
    try:
        rel.install()
    except AssertionError:
        print(rel.logs())
        raise
    yield rel
    if request.session.testsfailed:
        print(f"--- in-cluster operator log ---\n{rel.logs()}")
    helm.run("uninstall", rel.name, "-n", ns, "--wait", check=False)


def test_the_operator_runs_in_a_pod_under_its_own_service_account(release, kube, cluster):
    [pod] = release.operator_pods()
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "joyn-joyn-scim"
    assert pod["status"]["phase"] == "Running"
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True

    name = create_tenant(kube, cluster, release.tenants)
    wait_ready(kube, release.tenants, name)
    url = kube.get(f"{TENANTS.format(ns=release.tenants)}/{name}").json()["status"]["url"]
    entra = Entra(cluster, url)
    token = secret(kube, release.tenants, name)["token"]
    eventually(lambda: entra.test_connection(token) == 200, timeout=30,
               what="Test Connection through the ingress controller")
    assert entra.test_connection("not-the-token") == 401


def test_helm_test_finds_the_crd_served_and_the_operator_answering(release, helm):
    r = helm.run("test", release.name, "-n", release.namespace, timeout=300, check=False)
    assert r.returncode == 0 and "Phase:          Succeeded" in r.stdout, r.stdout + r.stderr
    # The check is real: with no operator to answer, it fails.
    deployment = f"deploy/{release.name}-joyn-scim"
    release.cluster.cp.kubectl("scale", "-n", release.namespace, deployment, "--replicas=0")
    try:
        eventually(lambda: not release.operator_pods(), timeout=60, what="no operator pod")
        r = helm.run("test", release.name, "-n", release.namespace, timeout=300, check=False)
        assert r.returncode != 0 and "Phase:          Failed" in r.stdout, r.stdout + r.stderr
        logs = release.cluster.cp.kubectl("logs", "-n", release.namespace,
                                          f"{release.name}-joyn-scim-test")
        assert "has no ready endpoint" in logs, logs
    finally:
        release.install(command="upgrade")  # back to the chart's one replica


def can_i(cluster, namespace: str, sa: str) -> set[tuple]:
    """What `kubectl auth can-i --list` says the ServiceAccount may do in `namespace`."""
    out = cluster.cp.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={sa}")
    got = set()
    for line in out.splitlines()[1:]:
        m = re.match(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]$", line.strip())
        if not m or m.group(2) or m.group(1) in SELF_REVIEWS:  # nonResourceURLs: discovery
            continue
        # <resource>.<group>[/<subresource>], e.g. joynscimtenants.scim.sevenlakes.com/status
        named, _, sub = m.group(1).partition("/")
        resource, _, group = named.partition(".")
        got.add((group, f"{resource}/{sub}" if sub else resource, frozenset(m.group(4).split())))
    return got


def test_the_service_account_can_do_exactly_the_documented_set(release, cluster, kube):
    table = documented_permissions()
    sa = f"system:serviceaccount:{release.namespace}:joyn-joyn-scim"
    assert can_i(cluster, release.tenants, sa) == rows(table, "tenant namespaces", "cluster")
    # Elsewhere, only the cluster-scoped read.
    other = kube.namespace("unwatched")
    assert can_i(cluster, other, sa) == rows(table, "cluster")


def test_upgrade_rolls_the_operator_and_leaves_tenants_tokens_and_servers(release, kube,
                                                                         cluster):
    name = create_tenant(kube, cluster, release.tenants)
    wait_ready(kube, release.tenants, name)
    token = secret(kube, release.tenants, name)["token"]
    [server] = pods(kube, release.tenants, name)
    [before] = release.operator_pods()

    release.values["operator"]["logLevel"] = "info"
    release.install(command="upgrade")
    [after] = eventually(lambda: [p for p in release.operator_pods()
                                  if p["metadata"]["uid"] != before["metadata"]["uid"]
                                  and p["status"]["phase"] == "Running"], timeout=120,
                         what="the operator's new pod")
    env = {e["name"]: e.get("value", "") for e in after["spec"]["containers"][0]["env"]}
    assert env["JOYN_OPERATOR_LOG_LEVEL"] == "info"
    assert len(release.operator_pods()) == 1  # Recreate: the old one is gone
    wait_ready(kube, release.tenants, name)
    assert secret(kube, release.tenants, name)["token"] == token
    [same] = pods(kube, release.tenants, name)
    assert same["metadata"]["uid"] == server["metadata"]["uid"]
    assert same["status"]["containerStatuses"][0]["restartCount"] == \
        server["status"]["containerStatuses"][0]["restartCount"]


def test_uninstall_leaves_tenants_tokens_data_and_the_crd(release, kube, cluster, helm):
    name = create_tenant(kube, cluster, release.tenants)
    wait_ready(kube, release.tenants, name)
    token = secret(kube, release.tenants, name)["token"]
    helm.run("uninstall", release.name, "-n", release.namespace, "--wait")
    assert kube.get(f"/apis/apps/v1/namespaces/{release.namespace}/deployments/"
                    "joyn-joyn-scim").status_code == 404
    assert kube.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/joyn-joyn-scim"
                    ).status_code == 404
    assert kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                    "joynscimtenants.scim.sevenlakes.com").status_code == 200
    assert kube.get(f"{TENANTS.format(ns=release.tenants)}/{name}").status_code == 200
    assert secret(kube, release.tenants, name)["token"] == token
    assert kube.get(f"/api/v1/namespaces/{release.tenants}/persistentvolumeclaims/"
                    f"{name}-scim-data").status_code == 200
    assert kube.get(f"/apis/apps/v1/namespaces/{release.tenants}/deployments/{name}-scim"
                    ).status_code == 200


