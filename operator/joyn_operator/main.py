"""`joyn-scim operator`: run the kopf operator (standalone, one replica)."""

from __future__ import annotations

import argparse
import logging
import os

from scim_server.logs import setup_logging


def add_parser(sub) -> None:
    p = sub.add_parser(
        "operator", help="run the JoynScimTenant operator (kopf)",
        description="Run the operator that deploys one SCIM server per JoynScimTenant. "
                    "Configured by JOYN_OPERATOR_* variables (domain, image, ingress class, "
                    "TLS issuer, namespaces); see the README.")
    p.add_argument("--namespace", "-n", action="append", dest="namespaces",
                   help="watch this namespace (repeatable; globs allowed). Default: "
                        "JOYN_OPERATOR_WATCH_NAMESPACES, else all namespaces")
    p.add_argument("--liveness", default=os.environ.get("JOYN_OPERATOR_LIVENESS",
                                                        "http://0.0.0.0:8081/healthz"),
                   help="kopf's liveness endpoint [JOYN_OPERATOR_LIVENESS]")
    p.add_argument("--log-level", default=os.environ.get("JOYN_OPERATOR_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers
    from .config import OperatorConfig

    setup_logging(args.log_level)
    logging.getLogger("kopf").setLevel(max(logging.INFO, logging.getLogger().level))
    for noisy in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    namespaces = args.namespaces or list(OperatorConfig.from_env().watch_namespaces)
    # The resync reads the scope from the config: `-n` must narrow it too, or it would
    # reconcile tenants in namespaces this operator does not own.
    os.environ["JOYN_OPERATOR_WATCH_NAMESPACES"] = ",".join(namespaces)
    kopf.run(standalone=True, clusterwide=not namespaces, namespaces=namespaces,
             liveness_endpoint=args.liveness or None)
    return 0
