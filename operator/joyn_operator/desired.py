"""The desired state of a tenant's children: the templates in templates/, fed a resolved tenant.

The templates are YAML a platform engineer can read; all the deciding is done in tenant.py
before they render, so they only place values. Every value goes through `tojson`: JSON is
YAML, so a value is always one scalar, list or mapping wherever it lands, and no string a
tenant sets (quotes, newlines, `{{ }}`, `: `, `#`) can change a manifest's structure.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from functools import cache, lru_cache

import jinja2
import orjson
import yaml

from .keys import PREVIOUS_SIGNING_KEYS_KEY, PREVIOUS_TOKEN_KEY, SIGNING_KEY_KEY, TOKEN_KEY, URL_KEY
from .tenant import ResolvedTenant

TOKEN_DIR = "/var/run/joyn-scim/token"  # noqa: S105 - a mount path
EVENTS_TOKEN_DIR = "/var/run/joyn-scim/events-token"  # noqa: S105 - a mount path
SIGNING_KEY_DIR = "/var/run/joyn-scim/events-signing-key"
PUSH_AUTHORIZATION_DIR = "/var/run/joyn-scim/events-push"
PUSH_AUTHORIZATION_KEY = "authorization"  # the file's name in that folder
# What the templates know of the server's container, defined once.
SERVER = {"port": 8080, "data_dir": "/data", "token_dir": TOKEN_DIR, "token_key": TOKEN_KEY,
          "token_files": [f"{TOKEN_DIR}/{TOKEN_KEY}", f"{TOKEN_DIR}/{PREVIOUS_TOKEN_KEY}"],
          "events_token_dir": EVENTS_TOKEN_DIR,
          "events_token_files": [f"{EVENTS_TOKEN_DIR}/{TOKEN_KEY}",
                                 f"{EVENTS_TOKEN_DIR}/{PREVIOUS_TOKEN_KEY}"],
          "signing_key_dir": SIGNING_KEY_DIR,
          "signing_key_files": [f"{SIGNING_KEY_DIR}/{SIGNING_KEY_KEY}",
                                f"{SIGNING_KEY_DIR}/{PREVIOUS_SIGNING_KEYS_KEY}"],
          "push_authorization_dir": PUSH_AUTHORIZATION_DIR,
          "push_authorization_key": PUSH_AUTHORIZATION_KEY,
          "push_authorization_file": f"{PUSH_AUTHORIZATION_DIR}/{PUSH_AUTHORIZATION_KEY}"}
CHILD_TEMPLATES = ("persistentvolumeclaim.yaml", "deployment.yaml", "service.yaml",
                   "ingress.yaml", "networkpolicy.yaml",
                   "poddisruptionbudget.yaml")  # in apply order
# Characters YAML does not allow, or reads as line breaks, even inside a quoted scalar;
# json.dumps(ensure_ascii=False) leaves them as they are, so tojson escapes them. (Not
# ensure_ascii=True: YAML would read a \ud83d\ude00 pair as two lone surrogates.)
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# A lone surrogate is no character at all, and libyaml refuses even its escape; it becomes
# U+FFFD, as in the API server's own JSON decoder (so it cannot reach us from there anyway).
_SURROGATE = re.compile("[\ud800-\udfff]")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it


def tojson(value: object) -> str:
    """`value` as one JSON value on one line, which YAML reads back as exactly `value`."""
    text = _SURROGATE.sub("\ufffd", json.dumps(value, ensure_ascii=False))
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("joyn_operator", "templates"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False)  # noqa: S701 - renders YAML, not HTML; values go through tojson
    env.filters["tojson"] = tojson  # instead of jinja's, which escapes for HTML
    env.globals["server"] = SERVER
    return env


def render(template: str, **values: object) -> dict:
    text = environment().get_template(template).render(**values)
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - CSafeLoader or SafeLoader


def children(t: ResolvedTenant) -> list[dict]:
    """Every child except the token Secret (whose values need the cluster), in apply order."""
    wanted = tuple(name for name in CHILD_TEMPLATES
                   if (name != "ingress.yaml" or t.ingress.managed)
                   and (name != "networkpolicy.yaml" or t.network_policy)
                   # PostgreSQL holds the data: no volume (an existing one is kept, not
                   # deleted: it is what a move came from, and deletionPolicy governs it).
                   and (name != "persistentvolumeclaim.yaml" or t.storage.postgres is None)
                   and (name != "poddisruptionbudget.yaml" or t.server.replicas > 1))
    # The resolved tenant as JSON is the cache key: an unchanged tenant (every resync) costs
    # a lookup and a copy, ~0.1 ms, instead of rendering and parsing YAML again, ~4 ms.
    key = json.dumps([wanted, t], default=_plain)
    return orjson.loads(_render_children(key))


def _plain(value: object) -> object:
    """The JSON of a resolved tenant's parts: dataclasses by their fields, a timedelta as text
    (faster than dataclasses.asdict, which deep-copies)."""
    return vars(value) if dataclasses.is_dataclass(value) else str(value)


@lru_cache(maxsize=1024)
def _render_children(key: str) -> bytes:
    wanted, t = json.loads(key)  # the templates read a dict's keys as they read attributes
    return orjson.dumps([render(name, t=t) for name in wanted])


def token_secret(t: ResolvedTenant, tokens: dict[str, str], annotations: dict[str, str]) -> dict:
    """The generated token Secret: `tokens` (TokenState.data: made once at creation, then
    always carried over from the existing Secret, so reconciles never change a token), the
    lifecycle `annotations`, and the Tenant URL for whoever hands both to the customer."""
    data = dict(tokens)
    if t.url:
        data[URL_KEY] = t.url
    return generated_secret(t, t.names.secret, data, annotations)


def generated_secret(t: ResolvedTenant, name: str, data: dict[str, str],
                     annotations: dict[str, str]) -> dict:
    """A Secret the operator generates (the token's, the event stream's receiver token and
    signing keys), named `name`, holding `data` (TokenState.data, carried over from the
    existing Secret, so reconciles never change it) and its lifecycle `annotations`. Owned by
    the tenant only with deletionPolicy Delete, like the data it protects."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return render("secret.yaml", t=t, name=name, data=encoded, annotations=annotations)


def storage_status(t: ResolvedTenant) -> dict:
    """status.storage: where the tenant's data is, for people (never a password)."""
    pg = t.storage.postgres
    if pg is None:
        return {"type": "SQLite", "volumeClaimName": t.names.pvc}
    out: dict = {"type": "PostgreSQL", "connectionSecretRef": {"name": pg.secret}}
    if pg.cluster is not None:
        out["cluster"] = {"name": pg.cluster.name, "namespace": pg.cluster.namespace}
        out["database"] = pg.cluster.role
    return out
