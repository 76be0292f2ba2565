"""The handover messages (joyn_operator/ctl/handover.py, entra.py): what the Entra admin is
told the first time and after a rotation, in Markdown and plain text; that the Secret Token is
never in a message; and that docs/entra.md lists exactly the mappings the handover sends."""

from __future__ import annotations

import re
from pathlib import Path

from joyn_operator.ctl import entra, handover

ROOT = Path(__file__).resolve().parents[2]
URL = "https://acme.joyn.example/scim/v2"


def message(**kw):
    return handover.markdown(display_name="Acme Corp", url=URL, **kw)


def table_after(md: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after the line containing `heading`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif seen:
            break
    assert rows, f"no table after {heading!r}"
    return [r for r in rows[2:]]  # the header and its rule


def test_the_first_message_says_what_to_paste_where_and_every_mapping():
    md = message()
    assert "## 1. Create the application" in md
    assert f"| **Tenant URL** | `{URL}` |" in md
    assert "| **Secret Token** | *sent to you separately* |" in md and "Test Connection" in md
    for source, target, _ in entra.USER_MAPPINGS:
        assert f"| {source} | `{target}` |" in md
    for source, target, _ in entra.GROUP_MAPPINGS:
        assert f"| `{source}` | `{target}` |" in md
    for name, type_ in entra.CUSTOM_ATTRIBUTES:
        assert f"| `{name}` | {type_} |" in md
    assert "Edit attribute list for Joyn FSM" in md and "Sync only assigned" in md


def test_the_first_message_keys_its_troubleshooting_on_what_entra_shows():
    rows = table_after(message(), "## 5. When it fails")
    assert [r[0] for r in rows] == [s.entra for s in entra.SYMPTOMS.values()]
    assert any('"You appear to have entered invalid credentials"' in r[0] for r in rows)
    assert any("quarantine" in r[0] and "Restart provisioning" in r[2] for r in rows)
    assert any("SystemForCrossDomainIdentityManagementServiceIncompatible" in r[0] for r in rows)


def test_after_a_rotation_the_short_message_sends_the_admin_to_the_existing_app():
    md = message(rotation=True, previous_valid_until="2026-12-06T10:00:00Z")
    assert md.startswith("# Joyn FSM: a new Secret Token for provisioning (Acme Corp)")
    assert "open your existing **Joyn FSM**" in md and "**Provisioning**" in md
    assert "paste the new token" in md and f"Leave the **Tenant URL** as\n   it is (`{URL}`)" in md
    assert md.index("**Test Connection**") < md.index("**Save**") < md.index(
        "**Restart provisioning**")
    assert "in quarantine" in md
    assert "keeps working until 2026-12-06T10:00:00Z" in md
    # Never the first-time steps: an admin who follows them makes a second application.
    assert "Create" not in md and "New application" not in md and "Mappings" not in md
    replaced = message(rotation=True)
    assert "no longer works" in replaced and "keeps working" not in replaced


def test_no_message_has_a_place_for_the_token():
    # The only input is the tenant's name, URL and deadline: no code path can put a token in.
    for md in (message(), message(rotation=True, previous_valid_until="2026-12-06T10:00:00Z")):
        assert "sent to you separately" in md
        assert "--reveal" not in md


def test_plain_text_has_no_markdown_marks_and_aligned_tables():
    for md in (message(), message(rotation=True)):
        text = handover.plain(md)
        assert "**" not in text and "`" not in text and "|" not in text
        assert "\n## " not in text and not text.startswith("#")
    text = handover.plain(message())
    line = next(x for x in text.splitlines() if x.strip().startswith("Tenant URL"))
    assert line.split() == ["Tenant", "URL", URL]
    assert "Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")" in text
    assert "sent to you separately" in text


def test_docs_entra_md_lists_exactly_the_mappings_the_handover_sends():
    docs = (ROOT / "docs" / "entra.md").read_text()
    md = message()
    documented = table_after(docs, "Provision Microsoft Entra ID Users")
    sent = table_after(md, "Provision Microsoft Entra ID Users")
    # Both ways: what the admin is told to keep is what the docs list, and nothing the docs
    # list is missing from the message (which says the others may be deleted).
    assert [r[:2] for r in sent] == [r[:2] for r in documented]
    assert sent == documented
    custom = "`xid` and `joynFieldId`"
    assert table_after(docs, custom) == table_after(md, custom)
    groups = next(p for p in docs.split("\n\n") if "Provision Microsoft Entra ID Groups" in p)
    arrows = re.findall(r"`([^`]+)` → `([^`]+)`", groups)
    assert sorted(arrows) == sorted((s, t) for s, t, _ in entra.GROUP_MAPPINGS)
