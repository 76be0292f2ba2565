"""The support bundle (joyn_operator/ctl/report.py): every token redacted, by value and by
shape, and no Secret data."""

from __future__ import annotations

import io
import tarfile

from joyn_operator.ctl import report

TOKEN, OLD = "cur-" + "a1" * 20, "old-" + "b2" * 20


def files_of(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def test_tokens_are_redacted_everywhere_in_the_bundle():
    secret = {"kind": "Secret", "metadata": {"name": "t-scim-token", "managedFields": [{}]},
              "data": {"token": "Y3Vy", "previous-token": "b2xk"}}
    data = report.bundle({
        "logs/pod.log": f'{{"msg": "auth", "header": "Bearer {TOKEN}"}}\nprev {OLD}\n'
                        "Authorization: bearer some-other-token\n",
        "children/secret.yaml": secret,
        "events.yaml": [{"message": f"rotated {OLD}"}],
    }, [TOKEN, OLD])
    files = files_of(data)
    text = "".join(files.values())
    leaked = [t for t in (TOKEN, OLD, "some-other-token", "Y3Vy", "b2xk") if t in text]
    assert leaked == []
    assert "Bearer <redacted>" in files["logs/pod.log"]
    assert "token: <redacted>" in files["children/secret.yaml"]
    assert "managedFields" not in files["children/secret.yaml"]


def test_redact_leaves_other_text_alone():
    assert report.redact("user ada@acme.example created", [TOKEN]) == \
        "user ada@acme.example created"
