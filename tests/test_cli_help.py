"""Every command's --help says each option's default, flags show no type, and --version is a
plain flag."""

import pytest
import typer
from typer.testing import CliRunner

from facetrust import __version__
from facetrust.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)


def _states_default(p) -> bool:
    if p.required or p.is_flag or p.name == "help":
        return True  # a flag is off unless given (an on/off pair shows its default)
    if p.default is not None and p.show_default is not False:
        # typer prints [default: ...]
        return True
    return "default" in (p.help or "").lower()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_states_its_default(name):
    cmd = ROOT.commands[name]
    missing = [
        p.opts[0] for p in cmd.params if p.param_type_name == "option" and not _states_default(p)
    ]
    assert not missing, f"facetrust {name}: options without a stated default: {missing}"


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_shows_no_bool_placeholders(name):
    res = runner.invoke(app, [*([name] if name else []), "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.stdout


def test_version_flag():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"facetrust {__version__}"
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    line = next(x for x in res.stdout.splitlines() if "--version" in x)
    assert "Show the version." in line


def test_protect_warp_is_off_by_default_like_the_presets():
    protect = ROOT.commands["protect"]
    warp = next(p for p in protect.params if p.name == "warp")
    assert warp.default is False
    res = runner.invoke(app, ["protect", "--help"], env={"COLUMNS": "200"})
    assert "[default: no-warp]" in res.stdout
