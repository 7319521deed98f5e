"""Every flag of every command has a line of help that names its default (choices argparse shows)."""
import argparse
import importlib

import pytest

COMMANDS = ["convert.synth", "convert.npz_to_zarr", "convert.npz_to_wds", "convert.inspect", "convert.genome_to_npz",
            "convert.table_to_npz", "maize_ddp.train", "maize_ddp.evaluate", "maize_ddp.predict",
            "maize_ddp.interpret", "maize_ddp.variants", "maize_ddp.cv_report", "maize_ddp.design",
            "maize_ddp.motifs"]


class Parsed(Exception):
    pass


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser the command's main() builds, caught as it parses."""
    def caught(self, args=None, namespace=None):
        raise Parsed(self)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", caught)
    with pytest.raises(Parsed) as e:
        importlib.import_module(module).main(["--help"])
    return e.value.args[0]


@pytest.mark.parametrize("module", COMMANDS)
def test_every_flag_has_help_naming_its_default(module, monkeypatch):
    parser = parser_of(module, monkeypatch)
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert actions
    silent = [a.option_strings[0] if a.option_strings else a.dest for a in actions if not (a.help or "").strip()]
    assert not silent, f"{module}: no help for {silent}"
    undefaulted = [a.option_strings[0] for a in actions
                   if a.option_strings and not a.required and a.default not in (None, False, [], argparse.SUPPRESS)
                   and "default" not in a.help.lower()]
    assert not undefaulted, f"{module}: help does not say the default of {undefaulted}"
