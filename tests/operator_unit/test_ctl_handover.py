"""The handover message (joyn_operator/ctl/handover.py, entra.py): what the Entra admin is
told, in Markdown and plain text, and that docs/entra.md says the same."""

from __future__ import annotations

from pathlib import Path

from joyn_operator.ctl import entra, handover

ROOT = Path(__file__).resolve().parents[2]
URL = "https://acme.joyn.example/scim/v2"


def message(token=None, until=None):
    return handover.markdown(display_name="Acme Corp", url=URL, token=token,
                             previous_valid_until=until)


def test_the_message_tells_what_to_paste_where_and_every_mapping():
    md = message()
    assert f"| **Tenant URL** | `{URL}` |" in md
    assert "*sent to you separately*" in md and "Test Connection" in md
    for source, target, _ in entra.USER_MAPPINGS + entra.GROUP_MAPPINGS:
        assert f"| `{source}` | `{target}` |" in md
    for name, type_ in entra.CUSTOM_ATTRIBUTES:
        assert f"| `{name}` | {type_} |" in md
    assert "Edit attribute list for Joyn FSM" in md and "Sync only assigned" in md
    for seen, _, fix in entra.TROUBLESHOOTING:
        assert seen in md and fix in md


def test_the_token_only_when_given_and_the_overlap_when_there_is_one():
    secret = "tok-" + "z" * 39
    assert secret not in message()
    md = message(token=secret, until="2026-12-06T10:00:00Z")
    assert f"`{secret}`" in md and "keeps working until 2026-12-06T10:00:00Z" in md
    assert "keeps working until" not in message(token=secret)


def test_plain_text_has_no_markdown_marks_and_aligned_tables():
    text = handover.plain(message())
    assert "**" not in text and "`" not in text and "|" not in text and "\n## " not in text
    line = next(x for x in text.splitlines() if x.strip().startswith("Tenant URL"))
    assert line.split() == ["Tenant", "URL", URL]
    assert "Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")" in text
    assert "sent to you separately" in text


def test_docs_entra_md_lists_the_same_mappings():
    docs = (ROOT / "docs" / "entra.md").read_text()
    for source, target, _ in entra.USER_MAPPINGS:
        first = source.split(" (")[0]
        assert f"`{target}`" in docs and first.split(",")[0] in docs, target
    for name, type_ in entra.CUSTOM_ATTRIBUTES:
        assert f"| `{name}` | {type_} |" in docs
