"""`maize-ddp COMMAND [flags]`: the installed entry point to every command (`python -m` works too).

Each command is looked up by name and imported only when it runs, so no command module imports
another and `maize-ddp --help` costs no torch import.
"""
from __future__ import annotations

import importlib
import sys
from typing import NoReturn

from maize_ddp.process_exit import exit_process

COMMANDS = {
    "synth": ("convert.synth", "synthetic promoters with a known noise ceiling (npz shards)"),
    "npz-to-zarr": ("convert.npz_to_zarr", "npz shards -> a Zarr v3 store"),
    "npz-to-wds": ("convert.npz_to_wds", "npz shards -> a WebDataset store"),
    "genome-to-npz": ("convert.genome_to_npz", "genome FASTA + GFF + expression table -> npz shards"),
    "table-to-npz": ("convert.table_to_npz", "a table (or FASTA) of sequences and activities -> npz shards"),
    "inspect": ("convert.inspect", "what a store holds; --verify checks every byte"),
    "train": ("maize_ddp.train", "train a model (under torchrun for several processes)"),
    "evaluate": ("maize_ddp.evaluate", "a run's report on a store split"),
    "predict": ("maize_ddp.predict", "a run's predictions for a store, npz folder, table or FASTA"),
    "interpret": ("maize_ddp.interpret", "attributions (ISM, saliency) of a run's predictions"),
    "variants": ("maize_ddp.variants", "a run's predicted effects of a VCF's variants"),
    "motifs": ("maize_ddp.motifs", "TF-MoDISco patterns from attributions, matched to JASPAR plants or a MEME file"),
    "design": ("maize_ddp.design", "model-guided promoter design: in-silico evolution towards a goal"),
    "cv-report": ("maize_ddp.cv_report", "per-fold and pooled metrics of cross-validation runs"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: maize-ddp COMMAND [flags]   (maize-ddp COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: no command {name!r}\n{usage()}", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    sys.argv = [f"maize-ddp {name}", *rest]  # what argparse shows as the program
    return importlib.import_module(module).main(rest)


def run() -> NoReturn:
    """The installed `maize-ddp` script: main, then the process ends (maize_ddp.process_exit)."""
    exit_process(main())


if __name__ == "__main__":
    run()
