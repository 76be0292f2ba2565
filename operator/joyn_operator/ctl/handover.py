"""The handover message for the customer's Entra admin, in Markdown and as plain text for an
e-mail client that shows Markdown as typed: the first one (templates/handover.md.j2: set up
the application) or, after a rotation or a replaced token, the short one
(templates/rotation.md.j2: paste the new token into the existing application).

The message never carries the Secret Token: it goes by another channel (the rep reads it with
`kubectl joyn credentials <t> --reveal`). A message is forwarded, quoted and archived; a token
in it would outlive the overlap in every mailbox it reached."""

from __future__ import annotations

import re

import jinja2

from . import entra

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("joyn_operator.ctl", "templates"),
                          autoescape=False, keep_trailing_newline=True,  # noqa: S701 - not HTML
                          undefined=jinja2.StrictUndefined)


def markdown(*, display_name: str, url: str, previous_valid_until: str | None = None,
             rotation: bool = False) -> str:
    """The first handover, or with `rotation` the short message for an admin who already has
    the application (`previous_valid_until`: until when the token they hold still works)."""
    if rotation:
        return _ENV.get_template("rotation.md.j2").render(
            display_name=display_name, url=url, previous_valid_until=previous_valid_until)
    return _ENV.get_template("handover.md.j2").render(
        display_name=display_name, url=url, user_mappings=entra.USER_MAPPINGS,
        custom_attributes=entra.CUSTOM_ATTRIBUTES, group_mappings=entra.GROUP_MAPPINGS,
        troubleshooting=list(entra.SYMPTOMS.values()))


def plain(md: str) -> str:
    """The Markdown this module writes, as plain text: emphasis and code marks dropped, tables
    as aligned columns. Written here because the message uses four Markdown constructs and a
    Markdown library would render HTML, not text."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            out.extend("  " + "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                       .rstrip() for r in rows)
            rows.clear()

    for line in md.splitlines():
        text = re.sub(r"\*\*|(?<!\w)\*(?!\s)|(?<!\s)\*(?!\w)|`", "", line)
        if line.startswith("|"):
            cells = [c.strip() for c in text.strip().strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
            continue
        flush()
        if m := re.match(r"#+ (.*)", text):
            out.append(m[1])
            out.append("=" * len(m[1]) if line.startswith("# ") else "-" * len(m[1]))
        else:
            out.append(text)
    flush()
    return "\n".join(out) + "\n"
