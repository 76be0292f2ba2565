"""`kubectl joyn`: the success rep's commands (tenants, credentials, handover, rotate,
acknowledge, test-connection, status, report, events), also `joyn-scim <command>`.

Installed as the console script `kubectl-joyn`, which kubectl runs for `kubectl joyn ...`
(kubectl's plugin convention), and registered in the `joyn_scim.commands` entry-point group
for `joyn-scim`. Like kubectl, the commands read the user's kubeconfig (`--kubeconfig`,
$KUBECONFIG, ~/.kube/config) and context (`--context`), and take `-n` and `-A`; `-n`,
`--context` and `--kubeconfig` go before the command or after it, as with kubectl.
"""

from __future__ import annotations

import argparse
import sys

from .. import KIND

ROTATE_WAIT = 120.0  # seconds: the operator rotates within a reconcile, usually a second


def _common(default=None) -> argparse.ArgumentParser:
    """kubectl's connection flags. kubectl users type them before the command (`kubectl joyn
    -n demo handover acme`) or after it; the top-level parser takes them with None defaults,
    and each command's copy defaults to SUPPRESS so that a flag given only before the command
    is not reset by the command's parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-n", "--namespace", default=default,
                   help="the tenant's namespace (default: the context's)")
    p.add_argument("--context", default=default,
                   help="kubeconfig context (default: the current one)")
    p.add_argument("--kubeconfig", default=default,
                   help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    return p


def add_parsers(sub) -> None:
    """Adds the rep commands to an argparse sub-parsers object (`joyn-scim` and
    `kubectl-joyn` both call this). Nothing is imported for them until one runs: `joyn-scim
    serve` loads this too, and starts in a fifth of a second."""
    common = _common(argparse.SUPPRESS)

    def command(name: str, help: str, tenant: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help)
        if tenant:
            p.add_argument("tenant")
        p.set_defaults(func=_main, run="cmd_" + name.replace("-", "_"))
        return p

    p = command("tenants", "list tenants: ready, URL, token age, server activity", tenant=False)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    p.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table",
                   help="wide: also when the token was last rotated and the Ready message")

    p = command("credentials", "the Tenant URL and Secret Token to paste into Entra")
    p.add_argument("--reveal", action="store_true", help="show the token (masked otherwise)")
    p.add_argument("-o", "--output", choices=["text", "env", "json"], default="text")
    p.add_argument("--events", action="store_true",
                   help="instead, what the Joyn FSM application team needs to connect its event "
                        "receiver: endpoints, JWKS, issuer, audience and the receiver's token")

    p = command("handover", "a ready-to-send message for the customer's Entra admin (the "
                "token never in it: send that by another channel)")
    p.add_argument("--rotation", action="store_true",
                   help="the admin already has the Joyn FSM app: only paste the new token, "
                        "Test Connection, Save (after `rotate`, or a TokenReplaced)")
    p.add_argument("--format", choices=["text", "markdown"], default="text")
    # Accepted only to say why it is gone: the message never carries the token.
    p.add_argument("--reveal", action="store_true", help=argparse.SUPPRESS)

    p = command("acknowledge", "after TokenReplaced: say that the customer's Entra admin has "
                "the new token (the operator clears the Degraded condition)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait for the operator to clear it (default)")
    p.add_argument("--timeout", type=float, default=ROTATE_WAIT, help="seconds to wait")

    p = command("rotate", "rotate the token (the operator acts); the previous one stays valid "
                "for the overlap")
    p.add_argument("--overlap", metavar="DURATION", help="how long the previous token stays "
                   "valid, e.g. 24h (default: the tenant's spec.token.previousTokenValidFor)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait for the new token (default)")
    p.add_argument("--timeout", type=float, default=ROTATE_WAIT, help="seconds to wait")

    p = command("test-connection", "check the Tenant URL from here, the way Entra calls it")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--token", choices=["current", "previous"], default="current",
                       help="the tenant's current token, or the newest previous one that is "
                            "still valid")
    which.add_argument("--token-file", help="a token from this file instead (e.g. the one an "
                       "admin says they pasted; never on the command line, where ps shows it)")
    p.add_argument("--address", help="connect to this address instead of the host's DNS "
                   "answer, as curl --resolve (e.g. before the DNS record exists)")
    p.add_argument("--cacert", help="trust this CA file instead of the system's trust store "
                   "(Entra trusts only public CAs)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")

    p = command("status", "conditions, recent Events, token dates, server activity")
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")

    # `joyn-scim events` is the server's own (`events tail` watches a server by its address);
    # there, this one stays `kubectl joyn events` only.
    if "events" not in sub.choices:
        p = command("events", "watch the tenant's event stream (never acknowledging it)")
        p.add_argument("-f", "--follow", action="store_true", help="keep watching for new events")
        p.add_argument("--after", type=int, default=0, metavar="SEQ",
                       help="only events after this stream position (the number that ends an "
                            "event's jti)")
        p.add_argument("-o", "--output", choices=["text", "json"], default="text",
                       help="json: each event's claims as the server sends them, one a line")

    p = command("report", "a support bundle (.tar.gz), every token redacted")
    p.add_argument("-f", "--file", help="where to write it (default: joyn-report-<namespace>-"
                   "<tenant>-<time>.tar.gz)")
    p.add_argument("--tail", type=int, default=2000, help="log lines per pod")


def _main(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from . import commands
    from .cluster import CliError, Cluster, Where

    # The client library logs its own view of a failure; ours says it once, in words.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.CRITICAL)

    async def go() -> int:
        cluster = Cluster(Where.of(args))
        try:
            return await getattr(commands, args.run)(args, cluster, sys.stdout)
        finally:
            await cluster.close()
    try:
        return asyncio.run(go())
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    """`kubectl joyn`'s command line."""
    top = argparse.ArgumentParser(
        prog="kubectl joyn", parents=[_common()],
        description=f"Hand over, test and rotate the SCIM endpoints of {KIND}s, for Joyn's "
                    "customer-success reps.")
    add_parsers(top.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return top


def main(argv: list[str] | None = None) -> int:
    """The `kubectl-joyn` console script."""
    args = parser().parse_args(argv)
    return args.func(args)
