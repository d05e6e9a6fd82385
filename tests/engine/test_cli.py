"""The `hsearch` command line as the README writes it."""
from __future__ import annotations

import yaml

from engine.api_keys import ApiKeyStore
from engine.cli import main
from engine.config import load_settings


def test_keys_create_takes_config_after_the_subcommand_as_the_readme_writes_it(tmp_path, capsys):
    """Issue 15, finding 7: `hsearch keys create ... --config config.yaml` failed."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert main(["keys", "create", "--tenant", "ops", "--role", "operator", "--config", str(config)]) == 0
    secret = capsys.readouterr().out.strip()
    assert main(["keys", "--config", str(config), "create", "--tenant", "ops", "--role", "write"]) == 0
    capsys.readouterr()
    store = ApiKeyStore(load_settings(str(config)).state_path)
    assert sorted(r.role for r in store.list("ops")) == ["operator", "write"]
    assert store.verify(secret).tenant == "ops"
    assert main(["keys", "list", "--tenant", "ops", "--config", str(config)]) == 0
    assert capsys.readouterr().out.count("\tops\t") == 2


def test_the_module_docstring_lists_every_subcommand_in_order():
    import argparse

    import engine.cli

    commands = next(a for a in engine.cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    listed = [line.split()[0] for line in engine.cli.__doc__.splitlines() if line.startswith("    ") and line[4] != " "]
    assert listed == list(commands)
