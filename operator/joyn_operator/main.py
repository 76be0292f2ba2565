"""`joyn-scim operator`: run the kopf operator (standalone, one replica).

A sub-command of the project's one console command, registered through the
`joyn_scim.commands` entry point (pyproject.toml): the server's CLI finds it there and never
imports this package, so imports go one way only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from scim_server.logs import setup_logging

from .config import LOG_LEVELS, ConfigError, OperatorConfig, split_list

HELP = "run the JoynScimTenant operator (kopf)"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "operator", help=HELP,
        description="Run the operator that deploys one SCIM server per JoynScimTenant. "
                    "Configured by JOYN_OPERATOR_* variables (domain, image, ingress class, "
                    "TLS issuer, namespaces, ...; see docs/platform/reference.md); these flags "
                    "win over them.")
    p.add_argument("--namespace", "-n", action="append", dest="namespaces",
                   help="watch this namespace (repeatable; globs allowed). Default: "
                        "JOYN_OPERATOR_WATCH_NAMESPACES, else all namespaces")
    p.add_argument("--liveness", dest="liveness_endpoint",
                   help="kopf's liveness endpoint, '' for none "
                        "[JOYN_OPERATOR_LIVENESS_ENDPOINT, default http://0.0.0.0:8081/healthz]")
    p.add_argument("--metrics-address",
                   help="host:port for /metrics, '' for none "
                        "[JOYN_OPERATOR_METRICS_ADDRESS, default 0.0.0.0:8080]")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="[JOYN_OPERATOR_LOG_LEVEL, info]")
    p.add_argument("--kubeconfig", help="kubeconfig file [JOYN_OPERATOR_KUBECONFIG, else "
                                        "$KUBECONFIG, the in-cluster ServiceAccount, "
                                        "~/.kube/config]")
    p.add_argument("--context", help="kubeconfig context [JOYN_OPERATOR_CONTEXT, else current]")
    p.set_defaults(func=run)


class KopfExtras(logging.Filter):
    """kopf attaches its whole settings object and an object reference to each record it
    logs: keep the object as `namespace/name`, drop the rest (kilobytes a line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("settings", None)
        record.__dict__.pop("k8s_skip", None)
        ref = record.__dict__.pop("k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            record.object = "/".join(p for p in (ref.get("namespace"), ref["name"]) if p)
        return True


def config_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> OperatorConfig:
    """The environment's settings with the command line's on top, checked."""
    cfg = OperatorConfig.from_env(env)
    overrides = {k: getattr(args, k) for k in ("liveness_endpoint", "metrics_address",
                                                "log_level", "kubeconfig", "context")
                 if getattr(args, k, None) is not None}
    if args.namespaces:
        overrides["watch_namespaces"] = split_list(",".join(args.namespaces))
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from(args)
    except ConfigError as e:
        print(f"joyn-scim operator: {e}", file=sys.stderr)
        return 2

    import kopf

    from . import handlers, rollout  # handlers registers the handlers
    from .cache import CachedKube, ObjectCache
    from .kube import Kube
    from .login import Login
    from .reconcile import KeyedLocks

    setup_logging(cfg.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(KopfExtras())
    logging.getLogger("kopf").setLevel(max(logging.INFO, logging.getLogger().level))
    # kubernetes_asyncio logs whole response bodies at debug, a Secret's included: never.
    for noisy in ("kubernetes_asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if cfg.log_level != "debug":
        # kopf logs each minute's re-read of the credentials, and a line for every handled
        # event of every child ("Handler '_child_event' succeeded."): thousands a minute.
        for name in ("kopf._core.engines.activities", "kopf.activities.authentication",
                     "kopf.objects"):
            logging.getLogger(name).setLevel(logging.WARNING)
    login = Login(cfg.kubeconfig, cfg.context)
    cache = ObjectCache()
    memo = kopf.Memo(config=cfg, login=login, kube=CachedKube(Kube(login), cache), cache=cache,
                     locks=KeyedLocks(), deadlines={}, resync=None, activity=None, routes={},
                     queued=set(), again=set(), rollout=rollout.Gate(), wakeups=set(),
                     gate=asyncio.Semaphore(handlers.CONCURRENT_RECONCILES))
    kopf.run(standalone=True, clusterwide=cfg.clusterwide,
             namespaces=list(cfg.watch_namespaces), liveness_endpoint=cfg.liveness_endpoint or None,
             memo=memo)
    return 0
