"""The success rep's commands, each `async def cmd_<name>(args, cluster, out) -> int`: read
the tenant, print, and for `rotate` annotate the tenant so that the operator acts (the CLI
never writes a token or a Secret itself)."""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from scim_server.durations import parse_duration

from ..activity import server_address
from ..config import OperatorConfig
from ..desired import SERVER
from ..keys import (
    PAUSED_ANNOTATION,
    REPLACED_ACK_ANNOTATION,
    ROTATE_ANNOTATION,
    ROTATE_OVERLAP_ANNOTATION,
)
from ..tenant import ResolvedTenant, resolve
from ..tokens import EVENTS_TOKEN, TokenState, fmt
from . import handover, probe, report, views
from .cluster import CliError, Cluster


def _resolved(tenant: dict) -> ResolvedTenant:
    """The tenant as the operator resolves it: its token Secret, pause and rotation do not
    depend on the operator's settings, so their defaults serve."""
    return resolve(tenant, OperatorConfig())


async def _tokens(cluster: Cluster, tenant: dict) -> TokenState:
    """The tenant's tokens as its Secret holds them: the operator's lifecycle state, or for a
    bring-your-own Secret just the current token."""
    t = _resolved(tenant)
    got = await cluster.secret(t.namespace, t.token.secret_name)
    data, annotations = got or ({}, {})
    now = datetime.now(UTC)
    state = TokenState.from_secret(data, annotations, now) if t.token.own else (
        TokenState(current=data[t.token.key].strip(), issued_at=now)
        if data.get(t.token.key, "").strip() else None)
    if state is None:
        ready = views.condition(tenant, "Ready")
        raise CliError(f"tenant {t.name} has no token yet: Secret {t.token.secret_name} has no "
                       f"key {t.token.key!r} (Ready: {ready.get('reason', 'not reconciled')})")
    return state


def _previous_until(tenant: dict) -> str | None:
    return ((tenant.get("status") or {}).get("token") or {}).get("previousValidUntil")


def _url(tenant: dict) -> str:
    url = (tenant.get("status") or {}).get("url")
    if not url:
        ready = views.condition(tenant, "Ready")
        raise CliError(f"tenant {tenant['metadata']['name']} has no Tenant URL yet "
                       f"({ready.get('reason', 'not reconciled')}: {ready.get('message', '')})")
    return url


def _not_ready_warning(tenant: dict) -> str | None:
    ready = views.condition(tenant, "Ready")
    if ready.get("status") != "True":
        return (f"warning: tenant {tenant['metadata']['name']} is not Ready "
                f"({ready.get('reason', 'not reconciled')}): {ready.get('message', '')}")
    return None


# -- tenants -------------------------------------------------------------------------------------

async def cmd_tenants(args, cluster: Cluster, out) -> int:
    items = sorted(await cluster.tenants(),
                   key=lambda t: (t["metadata"]["namespace"], t["metadata"]["name"]))
    now = datetime.now(UTC)
    rows = [views.tenant_row(t, now) for t in items]
    if args.output in ("json", "yaml"):
        print(views.dump(rows, args.output), file=out)
    elif not rows:
        where = "any namespace" if cluster.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No tenants in {where}.", file=out)
    else:
        print(views.tenants_table(rows, now, namespaces=cluster.all_namespaces,
                                  wide=args.output == "wide"), file=out)
    return 0


# -- credentials ---------------------------------------------------------------------------------

async def cmd_credentials(args, cluster: Cluster, out) -> int:
    tenant = await cluster.tenant(args.tenant)
    if args.events:
        return await _events_credentials(args, cluster, tenant, out)
    url = _url(tenant)
    state = await _tokens(cluster, tenant)
    shown = state.current if args.reveal else views.mask(state.current)
    until = _previous_until(tenant)
    if args.output == "json":
        print(json.dumps({"tenantUrl": url, "secretToken": shown, "revealed": args.reveal,
                          "previousTokenValidUntil": until}, indent=2), file=out)
        return 0
    if args.output == "env":
        print(f"JOYN_SCIM_TENANT_URL={shlex.quote(url)}", file=out)
        print(f"JOYN_SCIM_SECRET_TOKEN={shlex.quote(shown)}", file=out)
        return 0
    if warning := _not_ready_warning(tenant):
        print(warning, file=sys.stderr)
    print(f"Tenant URL:   {url}", file=out)
    print(f"Secret Token: {shown}", file=out)
    if state.previous and until:
        print(f"The previous token stays valid until {until}.", file=out)
    return 0


def _events_of(tenant: dict) -> ResolvedTenant:
    t = _resolved(tenant)
    if t.events is None:
        raise CliError(f"tenant {t.name} has no event stream: spec.events.enabled is not true "
                       "(docs/platform/reference.md: The event stream)")
    return t


async def _receiver_token(cluster: Cluster, t: ResolvedTenant) -> TokenState:
    got = await cluster.secret(t.namespace, t.events.token_secret)
    data, annotations = got or ({}, {})
    state = TokenState.from_secret(data, annotations, datetime.now(UTC), EVENTS_TOKEN)
    if state is None:
        raise CliError(f"tenant {t.name} has no event receiver token yet: Secret "
                       f"{t.events.token_secret} is missing or empty (is the operator running?)")
    return state


async def _events_credentials(args, cluster: Cluster, tenant: dict, out) -> int:
    """What the Joyn FSM application team needs to connect a receiver: the in-cluster
    endpoints (through the tenant's Service, which the NetworkPolicy opens to
    spec.events.receivers), what to check the SETs against, and the receiver's token."""
    t = _events_of(tenant)
    issuer = _url(tenant)
    state = await _receiver_token(cluster, t)
    shown = state.current if args.reveal else views.mask(state.current)
    base = f"http://{t.names.service}.{t.namespace}.svc:{SERVER['port']}/events"
    until = ((tenant.get("status") or {}).get("events") or {}).get("receiverToken", {}).get(
        "previousValidUntil")
    facts = {"eventsUrl": base, "jwksUrl": f"{base}/jwks.json",
             "snapshotUrl": f"{base}/snapshot", "issuer": issuer,
             "audience": t.events.audience, "delivery": "push" if t.events.push else "poll",
             "pushUrl": t.events.push.url if t.events.push else None,
             "receiverToken": shown, "revealed": args.reveal,
             "previousTokenValidUntil": until}
    if args.output == "json":
        print(json.dumps(facts, indent=2), file=out)
        return 0
    if args.output == "env":
        for name, key in (("URL", "eventsUrl"), ("JWKS_URL", "jwksUrl"),
                          ("SNAPSHOT_URL", "snapshotUrl"), ("ISSUER", "issuer"),
                          ("AUDIENCE", "audience"), ("TOKEN", "receiverToken")):
            print(f"JOYN_EVENTS_{name}={shlex.quote(facts[key])}", file=out)
        return 0
    if warning := _not_ready_warning(tenant):
        print(warning, file=sys.stderr)
    if t.events.push:
        print(f"Delivery:        push (RFC 8935) to {t.events.push.url}", file=out)
    else:
        print(f"Poll (RFC 8936): POST {base}", file=out)
    print(f"Snapshot:        GET {base}/snapshot", file=out)
    print(f"JWKS:            {base}/jwks.json", file=out)
    print(f"Issuer (iss):    {issuer}", file=out)
    print(f"Audience (aud):  {t.events.audience}", file=out)
    print(f"Receiver token:  {shown}", file=out)
    if state.previous and until:
        print(f"The previous receiver token stays valid until {until}.", file=out)
    print("These addresses work inside the cluster, from the pods spec.events.receivers "
          "admits; send the token as 'Authorization: Bearer <token>' (never Entra's token).",
          file=out)
    return 0


# -- events --------------------------------------------------------------------------------------

async def cmd_events(args, cluster: Cluster, out) -> int:
    """The tenant's stream as its server's GET /events/tail shows it (watching, never
    acknowledging), through a port-forward to the server's pod with the receiver's token."""
    tenant = await cluster.tenant(args.tenant)
    t = _events_of(tenant)
    state = await _receiver_token(cluster, t)
    pods = await cluster.children(tenant, kinds=("Pod",))
    pod = next((p["metadata"]["name"] for p in pods["Pod"]
                if server_address([p])), None)
    if pod is None:
        raise CliError(f"tenant {t.name}'s server has no ready pod (kubectl joyn status "
                       f"{t.name})")
    target = f"/events/tail?after={args.after}" + ("&follow=1" if args.follow else "")
    if args.output == "text":
        print(views.event_line(views.EVENT_HEAD), file=out)
    pending, error = b"", b""
    async for status, chunk in cluster.forward_get(
            t.namespace, pod, SERVER["port"], target,
            {"Authorization": f"Bearer {state.current}", "Accept": "application/x-ndjson"}):
        if status != 200:
            error += chunk
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            _print_tail(raw.decode(errors="replace"), args.output, out)
    if error or pending.strip():
        if error:
            raise CliError(f"the tenant's server refused: {_events_error(error)}")
        _print_tail(pending.decode(errors="replace"), args.output, out)
    return 0


def _print_tail(line: str, output: str, out) -> None:
    if output == "json":
        if line.strip():
            print(line.strip(), file=out, flush=True)
        return
    text, warning = views.tail_line(line)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if text:
        print(text, file=out, flush=True)


def _events_error(body: bytes) -> str:
    """The server's error (RFC 8935's {"err", "description"}), or its first bytes."""
    try:
        e = json.loads(body)
        return f"{e['err']}: {e['description']}"
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:200]


# -- handover ------------------------------------------------------------------------------------

async def cmd_handover(args, cluster: Cluster, out) -> int:
    """The message for the customer's Entra admin. The rep says which one (`--rotation`): only
    the rep knows whether this admin already has the application (a token may be rotated
    before the first handover, and a new admin may set up the app again); the tenant's status
    only prompts the rep when it saw a rotation or a replaced token."""
    name = args.tenant
    if args.reveal:
        raise CliError(f"the handover message never carries the Secret Token: send the message, "
                       f"and the token by another channel, from `kubectl joyn credentials "
                       f"{name} --reveal`")
    tenant = await cluster.tenant(name)
    url = _url(tenant)
    if warning := _not_ready_warning(tenant):
        print(warning, file=sys.stderr)
    token = (tenant.get("status") or {}).get("token") or {}
    changed = token.get("replacedAt") or token.get("rotatedAt")
    if changed and not args.rotation:
        print(f"note: the token changed at {changed}: if the admin already has the Joyn FSM "
              f"application, send `kubectl joyn handover {name} --rotation` instead",
              file=sys.stderr)
    md = handover.markdown(display_name=(tenant.get("spec") or {}).get("displayName")
                           or tenant["metadata"]["name"], url=url,
                           previous_valid_until=_previous_until(tenant), rotation=args.rotation)
    print(md if args.format == "markdown" else handover.plain(md), end="", file=out)
    print(f"\n(The Secret Token is never in this message: send it by another channel, from "
          f"`kubectl joyn credentials {name} --reveal`.)", file=sys.stderr)
    return 0


# -- acknowledge ---------------------------------------------------------------------------------

async def cmd_acknowledge(args, cluster: Cluster, out) -> int:
    """After TokenReplaced (the token Secret was deleted and a new token made): the rep says the
    admin has the new token, by a new value of the acknowledge annotation, which the operator
    compares with the one it saw at the replacement."""
    tenant = await cluster.tenant(args.tenant)
    t = _resolved(tenant)
    replaced = ((tenant.get("status") or {}).get("token") or {}).get("replacedAt")
    if not replaced:
        raise CliError(f"tenant {t.name} has no replaced token to acknowledge (its Degraded "
                       f"condition is not TokenReplaced): nothing changed")
    if t.paused:
        raise CliError(f"tenant {t.name} is paused ({PAUSED_ANNOTATION}=true): the operator "
                       "acts on nothing until that annotation is removed")
    ack = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    await cluster.annotate(tenant, {REPLACED_ACK_ANNOTATION: ack})
    if not args.wait:
        print(f"Acknowledged the token replaced at {replaced}; the operator clears "
              f"TokenReplaced within seconds (`kubectl joyn status {t.name}`).", file=out)
        return 0
    deadline = time.monotonic() + args.timeout
    while ((await cluster.tenant(t.name)).get("status") or {}).get("token", {}).get(
            "replacedAt"):
        if time.monotonic() > deadline:
            raise CliError(f"the operator has not cleared TokenReplaced after "
                           f"{args.timeout:.0f} s: is it running? (`kubectl joyn status "
                           f"{t.name}`)")
        await asyncio.sleep(0.5)
    print(f"Acknowledged: the token replaced at {replaced} is no longer reported.", file=out)
    return 0


# -- rotate --------------------------------------------------------------------------------------

async def cmd_rotate(args, cluster: Cluster, out) -> int:
    tenant = await cluster.tenant(args.tenant)
    t = _resolved(tenant)
    if not t.token.own:
        raise CliError(f"tenant {t.name}'s token comes from your own Secret "
                       f"{t.token.secret_name} (spec.token.existingSecretRef): rotate it there")
    if t.paused:
        raise CliError(f"tenant {t.name} is paused ({PAUSED_ANNOTATION}=true): the operator "
                       "rotates nothing until that annotation is removed")
    if args.overlap:
        try:
            parse_duration(args.overlap)
        except ValueError:
            raise CliError(f"--overlap {args.overlap!r} is not a duration such as 24h, 90m or "
                           "1h30m") from None
    before = await _tokens(cluster, tenant)
    request = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    await cluster.annotate(tenant, {ROTATE_ANNOTATION: request,
                                    ROTATE_OVERLAP_ANNOTATION: args.overlap or None})
    if not args.wait:
        print(f"Rotation {request} requested; the operator acts within seconds. "
              f"`kubectl joyn status {t.name}` shows the result.", file=out)
        return 0
    deadline = time.monotonic() + args.timeout
    while (after := await _tokens(cluster, tenant)).rotation_id != request:
        if time.monotonic() > deadline:
            raise CliError(f"the operator has not acted on rotation {request} after "
                           f"{args.timeout:.0f} s: is it running? (`kubectl joyn status "
                           f"{t.name}`)")
        await asyncio.sleep(0.5)
    if after.current == before.current:
        events = await cluster.events(t.namespace, [t.name])
        refused = [e for e in events if e.get("reason") == "RotationRefused"]
        why = refused[-1]["message"] if refused else "see `kubectl joyn status`"
        raise CliError(f"the operator refused the rotation: {why}")
    print(f"Rotated: a new token is current since {fmt(after.issued_at)}.", file=out)
    if after.previous:
        print(f"The previous token stays valid until {fmt(after.previous[-1].valid_until)}: "
              "the customer's Entra admin must paste the new one before then.", file=out)
    print(f"Hand it over: send `kubectl joyn handover {t.name} --rotation`, and the token by "
          f"another channel (`kubectl joyn credentials {t.name} --reveal`). The server accepts "
          "the new token within about a minute.", file=out)
    return 0


# -- test-connection -----------------------------------------------------------------------------

async def cmd_test_connection(args, cluster: Cluster, out) -> int:
    tenant = await cluster.tenant(args.tenant)
    url = _url(tenant)
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as e:
            raise CliError(f"cannot read --token-file: {e}") from None
        what = f"token in {args.token_file}"
    else:
        state = await _tokens(cluster, tenant)
        if args.token == "previous":  # noqa: S105 - a choice, not a token
            if not state.previous:
                raise CliError(f"tenant {args.tenant} has no previous token that is still "
                               "valid")
            token, what = state.previous[-1].token, "previous token"  # the newest
        else:
            token, what = state.current, "current token"
    ready = views.condition(tenant, "Ready")
    hint = "" if ready.get("status") == "True" else \
        f" (the tenant says Ready={ready.get('status', '?')}: {ready.get('reason', '?')}, " \
        f"{ready.get('message', '')})"
    target = probe.Target(url=url, token=token, address=args.address, cafile=args.cacert,
                          timeout=args.timeout, tenant_hint=hint)
    print(f"Testing {url} with the {what}, as Entra calls it:", file=out)
    checks = await asyncio.to_thread(probe.run, target, what)
    print(probe.report(checks), file=out)
    return 1 if any(c.ok is False for c in checks) else 0


# -- status --------------------------------------------------------------------------------------

def status_text(tenant: dict, events: list[dict], now: datetime) -> str:
    meta, status = tenant["metadata"], tenant.get("status") or {}
    token, activity = status.get("token") or {}, status.get("activity") or {}
    ready = views.condition(tenant, "Ready")
    lines = [f"Tenant:     {meta['namespace']}/{meta['name']} "
             f"({(tenant.get('spec') or {}).get('displayName', '')})",
             f"Tenant URL: {status.get('url') or views.NONE}",
             f"Ready:      {ready.get('status', 'Unknown')} "
             f"({ready.get('reason', 'not reconciled yet')}) {ready.get('message', '')}".rstrip(),
             f"Token:      issued {token.get('issuedAt') or views.NONE} "
             f"({views.since(token.get('issuedAt'), now)} ago)"]
    if token.get("previousValidUntil"):
        lines.append(f"            previous token valid until "
                     f"{views.until(token['previousValidUntil'], now)}"
                     f" ({token.get('previousTokens', 1)} still accepted)")
    if token.get("replacedAt"):
        lines.append(f"            REPLACED at {token['replacedAt']}: Entra's token no longer "
                     f"works; send `kubectl joyn handover {meta['name']} --rotation` and the "
                     f"token, then `kubectl joyn acknowledge {meta['name']}`")
    if activity:
        last = activity.get("lastRequestAt")
        lines.append(
            f"Activity:   last SCIM request {views.since(last, now) + ' ago' if last else 'never'}"
            f"; {activity.get('users', '?')} users, {activity.get('groups', '?')} groups; "
            f"{activity.get('unauthorizedLastHour', '?')} refused (401) in the last hour "
            f"(read {views.since(activity.get('observedAt'), now)} ago)")
        lines.append("            Entra sends nothing when nothing changed: a quiet day is a "
                     "hint, not an alarm; 401s mean Entra holds a wrong or old token")
    else:
        lines.append("Activity:   not read yet (the operator reads each server's metrics)")
    if stream := status.get("events"):
        waiting = f"{stream['backlog']} waiting" if "backlog" in stream else "not read yet"
        if stream.get("oldestUnackedAt"):
            waiting += f", the oldest for {views.since(stream['oldestUnackedAt'], now)}"
        last = stream.get("lastDeliveryAt")
        lines.append(f"Stream:     {stream.get('delivery', '?')}; {waiting}; last delivered "
                     f"{views.since(last, now) + ' ago' if last else 'never'}")
        if stream.get("failingSince"):
            lines.append(f"            PUSH FAILING since {stream['failingSince']}: "
                         f"{stream.get('lastError', '?')}")
        if stream.get("resyncRequired"):
            lines.append("            RESYNC REQUIRED: the receiver must read the snapshot")
    conds = status.get("conditions") or []
    lines += ["", "Conditions:", views.table(
        ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
        [[c["type"], c["status"], c.get("reason", ""), views.since(
            c.get("lastTransitionTime"), now), c.get("message", "")] for c in conds])
        if conds else "  (none yet)"]
    lines += ["", "Events:", views.table(
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        [[views.since(e.get("lastTimestamp") or e.get("eventTime"), now), e.get("type", ""),
          e.get("reason", ""), f"{e['involvedObject'].get('kind', '')}/"
          f"{e['involvedObject'].get('name', '')}", e.get("message", "").strip()]
         for e in events[-20:]]) if events else "  (none in the last hour: the API server "
        "keeps Events for an hour)"]
    return "\n".join(lines)


async def _tenant_events(cluster: Cluster, tenant: dict, children: dict | None = None):
    names = [tenant["metadata"]["name"]] + [o["metadata"]["name"] for objs in (
        children or {}).values() for o in objs]
    return await cluster.events(tenant["metadata"]["namespace"], names)


async def cmd_status(args, cluster: Cluster, out) -> int:
    tenant = await cluster.tenant(args.tenant)
    children = await cluster.children(tenant)
    events = await _tenant_events(cluster, tenant, children)
    if args.output in ("json", "yaml"):
        print(views.dump({"tenant": tenant["metadata"]["name"],
                          "namespace": tenant["metadata"]["namespace"],
                          "status": {k: v for k, v in (tenant.get("status") or {}).items()
                                     if k != "kopf"},
                          "events": [{k: e.get(k) for k in ("lastTimestamp", "type", "reason",
                                                            "message", "involvedObject")}
                                     for e in events]}, args.output), file=out)
        return 0
    print(status_text(tenant, events, datetime.now(UTC)), file=out)
    return 0


# -- report --------------------------------------------------------------------------------------

async def cmd_report(args, cluster: Cluster, out) -> int:
    tenant = await cluster.tenant(args.tenant)
    meta = tenant["metadata"]
    children = await cluster.children(tenant)
    events = await _tenant_events(cluster, tenant, children)
    notes = []
    try:
        state = await _tokens(cluster, tenant)
        tokens = [state.current, *(p.token for p in state.previous)]
    except CliError as e:
        tokens = []
        notes.append(f"The token Secret could not be read ({e}); tokens are redacted by "
                     "their shape (after 'Bearer ') only.")
    files: dict = {"tenant.yaml": tenant, "events.yaml": events,
                   "status.txt": status_text(tenant, events, datetime.now(UTC)) + "\n"}
    for kind, objs in children.items():
        for obj in objs:
            files[f"children/{kind.lower()}-{obj['metadata']['name']}.yaml"] = obj
    for pod in children.get("Pod", []):
        pod_name = pod["metadata"]["name"]
        try:
            files[f"logs/{pod_name}.log"] = await cluster.log(meta["namespace"], pod_name,
                                                              args.tail)
        except CliError as e:
            notes.append(f"No log of pod {pod_name}: {e}")
    files["README.txt"] = (
        f"Support bundle of JoynScimTenant {meta['namespace']}/{meta['name']}, made "
        f"{fmt(datetime.now(UTC))} by kubectl joyn report.\nEvery token is replaced by "
        f"{report.REDACTED}; Secrets are not included.\n" + "".join(f"{n}\n" for n in notes))
    data = report.bundle(files, tokens)
    target = Path(args.file or f"joyn-report-{meta['namespace']}-{meta['name']}-"
                  f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz")
    target.write_bytes(data)
    print(f"Wrote {target} ({len(data) // 1024 + 1} KiB, {len(files)} files, tokens redacted).",
          file=out)
    return 0
