"""Plug-ins: packages add families through the `ckreg.families` entry-point group (a temp dist-info on
sys.path, read by importlib.metadata); a plug-in that fails to load is reported, never a crash."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from tests.families.conftest import KWS_YAML

PLUGIN = textwrap.dedent('''\
    from pathlib import Path

    from ckreg.families import Family, parse_families, register_family
    from ckreg.families import yamlfile

    FAMILY_FILE = str(Path(__file__).with_name("kws.yaml"))

    @register_family
    def tagger() -> Family:
        (fam,) = yamlfile.load_family_file(Path(__file__).with_name("tagger.yaml"))
        return Family(name=fam.name, hyperparameters=fam.hyperparameters, template=fam.template, names=("tag",))
    ''')

TAGGER = textwrap.dedent("""\
    families:
      - name: Tagger
        hyperparameters: {vocab: null, dim: null, tags: null}
        layout:
          emb.weight: [vocab, dim]
          out.weight: [tags, dim]
          out.bias: [tags]
    """)


@pytest.fixture
def installed(tmp_path):
    """A package `acme-plugin` installed as files on sys.path (what pip would leave behind)."""
    site = tmp_path / "site"
    pkg = site / "acme_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    (pkg / "kws.yaml").write_text(KWS_YAML)
    (pkg / "tagger.yaml").write_text(TAGGER)
    (site / "acme_broken.py").write_text("raise RuntimeError('this plug-in is broken')\n")
    dist = site / "acme_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ckreg.families]\nkws = acme_plugin:FAMILY_FILE\ntagger = acme_plugin:tagger\nbroken = acme_broken:families\n")
    from ckreg.families import registry, reload

    reg_mod = sys.modules["ckreg.families.registry"]   # (the package's `registry` name is the function)
    saved = registry()
    sys.path.insert(0, str(site))
    try:
        yield reload()
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith(("acme_plugin", "acme_broken"))]:
            del sys.modules[name]
        reg_mod._REGISTRY = saved
    assert not registry().problems and "Tagger" not in registry()


def test_plugins_are_registered_and_failures_reported(installed):
    reg = installed
    kws, tagger = reg.get("KWSNet"), reg.get("Tagger")
    assert kws.source == "plug-in" and "kws = acme_plugin:FAMILY_FILE" in kws.origin
    assert tagger.source == "plug-in" and "tag" in tagger.tokens
    assert "GRU" in reg and reg.get("GRU").source == "built-in"
    (problem,) = reg.problems
    assert "broken = acme_broken:families" in problem and "RuntimeError: this plug-in is broken" in problem
    assert "fix or uninstall acme-plugin" in problem


def test_families_command_lists_plugins(installed):
    r = CliRunner().invoke(cli, ["families", "--json"])
    assert r.exit_code == 2                               # the broken plug-in is an error ...
    assert "this plug-in is broken" in r.stderr and "Traceback" not in r.output
    rows = {x["name"]: x for x in json.loads(r.stdout)}   # ... and everything else is still listed
    assert rows["KWSNet"]["source"] == "plug-in" and rows["GRU"]["source"] == "built-in"
    assert rows["Tagger"]["hyperparameters"] == {"vocab": None, "dim": None, "tags": None}


def test_a_plugin_family_is_detected(installed, tmp_path, torch_mod):
    from ckreg.inspect import inspect_path

    sd = {"emb.weight": torch_mod.zeros(100, 16), "out.weight": torch_mod.zeros(7, 16), "out.bias": torch_mod.zeros(7)}
    torch_mod.save(sd, tmp_path / "tag.pt")
    insp = inspect_path(tmp_path / "tag.pt")
    assert insp.family == "Tagger" and insp.hyperparameters == {"vocab": 100, "dim": 16, "tags": 7}
