"""`report`: a support bundle of one tenant (the tenant, its children, Events, the server's
recent logs, the status text) as a .tar.gz, with every token redacted.

Redaction is by value and by shape: each token the tenant's Secret holds (current and
previous) is replaced wherever it appears, a Secret's data is never written, and anything
after `Bearer ` is replaced too, for a token the CLI could not read.
"""

from __future__ import annotations

import io
import re
import tarfile
import time

import yaml

REDACTED = "<redacted>"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str, tokens: list[str]) -> str:
    for token in sorted({t for t in tokens if t}, key=len, reverse=True):
        text = text.replace(token, REDACTED)
    return _BEARER.sub(r"\1" + REDACTED, text)


def without_secret_data(obj: dict) -> dict:
    """A Secret with its values replaced (the keys stay: they say what it holds)."""
    if obj.get("kind") != "Secret":
        return obj
    return {**obj, "data": {k: REDACTED for k in obj.get("data") or {}},
            **({"stringData": {k: REDACTED for k in obj["stringData"]}}
               if obj.get("stringData") else {})}


def _clean(obj: dict) -> dict:
    """managedFields are kilobytes of who-set-what, no help in support."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def bundle(files: dict[str, str | dict | list], tokens: list[str]) -> bytes:
    """A .tar.gz of `files` (name -> text, or an object written as YAML), every one redacted."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            if not isinstance(content, str):
                if isinstance(content, dict):
                    content = _clean(without_secret_data(content))
                elif isinstance(content, list):
                    content = [_clean(without_secret_data(o)) if isinstance(o, dict) else o
                               for o in content]
                content = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
            data = redact(content, tokens).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
