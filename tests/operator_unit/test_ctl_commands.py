"""The pure part of the rep commands (joyn_operator/ctl/commands.py, ctl/__init__.py): the
status text, and the command line."""

import asyncio
import sys
from datetime import UTC, datetime

import pytest
from joyn_operator.ctl import add_parsers, commands, parser
from joyn_operator.ctl.cluster import CliError, Where
from joyn_operator.ctl.commands import status_text

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def tenant(**status) -> dict:
    return {"metadata": {"name": "acme", "namespace": "crm"}, "spec": {"displayName": "Acme"},
            "status": status}


def test_status_says_nothing_of_a_stream_that_is_off():
    assert "Stream:" not in status_text(tenant(), [], NOW)


def test_status_shows_the_streams_backlog_delivery_and_trouble():
    text = status_text(tenant(events={
        "enabled": True, "delivery": "push", "backlog": 12,
        "oldestUnackedAt": "2026-12-03T11:40:00Z", "lastDeliveryAt": "2026-12-03T11:39:00Z",
        "failingSince": "2026-12-03T11:39:30Z", "lastError": "timeout",
        "resyncRequired": True}), [], NOW)
    assert "Stream:     push; 12 waiting, the oldest for 20m; last delivered 21m ago" in text
    assert "PUSH FAILING since 2026-12-03T11:39:30Z: timeout" in text
    assert "RESYNC REQUIRED" in text
    fresh = status_text(tenant(events={"enabled": True, "delivery": "poll"}), [], NOW)
    assert "Stream:     poll; not read yet; last delivered never" in fresh


def test_a_replaced_token_says_what_to_send_and_how_to_acknowledge():
    text = status_text(tenant(token={"issuedAt": "2026-12-03T11:00:00Z",
                                     "replacedAt": "2026-12-03T11:00:00Z"}), [], NOW)
    assert "REPLACED at 2026-12-03T11:00:00Z" in text
    assert "kubectl joyn handover acme --rotation" in text
    assert "kubectl joyn acknowledge acme" in text


# -- the command line, as kubectl users type it ---------------------------------------------------

def parse(*argv: str):
    return parser().parse_args(list(argv))


@pytest.mark.parametrize("argv", [
    ("-n", "demo", "handover", "acme"),  # as the demo prints it, as kubectl users type it
    ("handover", "acme", "-n", "demo"),
    ("--namespace", "demo", "handover", "acme"),
])
def test_the_namespace_goes_before_or_after_the_command(argv):
    args = parse(*argv)
    where = Where.of(args)
    assert (args.run, args.tenant, where.namespace) == ("cmd_handover", "acme", "demo")


def test_context_and_kubeconfig_before_the_command_reach_the_cluster_settings():
    where = Where.of(parse("--context", "prod", "--kubeconfig", "/k", "-n", "crm", "tenants",
                           "-o", "wide"))
    assert (where.context, where.kubeconfig, where.namespace) == ("prod", "/k", "crm")
    # After the command, the command's own flag wins, as with kubectl.
    assert Where.of(parse("-n", "a", "status", "t", "-n", "b")).namespace == "b"
    assert Where.of(parse("status", "t")).namespace is None  # the context's


def test_tenants_takes_wide_and_refuses_an_unknown_output(capsys):
    assert parse("tenants", "-o", "wide").output == "wide"
    with pytest.raises(SystemExit):
        parse("tenants", "-o", "name")
    assert "invalid choice: 'name'" in capsys.readouterr().err


def test_joyn_scim_takes_the_same_commands_without_global_flags():
    import argparse

    top = argparse.ArgumentParser(prog="joyn-scim")
    add_parsers(top.add_subparsers(dest="command"))
    args = top.parse_args(["acknowledge", "acme", "-n", "crm", "--no-wait"])
    assert (args.run, Where.of(args).namespace, args.wait) == ("cmd_acknowledge", "crm", False)
    assert Where.of(top.parse_args(["status", "acme"])).namespace is None


def test_handover_refuses_to_put_the_token_in_the_message_before_reading_anything(capsys):
    args = parse("-n", "crm", "handover", "acme", "--reveal")
    with pytest.raises(CliError, match="never carries the Secret Token") as e:
        asyncio.run(commands.cmd_handover(args, None, sys.stdout))  # no cluster is touched
    assert "kubectl joyn credentials acme --reveal" in str(e.value)
    assert capsys.readouterr().out == ""
