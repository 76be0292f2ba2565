"""The documentation against the code: every statement that names a chart value, a spec field,
a `joyn-scim serve` option, a metric, a condition reason, an Event or a `kubectl joyn` command is
checked here, both ways where it makes sense (the code has it -> the doc says it; the doc says
it -> the code has it). No cluster: the code is read as it is (argparse parsers built, the
sources parsed), so a new value, reason or metric fails here until its doc lands, and the
failure names what is missing and the file it belongs in.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from joyn_operator.config import ENV_PREFIX, OperatorConfig
from joyn_operator.ctl import add_parsers as add_rep_parsers

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLATFORM = DOCS / "platform"
REFERENCE = PLATFORM / "reference.md"
SERVER_DOC = DOCS / "server.md"
REPS_DOC = DOCS / "reps.md"
MONITORING_DOC = PLATFORM / "monitoring.md"
OPERATOR_PKG = ROOT / "operator" / "joyn_operator"
SERVER_PKG = ROOT / "scim_server"
VALUES = ROOT / "charts" / "joyn-scim" / "values.yaml"
CRD = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def table(path: Path, marker: str) -> list[list[str]]:
    """The rows (cells, stripped) of the Markdown table between <!-- marker --> and
    <!-- /marker --> in `path`, header and rule left out."""
    text = path.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    assert start in text and end in text, f"{rel(path)} lacks the table marked {start} ... {end}"
    body = text.split(start, 1)[1].split(end, 1)[0]
    lines = [line.strip() for line in body.strip().splitlines() if line.strip().startswith("|")]
    # A cell may hold `a\|b` (a pipe inside code): split on unescaped pipes only.
    return [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            for line in lines[2:]]


def first_code(cell: str) -> str | None:
    m = re.search(r"`([^`]+)`", cell)
    return m.group(1) if m else None


# -- links ------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in
            re.finditer(r"^#{1,6} (.+)$", without_code_blocks(path.read_text()), re.M)}


@pytest.mark.parametrize("doc", markdown_files(), ids=rel)
def test_every_relative_link_resolves(doc):
    broken = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", without_code_blocks(doc.read_text())):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {rel(dest)} has no heading with the anchor #{anchor}")
    assert not broken, f"{rel(doc)} links nowhere: " + "; ".join(broken)


@pytest.mark.parametrize("doc", markdown_files(), ids=rel)
def test_no_doc_points_outside_the_repository(doc):
    text = doc.read_text()
    assert "../shared" not in text, f"{rel(doc)} cites ../shared, which is not in the repository"
    assert "entra-scim-behaviour.md" not in text, \
        f"{rel(doc)} cites entra-scim-behaviour.md, which is not in the repository"


def test_the_entra_admins_page_holds_no_engineering_notes():
    text = (DOCS / "entra.md").read_text()
    found = sorted(set(re.findall(r"\btest_\w+|tests/\S+", text)))
    assert not found, f"docs/entra.md is for the customer's Entra admin; it names tests: {found}"


# -- chart values -----------------------------------------------------------------------------

def value_paths(node: dict, prefix: str = "") -> dict[str, object]:
    """Every key of values.yaml by its dotted path; a non-empty map is also walked into."""
    out: dict[str, object] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        out[path] = value
        if isinstance(value, dict) and value:
            out.update(value_paths(value, path + "."))
    return out


def documented_values() -> dict[str, str]:
    """The reference's chart values: {dotted key: its default cell}."""
    rows = table(REFERENCE, "values")
    return {first_code(r[0]): r[1] for r in rows if first_code(r[0])}


def test_every_chart_value_is_in_the_reference():
    values = value_paths(yaml.safe_load(VALUES.read_text()))
    documented = documented_values()
    # A map documented as a whole (resources, securityContext) covers the keys inside it.
    missing = [p for p in values if p not in documented and
               not any(p.startswith(d + ".") for d in documented)
               and not (isinstance(values[p], dict) and values[p]
                        and any(d.startswith(p + ".") for d in documented))]
    assert not missing, ("chart values not in docs/platform/reference.md's table between "
                         f"<!-- values --> markers (one row each, `key` | default | meaning): "
                         f"{missing}")


def test_every_documented_chart_value_exists_with_the_default_the_doc_states():
    values = value_paths(yaml.safe_load(VALUES.read_text()))
    documented = documented_values()
    unknown = [k for k in documented if k not in values]
    assert not unknown, f"docs/platform/reference.md documents chart values values.yaml lacks: " \
                        f"{unknown}"
    wrong = []
    for key, cell in documented.items():
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if literal:  # the doc states a default: values.yaml's
            stated = yaml.safe_load(literal.group(1))
            if stated != values[key]:
                wrong.append(f"{key}: the doc says {literal.group(1)!r}, values.yaml has "
                             f"{values[key]!r}")
        elif values[key] not in ("", [], {}, None) and not isinstance(values[key], dict):
            wrong.append(f"{key}: the doc's default {cell!r} is no `literal`, but values.yaml "
                         f"has {values[key]!r}")
    assert not wrong, "docs/platform/reference.md states wrong chart defaults: " + "; ".join(wrong)


# -- the CRD's spec ---------------------------------------------------------------------------

def spec_paths(schema: dict, prefix: str = "spec.") -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, sub in (schema.get("properties") or {}).items():
        out[prefix + key] = sub
        if sub.get("properties"):
            out.update(spec_paths(sub, f"{prefix}{key}."))
    return out


def crd_spec() -> dict[str, dict]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return spec_paths(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def documented_both_ways(in_code, documented, what: str, doc: str, markers: str) -> None:
    """Every name in `in_code` (a set, or names -> where in the code) is in the table of `doc`
    between <!-- markers -->, and the table names nothing else."""
    where = in_code if isinstance(in_code, dict) else dict.fromkeys(in_code, "")
    missing = sorted(n for n in where if n not in documented)
    assert not missing, (f"{what} not in {doc}'s table between <!-- {markers} --> markers: "
                         + ", ".join(f"{n} ({where[n]})" if where[n] else n for n in missing))
    unknown = sorted(n for n in documented if n not in where)
    assert not unknown, f"{doc} documents {what} that do not exist: {unknown}"


def test_every_spec_field_is_in_the_reference_and_nothing_else():
    fields = crd_spec()
    rows = table(REFERENCE, "spec")
    documented = {first_code(r[0]): r for r in rows}
    documented_both_ways(set(fields), documented, "JoynScimTenant fields (the CRD)",
                         "docs/platform/reference.md", "spec")
    wrong = []
    for name, row in documented.items():
        default = fields[name].get("default")
        if default in (None, {}):
            continue
        stated = first_code(row[1])
        if stated is None or yaml.safe_load(stated) != default:
            wrong.append(f"{name}: the CRD's default is {default!r}, the doc says {row[1]!r}")
    assert not wrong, "docs/platform/reference.md states wrong spec defaults: " + "; ".join(wrong)


# -- operator settings ------------------------------------------------------------------------

def operator_variables() -> set[str]:
    """Every JOYN_OPERATOR_* variable config.py reads (or names in an error)."""
    text = (OPERATOR_PKG / "config.py").read_text()
    names = set(re.findall(r'\b(?:get|number)\("([A-Z][A-Z0-9_]*)"', text))
    names |= set(re.findall(r"\{ENV_PREFIX\}([A-Z][A-Z0-9_]*)", text))
    return {ENV_PREFIX + n for n in names}


def test_every_operator_setting_is_in_the_reference_with_its_default():
    rows = table(REFERENCE, "operator-env")
    documented = {first_code(r[0]): r for r in rows}
    variables = operator_variables()
    assert {"JOYN_OPERATOR_DOMAIN", "JOYN_OPERATOR_METRICS_ADDRESS"} <= variables
    documented_both_ways(variables, documented, "operator settings (config.py)",
                         "docs/platform/reference.md", "operator-env")
    wrong = []
    for f in dataclasses.fields(OperatorConfig):
        name = ENV_PREFIX + f.name.upper()
        if name not in documented or not isinstance(f.default, str | int | float) or \
                f.default == "":
            continue
        stated = first_code(documented[name][1])
        if stated is None or yaml.safe_load(stated) != f.default:
            wrong.append(f"{name}: config.py's default is {f.default!r}, the doc says "
                         f"{documented[name][1]!r}")
    assert not wrong, "docs/platform/reference.md states wrong operator defaults: " + \
        "; ".join(wrong)


# -- joyn-scim serve --------------------------------------------------------------------------

def serve_options(monkeypatch) -> list[argparse.Action]:
    """`joyn-scim serve`'s options with their defaults as a fresh environment gives them."""
    import os

    from scim_server import cli
    for name in [n for n in os.environ if n.startswith("JOYN_SCIM_")]:
        monkeypatch.delenv(name)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli._serve_parser(sub)
    serve = sub.choices["serve"]
    return [a for a in serve._actions if a.option_strings and a.dest != "help"]


def test_every_serve_option_is_in_the_server_doc_with_its_variable_and_default(monkeypatch):
    rows = {first_code(r[0]): r for r in table(SERVER_DOC, "serve-options")}
    problems = []
    for action in serve_options(monkeypatch):
        flag = action.option_strings[0]
        env = re.search(r"\[(JOYN_SCIM_[A-Z_]+)", action.help or "")
        row = rows.get(flag)
        if row is None:
            problems.append(f"{flag} is not in the table")
            continue
        if env and first_code(row[1]) != env.group(1):
            problems.append(f"{flag}: its variable is {env.group(1)}, the doc says {row[1]!r}")
        default = action.default
        if isinstance(default, str | int | float) and not isinstance(default, bool):
            stated = first_code(row[2])
            if stated is None or yaml.safe_load(stated) != default:
                problems.append(f"{flag}: its default is {default!r}, the doc says {row[2]!r}")
    assert not problems, "docs/server.md's table between <!-- serve-options --> markers: " + \
        "; ".join(problems)


def test_the_server_doc_names_no_option_that_does_not_exist(monkeypatch):
    from scim_server.events.tail import add_parser as add_tail_parser
    known = {s for a in serve_options(monkeypatch) for s in a.option_strings}
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_tail_parser(sub)
    for p in [sub.choices["events"], *(a.choices[c] for a in sub.choices["events"]._actions
                                        if isinstance(a, argparse._SubParsersAction)
                                        for c in a.choices)]:
        known |= {s for a in p._actions for s in a.option_strings}
    text = without_code_blocks(SERVER_DOC.read_text())
    named = set(re.findall(r"`(--[a-z][a-z-]*)", text))
    assert not named - known, f"docs/server.md names options joyn-scim has not: {named - known}"


def test_the_docs_say_which_operator_settings_have_a_flag():
    from joyn_operator.main import add_parser
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    flags = {s for a in sub.choices["operator"]._actions for s in a.option_strings
             if s.startswith("--") and s != "--help"}
    # The table's third column: the flag that overrides the variable, if there is one.
    stated = {f for r in table(REFERENCE, "operator-env") for f in re.findall(r"`(--[a-z-]+)",
                                                                               r[2])}
    assert stated == flags, ("docs/platform/reference.md's operator settings name the flags "
                             f"{sorted(stated)}; `joyn-scim operator` has {sorted(flags)}")


# -- metrics ----------------------------------------------------------------------------------

METRIC_CLASSES = {"Counter": "_total", "Gauge": "", "Histogram": "", "Summary": "",
                  "Info": "_info", "Enum": ""}


def registered_metrics(package: Path) -> set[str]:
    """The names the package's metrics are exposed under, from its source: every
    prometheus_client metric constructed with a literal name."""
    names = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in METRIC_CLASSES and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value + METRIC_CLASSES[node.func.id])
    return names


def named_metrics(text: str) -> set[str]:
    text = re.sub(r"\b\w+_\*", "", text)  # `scim_events_*`: a family, not a name
    names = set(re.findall(r"\b((?:scim|joyn_operator)_[a-z0-9_]*[a-z0-9])\b", text))
    return {n for n in names if n not in {"scim_server"}}


def test_every_metric_is_documented():
    server, operator = registered_metrics(SERVER_PKG), registered_metrics(OPERATOR_PKG)
    assert {"scim_requests_total", "joyn_operator_reconciles_total"} <= server | operator
    missing = sorted(server - named_metrics(SERVER_DOC.read_text()))
    assert not missing, f"server metrics not in docs/server.md (## Metrics): {missing}"
    missing = sorted(operator - named_metrics(MONITORING_DOC.read_text()))
    assert not missing, f"operator metrics not in docs/platform/monitoring.md: {missing}"


@pytest.mark.parametrize("doc", markdown_files(), ids=rel)
def test_every_metric_a_doc_names_exists(doc):
    known = registered_metrics(SERVER_PKG) | registered_metrics(OPERATOR_PKG)
    suffixes = ("_bucket", "_count", "_sum", "_created")
    unknown = [n for n in named_metrics(doc.read_text()) if n not in known
               and not any(n.endswith(s) and n.removesuffix(s) in known for s in suffixes)]
    assert not unknown, f"{rel(doc)} names metrics no code registers: {sorted(unknown)}"


# -- condition reasons and Events -------------------------------------------------------------

CAMEL = re.compile(r"[A-Z][A-Za-z]+")


def _camel(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
            CAMEL.fullmatch(node.value):
        return node.value
    return None


def condition_reasons() -> dict[str, str]:
    """Every reason the operator can put in a tenant's conditions, with where it is set:
    the third argument of status.py's _cond(); a (reason, message) pair anywhere in the
    operator (what its checks return for a condition); and the pods' own waiting reasons the
    status passes on (FAILING_WAIT_REASONS)."""
    found: dict[str, str] = {}
    for source in sorted(OPERATOR_PKG.glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            where = f"{rel(source)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "_cond" and len(node.args) >= 3:
                arg = node.args[2]
                for value in (arg.body, arg.orelse) if isinstance(arg, ast.IfExp) else (arg,):
                    if reason := _camel(value):
                        found.setdefault(reason, where)
            elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and \
                    (reason := _camel(node.elts[0])):
                message = node.elts[1]
                # A message: words, an f-string or an expression building one; never another
                # bare word (("Ingress", "NetworkPolicy") lists kinds) or a number.
                if isinstance(message, ast.JoinedStr | ast.Call | ast.BinOp | ast.Attribute) or (
                        isinstance(message, ast.Constant) and isinstance(message.value, str)
                        and " " in message.value):
                    found.setdefault(reason, where)
            elif isinstance(node, ast.Assign) and source.name == "status.py" and \
                    any(isinstance(t, ast.Name) and t.id == "FAILING_WAIT_REASONS"
                        for t in node.targets):
                for const in ast.walk(node.value):
                    if reason := _camel(const):
                        found.setdefault(reason, where)
    return found


def test_every_condition_reason_is_documented_and_no_other():
    reasons = condition_reasons()
    assert {"HostConflict", "TokenReplaced", "ImagePullBackOff", "Ready"} <= reasons.keys()
    documented = {first_code(r[0]) for r in table(REFERENCE, "reasons")}
    documented_both_ways(reasons, documented, "condition reasons the operator sets",
                         "docs/platform/reference.md", "reasons")


def event_reasons() -> dict[str, str]:
    """Every Event reason the operator posts: Event("Reason", ...) and the credential kinds'
    f"{kind.reason}Rotated" forms, expanded over tokens.py's kinds."""
    from joyn_operator import tokens
    kinds = [k for k in vars(tokens).values() if isinstance(k, tokens.Kind)]
    found: dict[str, str] = {}
    templates: list[tuple[str, str]] = []
    for source in sorted(OPERATOR_PKG.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            where = f"{rel(source)}:{getattr(node, 'lineno', 0)}"
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "Event" and node.args):
                continue
            first = node.args[0]
            if reason := _camel(first):
                found.setdefault(reason, where)
            elif isinstance(first, ast.JoinedStr):
                parts = ["{}" if isinstance(v, ast.FormattedValue) else v.value
                         for v in first.values]
                templates.append(("".join(parts), where))
    for template, where in templates:
        for kind in kinds:
            # Only a kind whose replacement waits for a person is ever acknowledged.
            if "ReplacementAcknowledged" not in template or kind.acknowledged:
                found.setdefault(template.format(kind.reason), where)
    return found


def test_every_event_is_documented_and_no_other():
    events = event_reasons()
    assert {"TokenRotated", "DriftCorrected", "Paused"} <= events.keys()
    documented = {first_code(r[0]) for r in table(REFERENCE, "events")}
    documented_both_ways(events, documented, "Events the operator posts",
                         "docs/platform/reference.md", "events")


# -- kubectl joyn -----------------------------------------------------------------------------

def command_of(cell: str) -> str | None:
    """The sub-command a table cell's `kubectl joyn [flags] <command> ...` names: the first
    word after `kubectl joyn` that is neither a flag nor a flag's value."""
    code = first_code(cell) or ""
    words = code.split()
    if words[:2] != ["kubectl", "joyn"]:
        return None
    takes_value = False
    for word in words[2:]:
        word = word.strip("[]")
        if takes_value:
            takes_value = False
        elif word.startswith("-"):
            takes_value = "=" not in word and word in ("-n", "--namespace", "--context",
                                                       "--kubeconfig")
        elif re.fullmatch(r"[a-z][a-z-]*", word):
            return word
    return None


def test_every_kubectl_joyn_command_is_in_the_reps_doc():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_rep_parsers(sub)
    commands = set(sub.choices)
    assert {"tenants", "handover", "rotate"} <= commands
    documented = {command_of(r[0]) for r in table(REPS_DOC, "commands")} - {None}
    documented_both_ways(commands, documented,
                         "`kubectl joyn` commands (rows `kubectl joyn <command> ...`)",
                         "docs/reps.md", "commands")


# -- annotations ------------------------------------------------------------------------------

def test_every_annotation_a_person_sets_is_in_the_reference_and_no_other():
    from joyn_operator import GROUP, keys
    annotations = {v for k, v in vars(keys).items()
                   if k.endswith("_ANNOTATION") and isinstance(v, str) and v.startswith(GROUP)}
    assert keys.ROTATE_ANNOTATION in annotations
    documented = {first_code(r[0]) for r in table(REFERENCE, "annotations")}
    documented_both_ways(annotations, documented,
                         "tenant annotations (operator/joyn_operator/keys.py)",
                         "docs/platform/reference.md", "annotations")
