"""`joyn-scim operator`'s process set-up (joyn_operator/main.py): its log lines, and the
sub-command found through the entry point, not imported by the server."""

import json
import logging
import subprocess
import sys
from pathlib import Path

from joyn_operator.main import KopfExtras

from scim_server.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]


def test_kopf_records_keep_the_object_and_drop_its_settings():
    record = logging.LogRecord("kopf.objects", logging.INFO, "", 0, "Handler succeeded.", (),
                               None)
    record.settings = object()
    record.k8s_skip = False
    record.k8s_ref = {"namespace": "ns", "name": "acme", "uid": "u"}
    assert KopfExtras().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["object"] == "ns/acme"
    assert not {"settings", "k8s_skip", "k8s_ref"} & set(line)


def test_the_server_package_never_imports_the_operator():
    for path in (ROOT / "scim_server").rglob("*.py"):
        assert "joyn_operator" not in path.read_text(), path
    out = subprocess.run([sys.executable, "-m", "scim_server", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "operator" in out  # registered through the joyn_scim.commands entry point
