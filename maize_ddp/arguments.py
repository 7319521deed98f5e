"""Flag types and flags that several commands share, so each says the same thing the same way."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model-code", action="store_true",
                   help="import the run's model class when it comes from outside maize_ddp (--model "
                        "module:Class or file.py:Class): only for runs whose code you trust")


def add_run_settings(p: argparse.ArgumentParser) -> None:
    """How a trained run predicts: its own precision and RC averaging unless told otherwise."""
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision (default: the run's, as its test report used)")
    p.add_argument("--rc-average", action=argparse.BooleanOptionalAction,
                   help="average each sequence with its reverse complement (default: the run's)")
    add_trust_flag(p)
