"""The documentation stays true: what it tells a newcomer to type exists.

Over README.md, CONTRIBUTING.md, docs/ (runbooks included), charts/README.md and
models/README.md:

- every ``enterprisehub ...`` command names real subcommands, options and
  choices of the real parser (``services.cli.build_parser``), its concrete
  values pass the options' own type checks, and a command shown with
  arguments carries every argument its parser requires (a bare
  ``enterprisehub rollout set`` names the command and is not checked for
  them);
- every ``python -m MODULE ...`` command does the same against the parser the
  module builds when run (captured as it parses, nothing runs after that);
- every ``make TARGET`` is a target of the Makefile;
- every repository path (``services/...``, ``scripts/...``, ...) and every
  ``*.py``/``*.sh`` file named exists, unless git ignores it (generated);
- every relative link, and its ``#anchor``, resolves to a file and heading;
- every UPPER_SNAKE name is a setting of a settings class, a name the
  project's own files use, or a variable the doc's own commands set, and every
  default a doc gives (``NAME=20``, ```NAME` (20)``, a settings table's row)
  is that setting's default;
- every metric, table, function or recording-rule name it quotes is in the
  project's files, every dotted Python name (``catalog.X``,
  ``services.common.flags.require_feature``) resolves, and every HTTP route
  (``POST /v1/leads/events``, ``/health/churn``) is served by a service;
- every PromQL query it quotes parses and reads only series a service
  exports or a rule records.

Usage notation is understood: ``a|b`` lists alternatives (each is checked),
``[...]`` marks optional parts, and ``T``, ``NAME=HASH``, ``<prefix>`` or
``$VAR`` are placeholders (no value check). docs/deploying.md has its own
checks too (tests/infra/test_deploying_doc.py: config keys, stack outputs).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import json
import pkgutil
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest import mock

import pytest

import services
from services.cli import build_parser
from services.common.settings import EnvSettings

REPO = Path(__file__).resolve().parents[1]
DOCS: tuple[Path, ...] = (
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
    *sorted((REPO / "docs").rglob("*.md")),
    REPO / "charts" / "README.md",
    REPO / "models" / "README.md",
)


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def code_snippets(text: str) -> list[str]:
    """Every fenced line (continuations joined) and every inline code span."""
    snippets: list[str] = []
    for block in FENCE.finditer(text):
        snippets.extend(block[1].replace("\\\n", " ").splitlines())
    prose = FENCE.sub("", text)
    snippets.extend(span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose))
    return snippets


# -- commands -------------------------------------------------------------------------

#: A word in capitals (``T``, ``NAME``, ``HASH``), an angle-bracket or dollar
#: placeholder, or an ellipsis: a value the reader supplies.
PLACEHOLDER = re.compile(r"<[^>]*>|\$|\.\.\.|\b[A-Z][A-Z0-9_]*\b")


@dataclass(frozen=True)
class Mention:
    """One command as a doc shows it: where, and its words after the program."""

    doc: str
    program: str
    words: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.doc}: {self.program} {' '.join(self.words)}"


def _words(command: str) -> tuple[str, ...]:
    # Placeholders with spaces stay one word; shell substitutions are a value.
    command = re.sub(r"<[^>]*>", "<value>", command)
    command = re.sub(r"\$\([^)]*\)", "$value", command)
    command = re.split(r"\s#\s|;|&&|\s>\s|`", command)[0]
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    kept: list[str] = []
    for index, original in enumerate(words):
        word = original.strip("[]()")
        if word == "|":
            following = words[index + 1] if index + 1 < len(words) else ""
            if not following.lstrip("[(").startswith("-"):
                break  # a shell pipe, not "this option or that one"
            continue
        if word != "..." and (word or not original):  # `--rates ""` keeps its value
            kept.append(word)
    return tuple(kept)


def mentions(program: str, pattern: str) -> list[Mention]:
    """Every mention of ``program`` (a regex ending where its arguments start)."""
    found = []
    for doc in DOCS:
        for snippet in code_snippets(_text(doc)):
            for match in re.finditer(pattern, snippet):
                before = snippet[: match.start()]
                if re.search(r"(?:-n|--namespace)\s+$", before):
                    continue  # kubectl -n enterprisehub ...: the namespace
                found.append(Mention(_rel(doc), match[1], _words(snippet[match.end() :])))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def _optional_subcommands(parser: argparse.ArgumentParser) -> bool:
    """Whether ``parser`` also runs without a subcommand (``token`` mints; ``token revoke``)."""
    return any(
        isinstance(action, argparse._SubParsersAction) and not action.required
        for action in parser._actions
    )


def _value_problems(action: argparse.Action, value: str) -> list[str]:
    problems = []
    for alternative in value.split("|"):
        if not alternative or PLACEHOLDER.search(alternative):
            continue
        if action.choices is not None and alternative not in action.choices:
            problems.append(f"{alternative!r} is not a choice of {action.dest}")
            continue
        if callable(action.type):
            try:
                action.type(alternative)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                problems.append(f"{alternative!r} is refused by {action.dest}: {exc}")
    return problems


def command_problems(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> list[str]:
    """What is wrong with ``words`` as arguments of ``parser`` (empty: nothing)."""
    index = 0
    while (subcommands := _subcommands(parser)) is not None and index < len(words):
        word = words[index]
        if word.startswith("-") and _optional_subcommands(parser):
            break  # the command's own options, without a subcommand
        alternatives = word.split("|")
        unknown = [name for name in alternatives if name not in subcommands]
        if unknown:
            return [f"{parser.prog} has no command {', '.join(unknown)} ({sorted(subcommands)})"]
        if len(alternatives) > 1:
            return []  # "rollout set|enable-all|advance": a list of commands
        parser = subcommands[word]
        index += 1
    arguments = words[index:]
    options = {flag: action for action in parser._actions for flag in action.option_strings}
    positionals = [
        action
        for action in parser._actions
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction)
    ]
    given: set[str] = set()
    problems: list[str] = []
    position = 0
    cursor = 0
    while cursor < len(arguments):
        word = arguments[cursor]
        if word.startswith("-") and not re.fullmatch(r"-\d.*", word):
            flag, equals, value = word.partition("=")
            action = options.get(flag)
            if action is None:
                problems.append(f"{parser.prog} has no option {flag}")
            else:
                given.add(action.dest)
                if action.nargs != 0:
                    following = arguments[cursor + 1] if cursor + 1 < len(arguments) else "-"
                    if not equals and not following.startswith("-"):
                        cursor += 1
                        value = arguments[cursor]
                    problems += _value_problems(action, value)
        elif position < len(positionals):
            given.add(positionals[position].dest)
            problems += _value_problems(positionals[position], word)
            position += 1
        else:
            problems.append(f"{parser.prog} takes no argument {word!r}")
        cursor += 1
    if not arguments:
        return problems  # the command's name alone: a reference, not a command line
    for action in parser._actions:
        if action.required and action.dest not in given and action.dest != "help":
            what = "/".join(action.option_strings) or action.dest
            problems.append(f"{parser.prog} requires {what}")
    for group in parser._mutually_exclusive_groups:
        if group.required and not any(action.dest in given for action in group._group_actions):
            names = " | ".join(a.option_strings[0] for a in group._group_actions)
            problems.append(f"{parser.prog} requires one of {names}")
    return problems


ENTERPRISEHUB = mentions("enterprisehub", r"(?<![\w.-])(?:[\w./-]*/)?(enterprisehub)\s+(?=[a-z])")
PYTHON_M = mentions("python -m", r"(?<![\w-])python -m ([a-z_][\w.]*)(?=\s|$)")


def test_the_docs_show_commands_to_check() -> None:
    assert len(ENTERPRISEHUB) > 50
    assert len(PYTHON_M) > 30


@pytest.mark.parametrize("mention", ENTERPRISEHUB, ids=lambda m: m.id)
def test_every_enterprisehub_command_parses(mention: Mention) -> None:
    assert command_problems(build_parser(), mention.words) == []


class _ParserCapturedError(Exception):
    """Raised in place of parsing: the module's parser has been captured."""


@cache
def module_parser(module: str) -> argparse.ArgumentParser:
    """The parser ``python -m module`` builds, taken at its first parse."""
    captured: list[argparse.ArgumentParser] = []

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        captured.append(self)
        raise _ParserCapturedError

    with (
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture),
        mock.patch.object(sys, "argv", [module]),
        warnings.catch_warnings(),
    ):
        # runpy warns when the module was imported before (a test did): harmless here.
        warnings.simplefilter("ignore", RuntimeWarning)
        with contextlib.suppress(_ParserCapturedError):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert captured, f"python -m {module} parses no arguments"
    return captured[0]


@pytest.mark.parametrize("mention", PYTHON_M, ids=lambda m: m.id)
def test_every_python_module_command_parses(mention: Mention) -> None:
    module = mention.program
    if module in {"pip", "cProfile"}:
        return  # not the project's
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    assert command_problems(module_parser(module), mention.words) == []


def test_a_wrong_command_is_caught() -> None:
    parser = build_parser()
    assert command_problems(parser, ("rollout", "status")) == []
    assert command_problems(parser, ("rollout", "set", "--feature", "F")) == [
        "enterprisehub rollout set requires --percentage",
        "enterprisehub rollout set requires --reason",
        "enterprisehub rollout set requires --environment",
    ]
    assert command_problems(parser, ("rollback", "undo")) != []
    assert command_problems(parser, ("serve", "realtime|teleport")) != []
    assert command_problems(parser, ("token", "--tenant", "T", "--subject", "S", "--scope", "x"))
    assert command_problems(parser, ("migrate", "--to", "head")) != []
    assert command_problems(parser, ("token", "--tenant", "T", "--subject", "S", "--scope",
                                     "operator", "--ttl", "forever")) != []  # fmt: skip


def test_words_follow_the_usage_notation() -> None:
    assert _words("rollback close-undo KEY --restored A=B | --not-restored C ...") == (
        "rollback", "close-undo", "KEY", "--restored", "A=B", "--not-restored", "C",
    )  # fmt: skip
    assert _words("feed --tenant T [--json] | jq .") == ("feed", "--tenant", "T", "--json")
    assert _words("flags init --seed <that JSON> # note") == ("flags", "init", "--seed", "<value>")


# -- make targets, paths, links -------------------------------------------------------

MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", _text(REPO / "Makefile"), re.M))
MAKE_MENTIONS = sorted(
    {
        (_rel(doc), target)
        for doc in DOCS
        # In code only: prose says "make" as a verb ("must make one call").
        for snippet in code_snippets(_text(doc))
        for target in re.findall(r"(?:^|[\s;&|(`])make ([a-z][a-z-]*)", snippet)
    }
)


@pytest.mark.parametrize(
    ("doc", "target"), MAKE_MENTIONS, ids=[f"{d}: {t}" for d, t in MAKE_MENTIONS]
)
def test_every_make_target_exists(doc: str, target: str) -> None:
    assert target in MAKE_TARGETS


TRACKED: frozenset[str] = frozenset(
    subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
)
ROOTS = ("infra", "services", "alerts", "docs", "tests", "scripts", "localrun", "benchmarks",
         "policies", "charts", "stacks", "models", ".github", ".ci")  # fmt: skip
REPO_PATH = re.compile(rf"(?<![\w/.:-])((?:{'|'.join(map(re.escape, ROOTS))})/[\w./<>*{{}}-]*)")
SOURCE_FILE = re.compile(r"(?<![\w/.*:<>{}-])([\w/-]+\.(?:py|sh))(?![\w/])")


def test_every_markdown_file_is_checked() -> None:
    # DOCS is written out: a markdown file added without its entry would go
    # unchecked, every name in it free to rot.
    assert {path for path in TRACKED if path.endswith(".md")} == {_rel(doc) for doc in DOCS}


def _ignored(path: str) -> bool:
    """Generated output (models, build/, var/) is git-ignored, not committed."""
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def _exists(path: str) -> bool:
    pattern = re.sub(r"<[^>]*>|\{[^}]*\}", "*", path.rstrip("/"))
    if pattern != path.rstrip("/") or "*" in pattern:
        return any(REPO.glob(pattern))
    return (REPO / pattern).exists()


PATHS = sorted(
    {
        (_rel(doc), match[1].rstrip(".,:;)"))
        for doc in DOCS
        for match in REPO_PATH.finditer(_text(doc))
        if not re.search(r"\b[A-Z]+\b", match[1])  # docs/runbooks/X.md, Pulumi.NAME.yaml
    }
)


@pytest.mark.parametrize(("doc", "path"), PATHS, ids=[f"{d}: {p}" for d, p in PATHS])
def test_every_repository_path_exists(doc: str, path: str) -> None:
    assert _exists(path) or _ignored(path), f"{doc} names {path}, which does not exist"


SOURCE_FILES = sorted(
    {(_rel(doc), match[1]) for doc in DOCS for match in SOURCE_FILE.finditer(_text(doc))}
)


@pytest.mark.parametrize(("doc", "name"), SOURCE_FILES, ids=[f"{d}: {n}" for d, n in SOURCE_FILES])
def test_every_source_file_named_exists(doc: str, name: str) -> None:
    # "common/body.py", "contact_rules.py": a tail of some file of the repository.
    assert any(path == name or path.endswith(f"/{name}") for path in TRACKED), (
        f"{doc} names {name}, which is no file of the repository"
    )


def github_anchor(heading: str) -> str:
    """The ``#fragment`` GitHub gives a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", _text(path)), re.M)
    }


LINKS = sorted(
    {
        (_rel(doc), target)
        for doc in DOCS
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", _text(doc)))
        if not re.match(r"[a-z]+:", target)
    }
)


@pytest.mark.parametrize(("doc", "target"), LINKS, ids=[f"{d} -> {t}" for d, t in LINKS])
def test_every_relative_link_resolves(doc: str, target: str) -> None:
    file, _, anchor = target.partition("#")
    path = (REPO / doc).parent / file if file else REPO / doc
    assert path.exists(), f"{doc} links {target}: no file {file}"
    if anchor:
        assert anchor in anchors(path), f"{doc} links {target}: no heading with that anchor"


def test_anchors_are_github_s() -> None:
    assert github_anchor("The loop live on a laptop: `make run`") == (
        "the-loop-live-on-a-laptop-make-run"
    )
    assert github_anchor("CI/CD: previews on pull requests, promotion, drift, rollback") == (
        "cicd-previews-on-pull-requests-promotion-drift-rollback"
    )


# -- settings -------------------------------------------------------------------------


def _settings_classes() -> Iterator[type[EnvSettings]]:
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if module.name.rpartition(".")[2] in {"config", "settings", "cli"}:
            importlib.import_module(module.name)
    pending: list[type[EnvSettings]] = [EnvSettings]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


@cache
def setting_defaults() -> dict[str, set[object]]:
    """Every variable a settings class reads, with the defaults it has there."""
    defaults: dict[str, set[object]] = {}
    for cls in _settings_classes():
        for name, info in cls.model_fields.items():
            defaults.setdefault(name.upper(), set()).add(info.default)
    return defaults


#: Variables of the tools the docs drive, not of the project.
OUTSIDE_VARIABLES = frozenset({"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"})
UPPER_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


@cache
def project_text() -> str:
    """Every non-markdown file of the repository but this one, as one text."""
    texts = []
    for path in sorted(TRACKED):
        if path.endswith(".md") or path == _rel(Path(__file__)) or not (REPO / path).is_file():
            continue  # this file names what must not count
        try:
            texts.append((REPO / path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue  # a picture
    return "\n".join(texts)


@cache
def project_words() -> frozenset[str]:
    """The words of the project's files: identifiers, and with colons (rule names)."""
    text = project_text()
    return frozenset(re.findall(r"\w+", text)) | frozenset(re.findall(r"[\w:]+", text))


@cache
def project_names() -> frozenset[str]:
    """UPPER_SNAKE names the project's own (non-markdown) files use."""
    return frozenset(UPPER_NAME.findall(project_text()))


NAMES = sorted({(_rel(doc), name) for doc in DOCS for name in UPPER_NAME.findall(_text(doc))})


@pytest.mark.parametrize(("doc", "name"), NAMES, ids=[f"{d}: {n}" for d, n in NAMES])
def test_every_variable_named_exists(doc: str, name: str) -> None:
    assigned = re.search(rf"(?:^|[\s(]){name}=", "\n".join(code_snippets(_text(REPO / doc))))
    assert (
        name in setting_defaults()
        or name in project_names()
        or name in OUTSIDE_VARIABLES
        or assigned
    ), f"{doc} names {name}: no setting, no name in the project's files"


#: ``NAME=20``, ```NAME` (20)`` and ``| `NAME` | 20 |``: a setting and its default.
DEFAULT_GIVEN = re.compile(
    r"\b([A-Z][A-Z0-9_]+)(?:=|` \(|` \| )(\d[\d,]*(?:\.\d+)?)(?=\)| s\)|,\s| \(| \||\s*$)", re.M
)
DOC_DEFAULTS = sorted(
    {
        (_rel(doc), name, value.replace(",", ""))
        for doc in DOCS
        for name, value in DEFAULT_GIVEN.findall(_text(doc))
    }
)


def test_the_docs_give_defaults() -> None:
    assert len(DOC_DEFAULTS) > 60


@pytest.mark.parametrize(
    ("doc", "name", "value"), DOC_DEFAULTS, ids=[f"{d}: {n}={v}" for d, n, v in DOC_DEFAULTS]
)
def test_every_default_given_is_the_settings(doc: str, name: str, value: str) -> None:
    defaults = setting_defaults().get(name)
    assert defaults, f"{doc}: {name} is no setting"
    assert any(
        isinstance(d, int | float) and not isinstance(d, bool) and float(d) == float(value)
        for d in defaults
    ), f"{doc} gives {name}={value}; the settings say {defaults}"


# -- metrics, tables, functions, recording rules --------------------------------------

#: Names the docs quote that are not the project's to define.
NOT_THE_PROJECTS = frozenset(
    {
        # the seed's alert and panel names, quoted as what it got wrong (observability.md)
        "websocket_latency_p95",
        "ml_inference_latency_p95",
        "vision_analysis_latency_p95",
        "feature_usage_drop",
        "phase3_revenue_impact_daily",
        "conversion_rate_lift",
        "churn_intervention_latency_s",
        # cAdvisor's (the kubelet's) series; a Pulumi SDK function in a profile
        "container_cpu_cfs_throttled_periods_total",
        "transfer_properties",
        # parameter names of a signature (contracts.md)
        "name_total",
    }
)
SNAKE_NAME = re.compile(
    r"(?<![\w.:/$<-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+(?::[a-z0-9_]+){0,2})(?![\w/<-])"
)
SNAKE_NAMES = sorted(
    {
        (_rel(doc), name)
        for doc in DOCS
        for span in re.findall(r"`([^`]+)`", FENCE.sub("", _text(doc)))
        for name in SNAKE_NAME.findall(span)
        if name not in NOT_THE_PROJECTS
    }
)


@pytest.mark.parametrize(("doc", "name"), SNAKE_NAMES, ids=[f"{d}: {n}" for d, n in SNAKE_NAMES])
def test_every_quoted_name_is_in_the_code(doc: str, name: str) -> None:
    # Metrics (the client appends _total; a histogram's series end in _bucket,
    # _count, _sum), tables, functions, recording rules (level:metric:operations).
    stem = re.sub(r"_(?:total|bucket|count|sum)$", "", name)
    assert stem in project_words() or name in project_words(), (
        f"{doc} quotes {name}, which no file of the project defines or uses"
    )


def test_a_name_the_code_lacks_is_caught() -> None:
    assert "claude_retries_total" in project_words()
    assert "job:websocket_connection_service_failures:ratio_rate5m" in project_words()
    assert "claude_retry_storms" not in project_words()


# -- HTTP routes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every ASGI service, from the apps the stacks would run."""
    from test_contracts import WORKLOADS, service_app  # built as the contract test does

    from infra import catalog
    from services import cli

    routes: set[tuple[str, str]] = set()
    with pytest.MonkeyPatch.context() as patch:
        for key in (*catalog.SERVICE_SECRET_KEYS, *catalog.STACK_SETTINGS):
            patch.delenv(key, raising=False)
        for workload in WORKLOADS.values():
            entry = cli.SERVICES[workload.kind]
            if entry.kind != "asgi":
                continue
            schema = service_app(workload, entry.factory).openapi()
            for path, operations in schema["paths"].items():
                routes |= {(method.upper(), path) for method in operations}
    return routes


def _route_pattern(path: str) -> re.Pattern[str]:
    """``/v1/x/{id}`` matches any parameter name; a trailing ``*`` any rest."""
    path = path.split("?")[0]
    pattern = re.escape(path.rstrip("*")).replace(r"\*", ".*")
    pattern = re.sub(r"\\\{[^}]*\\\}", r"\\{[^}]+\\}", pattern)
    return re.compile(pattern + (".*" if path.endswith("*") else ""))


ROUTE_MENTION = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|WS) (/[^\s`),;|]*)")
ROUTES_NAMED = sorted(
    {
        (_rel(doc), match[1], match[2])
        for doc in DOCS
        # a path broken over two lines inside a code span joins up again
        for match in ROUTE_MENTION.finditer(re.sub(r"/\s*\n\s*", "/", _text(doc)))
    }
)
PATHS_NAMED = sorted(
    {
        (_rel(doc), span.split("?")[0])
        for doc in DOCS
        for span in re.findall(r"`(/(?:v1|health)[^`\s]*)`", _text(doc))
    }
)


def test_the_docs_name_routes() -> None:
    assert len(ROUTES_NAMED) > 25
    assert len(PATHS_NAMED) > 10


@pytest.mark.parametrize(
    ("doc", "method", "path"), ROUTES_NAMED, ids=[f"{d}: {m} {p}" for d, m, p in ROUTES_NAMED]
)
def test_every_route_named_is_served(
    doc: str, method: str, path: str, service_routes: set[tuple[str, str]]
) -> None:
    method = "GET" if method == "WS" else method  # the feed documents its upgrade as GET
    pattern = _route_pattern(path)
    assert any(m == method and pattern.fullmatch(p) for m, p in service_routes), (
        f"{doc}: no service serves {method} {path}"
    )


@pytest.mark.parametrize(("doc", "path"), PATHS_NAMED, ids=[f"{d}: {p}" for d, p in PATHS_NAMED])
def test_every_path_named_is_served(
    doc: str, path: str, service_routes: set[tuple[str, str]]
) -> None:
    # A bare path may name a prefix: `/v1/churn`, `/v1/ml/vision`.
    pattern = _route_pattern(path.removesuffix("...").rstrip("/") + "*")
    assert any(pattern.fullmatch(p) for _, p in service_routes), f"{doc}: no route under {path}"


def test_a_route_no_service_serves_is_caught(service_routes: set[tuple[str, str]]) -> None:
    outcome = _route_pattern("/v1/churn/interventions/{id}/outcome")
    assert any(outcome.fullmatch(path) for _, path in service_routes)
    teleport = _route_pattern("/v1/leads/teleport")
    assert not any(teleport.fullmatch(path) for _, path in service_routes)
    assert ("DELETE", "/v1/churn/leads") not in service_routes


def _unnamed(routes: set[tuple[str, str]]) -> list[str]:
    """The routes no page names, with their method or by their path alone (a wildcard
    such as ``POST /v1/leads/*`` names a group, not each route in it)."""
    named = [
        (method, _route_pattern(path)) for _, method, path in ROUTES_NAMED if not path.endswith("*")
    ]
    paths = [_route_pattern(path) for _, path in PATHS_NAMED if not path.endswith("*")]
    return sorted(
        f"{method} {path}"
        for method, path in routes
        if not any(m == method and pattern.fullmatch(path) for m, pattern in named)
        and not any(pattern.fullmatch(path) for pattern in paths)
    )


def test_every_served_route_is_named_in_the_docs(service_routes: set[tuple[str, str]]) -> None:
    """A route no page names is an API its users cannot find (the reverse of the above)."""
    assert _unnamed(service_routes) == []


def test_a_route_no_page_names_is_caught() -> None:
    assert _unnamed({("POST", "/v1/leads/teleport")}) == ["POST /v1/leads/teleport"]


# -- Python names ---------------------------------------------------------------------

DOTTED = re.compile(
    r"(?<![\w./-])((?:services|infra|localrun|alerts|policies|benchmarks|catalog)"
    r"\.[A-Za-z_][\w.]*[A-Za-z_0-9])(?![\w/-])"
)
DOTTED_NAMES = sorted(
    {
        (_rel(doc), name)
        for doc in DOCS
        for span in re.findall(r"`([^`]+)`", FENCE.sub("", _text(doc)))
        for name in DOTTED.findall(span)
        if not re.search(r"\.(?:py|ya?ml|json|md|sh)$", name)  # a file, checked above
    }
)


def python_name_problem(name: str) -> str | None:
    """Why ``name`` (``package.module.attribute...``) does not resolve, or None."""
    if name.startswith("catalog."):
        name = f"infra.{name}"  # the docs' short form of infra.catalog
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return f"{'.'.join(parts[:split])} has no {attribute}"
            found = getattr(found, attribute)
        return None
    return "no such module"


@pytest.mark.parametrize(("doc", "name"), DOTTED_NAMES, ids=[f"{d}: {n}" for d, n in DOTTED_NAMES])
def test_every_python_name_resolves(doc: str, name: str) -> None:
    assert python_name_problem(name) is None, f"{doc} names {name}"


def test_a_python_name_that_does_not_resolve_is_caught() -> None:
    assert python_name_problem("catalog.ROLLBACK_HANDLER") is None
    assert python_name_problem("services.common.flags.require_feature") is None
    assert python_name_problem("services.common.flags.require_everything") is not None
    assert python_name_problem("services.teleport") is not None


# -- contracts.md: what the stack writes ----------------------------------------------


def _contracts_sentence(start: str, end: str) -> set[str]:
    text = _text(REPO / "docs" / "contracts.md")
    sentence = text[text.index(start) : text.index(end, text.index(start))]
    return {name for name in re.findall(r"\b[A-Z][A-Z0-9_]+\b", sentence)} & set(setting_defaults())


def test_contracts_list_what_the_configmaps_carry() -> None:
    from infra import catalog

    written = set(catalog.COMMON_SETTINGS) | set(catalog.STACK_SETTINGS)
    written |= {catalog.DASHBOARDS.feed_url_setting}
    for spec in catalog.SERVICES.values():
        written |= set(spec.settings)
    in_configmaps = _contracts_sentence("ConfigMap (plain, ", "Read with these defaults")
    assert in_configmaps == written
    by_default = _contracts_sentence("Read with these defaults", "(No FEATURE_*")
    # MAX_REQUEST_BODY_BYTES is both: ml-services' ConfigMap sets it, the others default.
    assert by_default & written == {"MAX_REQUEST_BODY_BYTES"}


# -- code blocks ----------------------------------------------------------------------

BLOCKS = sorted(
    (_rel(doc), block[1], block[2])
    for doc in DOCS
    for block in re.finditer(r"^```(python|json|bash|sh)\n(.*?)^```", _text(doc), re.M | re.S)
)


@pytest.mark.parametrize(
    ("doc", "language", "code"), BLOCKS, ids=[f"{d}: {lang}" for d, lang, _ in BLOCKS]
)
def test_every_code_block_is_valid(doc: str, language: str, code: str) -> None:
    if language == "python":
        ast.parse(code)
    elif language == "json":
        json.loads(code)
    else:
        checked = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


# -- architecture.md: the map covers the tree -----------------------------------------


def test_the_architecture_map_names_every_component_and_package() -> None:
    text = _text(REPO / "docs" / "architecture.md")
    components = [p.stem for p in (REPO / "infra" / "components").glob("*.py")]
    missing = [c for c in components if c != "__init__" and not re.search(rf"\b{c}\b", text)]
    packages = [
        p.name
        for p in (REPO / "services").iterdir()
        if (p / "__init__.py").is_file() and f"{p.name}/" not in text
    ]
    assert (missing, packages) == ([], []), "docs/architecture.md's layout leaves these out"


def test_make_help_lists_every_target() -> None:
    # README: "`make help` lists every target".
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    phony = re.search(r"^\.PHONY: (.+)$", _text(REPO / "Makefile"), re.M)
    assert phony
    assert {line.split()[0] for line in listed.splitlines() if line.strip()} == set(
        phony[1].split()
    )
    assert set(phony[1].split()) == MAKE_TARGETS


# -- PromQL ---------------------------------------------------------------------------

#: A query, not a metric's name with its label list: it calls a PromQL function.
PROMQL_CALL = re.compile(
    r"\b(?:rate|irate|increase|sum|avg|max|min|count|histogram_quantile|changes)"
    r"\s*(?:by\s*\([^)]*\)\s*)?\("
)
#: Quoted as what the seed got wrong (observability.md), or cAdvisor's series.
NOT_OURS_TO_EXPORT = frozenset(
    {
        "websocket_latency_ms",
        "error_count",
        "churn_intervention_latency_s",
        "x_bucket",
        "container_cpu_cfs_throttled_periods_total",
    }
)
QUERIES = sorted(
    {
        (_rel(doc), span.replace("\n", " "))
        for doc in DOCS
        for span in re.findall(r"`([^`]+)`", FENCE.sub("", _text(doc)))
        if PROMQL_CALL.search(span) and "..." not in span
    }
)


@cache
def known_series() -> frozenset[str]:
    """Every series a service exports (its series catalog) or a rule records."""
    from alerts.catalog import exported_metrics, recorded_series

    return frozenset(exported_metrics() | recorded_series())


def test_the_docs_quote_queries() -> None:
    assert len(QUERIES) > 10
    assert "http_requests_total" in known_series()
    assert "job:websocket_connection_service_failures:ratio_rate5m" in known_series()
    assert "http_request_total" not in known_series()


@pytest.mark.parametrize(("doc", "query"), QUERIES, ids=[f"{d}: {q}" for d, q in QUERIES])
def test_every_query_parses_and_reads_real_series(doc: str, query: str) -> None:
    from alerts.catalog import selected_metrics

    # A runbook's `$job` is Grafana's variable: any job name stands in for it.
    read = selected_metrics(query.replace("$job", "websocket-manager"))
    unknown = read - known_series() - NOT_OURS_TO_EXPORT
    assert not unknown, f"{doc}: {query} reads series nothing exports or records: {unknown}"
