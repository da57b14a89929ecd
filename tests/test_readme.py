"""The user documents name only commands, options and configs that exist.

Every ``facetrust COMMAND [OPTIONS]`` in a code block or an inline code span of README.md,
docs/*.md and the model card must be a command of the CLI, and every option on it one of that
command's (or, before the command, one of ``facetrust``'s own); every ``configs/*.yaml`` they
name must exist; the README's set-up and test commands must be the ones CI runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from facetrust.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "src" / "facetrust" / "assets" / "MODEL_CARD.md",
]
CLI = typer.main.get_command(app)

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"`([^`\n]+)`")
_CALL = re.compile(
    r"(?:^|[\s;|&(])(?:python3? -m )?facetrust((?:\s+-[-\w]+(?:\s+\d+)?)*\s+[a-z][\w-]*.*)"
)


def _opts(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def command_lines(text: str) -> list[str]:
    """The ``facetrust ...`` invocations in a document's code blocks and inline code spans
    (continuation lines joined, comments and what follows a pipe or redirect dropped)."""
    chunks = [m.group(1).replace("\\\n", " ") for m in _FENCE.finditer(text)]
    outside = _FENCE.sub("", text)
    chunks += [m.group(1) for m in _SPAN.finditer(outside)]
    calls = []
    for chunk in chunks:
        for line in chunk.splitlines():
            line = line.split(" #", 1)[0]
            m = _CALL.search(line)
            if m and not re.search(r"\b(?:from|import)\s+facetrust\b", line):  # Python
                rest = re.split(r"\s(?:\||>|&&|;)\s?", m.group(1))[0]
                calls.append(" ".join(("facetrust" + rest).split()))
    return calls


def problems(call: str) -> list[str]:
    """What is wrong with one ``facetrust ...`` invocation: an unknown command or option."""
    try:
        words = shlex.split(call)
    except ValueError:
        words = call.split()
    words = [w.strip("[]") for w in words[1:]]
    root_opts = _opts(CLI)
    i = 0
    while i < len(words) and words[i].startswith("-"):  # facetrust --threads 2 detect ...
        name = words[i].split("=")[0]
        if name not in root_opts:
            return [f"{call!r}: facetrust has no option {name}"]
        i += 1 if "=" in words[i] or name in ("--version", "--help") else 2
    if i >= len(words):
        return []
    name = words[i]
    cmd = CLI.commands.get(name)
    if cmd is None:
        return [f"{call!r}: no command {name!r} (commands: {', '.join(sorted(CLI.commands))})"]
    allowed = _opts(cmd) | {"--help"}
    bad = []
    for w in words[i + 1 :]:
        for part in w.split("|"):
            opt = part.split("=")[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", opt) and opt not in allowed:
                bad.append(f"{call!r}: facetrust {name} has no option {opt}")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_and_option_exists(doc):
    calls = command_lines(doc.read_text(encoding="utf-8"))
    found = [p for call in calls for p in problems(call)]
    assert not found, "\n".join(found)


def test_the_readme_documents_the_main_commands():
    calls = command_lines((ROOT / "README.md").read_text(encoding="utf-8"))
    named = {shlex.split(c)[1] for c in calls if len(shlex.split(c)) > 1}
    assert {"detect", "explain", "protect", "serve", "models", "train"} <= named, named
    assert len(calls) >= 20


def test_the_check_catches_a_renamed_command_or_option():
    assert problems("facetrust detekt photo.jpg")  # a renamed command
    assert problems("facetrust detect photo.jpg --jsn")  # a misspelt option
    assert problems("facetrust protect a.jpg -o b.png --strength strong --warp-pixels 1")
    assert problems("facetrust --thread 2 detect a.jpg")
    assert not problems("facetrust --threads 2 detect a.jpg --json --frames 32")
    assert not problems("facetrust explain photo.jpg -o heatmap.png [--json]")
    text = "```bash\nuv run facetrust detect a.jpg \\\n    --csv > out.csv  # c\n```\n"
    assert command_lines(text) == ["facetrust detect a.jpg --csv"]
    # a command of the docs that the CLI lost fails the documents' test
    assert problems("facetrust scan-export s.db -o f.parquet --formats csv")


def test_every_named_config_exists():
    named = set()
    for doc in DOCS:
        named |= set(re.findall(r"configs/[\w.-]+\.yaml", doc.read_text(encoding="utf-8")))
    assert "configs/default.yaml" in named and "configs/long.yaml" in named
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"documents name configs that do not exist: {missing}"


def test_readme_setup_and_test_commands_are_what_ci_runs():
    first = _FENCE.search((ROOT / "README.md").read_text(encoding="utf-8")).group(1)
    setup, main, tests = [line.split("#")[0].strip() for line in first.strip().splitlines()]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # bytecode compiled at install, so a user's first `facetrust detect` does not compile it
    sync = "uv sync --locked --all-extras --compile-bytecode"
    assert setup == f"python3 -m pip install uv && {sync}"
    assert sync in ci and "python3 -m pip install" in ci
    assert main == "uv run facetrust detect examples/astronaut.jpg"
    assert (ROOT / "examples" / "astronaut.jpg").is_file()
    assert tests == "uv run pytest" and "\nuv run pytest\n" in ci
