"""Tenant servers pulled from a private registry on the real node: a registry built from the
Go module proxy (distribution's cmd/registry, hack/registry) with htpasswd auth, which the
node's containerd reaches over the link the harness made between the host and the node (the
API server's address, where the node already goes). Without credentials the kubelet's pull is
refused and the tenant says ImagePullBackOff; with the tenant's own pull secret, or the
operator's default one, the server is pulled and the tenant is Ready.

Plain HTTP, not TLS: what is tested is the credential, which containerd sends alike over
either; hosts.toml tells containerd this registry speaks HTTP (as a platform's mirror config
would name its CA instead)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from types import SimpleNamespace

import httpx
import pytest
from controlplane import free_port, terminate  # hack/kube, on the path by conftest

from .conftest import built, eventually, module_namespace, module_operator

TENANTS = "/apis/scim.sevenlakes.com/v1alpha1/namespaces/{ns}/joynscimtenants"
SECRETS = "/api/v1/namespaces/{ns}/secrets"
PULL_FAILED = {"ErrImagePull", "ImagePullBackOff"}
USER = "joyn"


@pytest.fixture(scope="module")
def registry(cluster, tmp_path_factory):
    """The registry, holding the server image built here as a few images of its own (one per
    case, so no case finds its image already pulled by another), none of them in the node."""
    bins = built("registry", "REGISTRY_BINS_DIR", "the registry is")
    d = tmp_path_factory.mktemp("registry")
    password = secrets.token_urlsafe(18)
    (d / "htpasswd").write_text(subprocess.run(
        [str(bins / "htpasswd")], input=f"{USER}\n{password}\n", capture_output=True,
        text=True, check=True).stdout)
    host = f"{cluster.node.api_address}:{free_port()}"
    (d / "config.yml").write_text(json.dumps({  # JSON is YAML
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(d / "data")}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "joyn-scim-test", "path": str(d / "htpasswd")}}}))
    log = open(d / "registry.log", "ab")
    proc = subprocess.Popen([str(bins / "registry"), "serve", str(d / "config.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    hosts = cluster.node.registry_hosts / host
    try:
        eventually(lambda: _status(f"http://{host}/v2/") == 401, timeout=30,
                   what="the registry to ask for credentials")
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n[host."http://{host}"]\n'
            '  capabilities = ["pull", "resolve"]\n')
        # The image built here, pushed once for its layers, then under each tag as an image
        # of its own. Not the same image: the kubelet (KubeletEnsureSecretPulledImages, on by
        # default since 1.35) remembers an image it pulled with credentials by its ID and from
        # then on re-pulls it for any pod without those credentials, so the preloaded server
        # image every other test runs (localhost/..., from no registry) would stop starting.
        ref = f"{host}/joyn-scim:built-here"
        cluster.node.ctr("images", "tag", "--force", cluster.images.app, ref)
        cluster.node.ctr("images", "push", "--plain-http", "--user", f"{USER}:{password}", ref)
        cluster.node.ctr("images", "rm", ref)
        for tag in ("own", "default", "opted-out", "none"):
            _push_variant(host, (USER, password), "built-here", tag)
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        yield SimpleNamespace(
            host=host, image=lambda tag: f"{host}/joyn-scim:{tag}", password=password,
            dockerconfig=json.dumps({"auths": {host: {"auth": auth}}}))
    finally:
        terminate(proc)
        log.close()
        for f in hosts.glob("*"):
            f.unlink()
        if hosts.exists():
            hosts.rmdir()


MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")


def _push_variant(host: str, auth: tuple[str, str], source: str, tag: str) -> None:
    """Tag `tag`: the image at tag `source` with a label naming `tag` in its config, so an
    image of its own (a new config digest, which is the image's ID) on the same layers.
    Through the registry's API (distribution's /v2), as no image tool here edits a config."""
    base = f"http://{host}/v2/joyn-scim"
    with httpx.Client(auth=auth, timeout=30) as http:
        got = http.get(f"{base}/manifests/{source}", headers={"Accept": MANIFEST_TYPES})
        got.raise_for_status()
        manifest = got.json()
        config = http.get(f"{base}/blobs/{manifest['config']['digest']}")
        config.raise_for_status()
        document = config.json()
        labels = document.setdefault("config", {}).get("Labels") or {}
        document["config"]["Labels"] = {**labels, "test.joyn-scim/pull-secrets": tag}
        blob = json.dumps(document).encode()
        digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
        upload = http.post(f"{base}/blobs/uploads/")
        assert upload.status_code == 202, upload.text
        # The upload's own query (its signed state) stays: httpx's params= would replace it.
        location = httpx.URL(f"http://{host}/").join(upload.headers["Location"])
        put = http.put(location.copy_add_param("digest", digest), content=blob,
                       headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, put.text
        manifest["config"] = {**manifest["config"], "digest": digest, "size": len(blob)}
        put = http.put(f"{base}/manifests/{tag}", content=json.dumps(manifest).encode(),
                       headers={"Content-Type": got.headers["Content-Type"]})
        assert put.status_code == 201, put.text


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def pull_secret(kube, ns: str, name: str, registry) -> None:
    r = kube.create(SECRETS.format(ns=ns), {
        "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(registry.dockerconfig.encode()).decode()}})
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def own_ns(kube, tenant_crd, registry):
    """Tenants that bring their own pull secret; the operator has none."""
    ns = next(gen := module_namespace(kube, "pull-own"))
    pull_secret(kube, ns, "tenant-registry", registry)
    yield ns
    next(gen, None)


@pytest.fixture(scope="module")
def default_ns(kube, tenant_crd, registry):
    """Tenants under an operator whose default pull secret is in their namespace."""
    ns = next(gen := module_namespace(kube, "pull-default"))
    pull_secret(kube, ns, "platform-registry", registry)
    yield ns
    next(gen, None)


@pytest.fixture(scope="module")
def plain_operator(cluster, own_ns, tmp_path_factory, request):
    yield from module_operator(cluster, own_ns, tmp_path_factory, request,
                               SERVER_IMAGE=cluster.images.app, RESYNC_SECONDS="10",
                               ACTIVITY_SECONDS="0")


@pytest.fixture(scope="module")
def defaulting_operator(cluster, default_ns, tmp_path_factory, request):
    yield from module_operator(
        cluster, default_ns, tmp_path_factory, request, SERVER_IMAGE=cluster.images.app,
        RESYNC_SECONDS="10", ACTIVITY_SECONDS="0", TENANT_DEFAULTS=json.dumps(
            {"server": {"imagePullSecrets": [{"name": "platform-registry"}]}}))


def create(kube, ns: str, **server) -> str:
    name = f"p{secrets.token_hex(3)}"
    r = kube.create(TENANTS.format(ns=ns), {
        "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
        "metadata": {"name": name},
        "spec": {"displayName": "Acme", "ingress": {"enabled": False}, "server": server}})
    assert r.status_code == 201, r.text
    return name


def ready_condition(kube, ns, name) -> dict:
    status = kube.get(f"{TENANTS.format(ns=ns)}/{name}").json().get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}


def pull_refused(kube, ns, name) -> dict:
    return eventually(lambda: (c := ready_condition(kube, ns, name)).get("reason") in PULL_FAILED
                      and c, timeout=120, what=f"{name} to say the pull failed")


def wait_ready(kube, ns, name) -> None:
    eventually(lambda: ready_condition(kube, ns, name).get("status") == "True", timeout=180,
               what=f"{name} Ready")


def test_a_tenant_without_credentials_cannot_pull_then_its_own_pull_secret_pulls(
        kube, own_ns, plain_operator, registry):
    name = create(kube, own_ns, image=registry.image("own"))
    cond = pull_refused(kube, own_ns, name)
    assert cond["status"] == "False"
    r = kube.http.patch(f"{TENANTS.format(ns=own_ns)}/{name}",
                        json={"spec": {"server": {"imagePullSecrets": [
                            {"name": "tenant-registry"}]}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    wait_ready(kube, own_ns, name)
    deployment = kube.get(f"/apis/apps/v1/namespaces/{own_ns}/deployments/{name}-scim").json()
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "tenant-registry"}]


def test_the_operators_default_pull_secret_pulls_unless_a_tenant_opts_out(
        kube, default_ns, defaulting_operator, registry):
    defaulted = create(kube, default_ns, image=registry.image("default"))
    opted_out = create(kube, default_ns, image=registry.image("opted-out"), imagePullSecrets=[])
    wait_ready(kube, default_ns, defaulted)
    pull_refused(kube, default_ns, opted_out)
    # The operator never reads the pull secret, so its log cannot hold the credential.
    assert registry.password not in defaulting_operator.log.read_text()


def test_a_pull_without_any_credentials_is_refused_by_the_registry_itself(registry):
    """The registry really asks for credentials (what makes the cases above mean anything)."""
    r = httpx.get(f"http://{registry.host}/v2/joyn-scim/manifests/none", timeout=5)
    assert r.status_code == 401
    ok = httpx.get(f"http://{registry.host}/v2/joyn-scim/manifests/none", timeout=5,
                   auth=(USER, registry.password),
                   headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                      "application/vnd.oci.image.manifest.v1+json, "
                                      "application/vnd.docker.distribution.manifest.v2+json"})
    assert ok.status_code == 200
