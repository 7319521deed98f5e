"""Training configuration: dataclass defaults (--default-out) < TOML file (--config) < command-line flags.

Every field of `TrainConfig` and of BasenjiModel's `ModelConfig` is a flag (`--batch-size`,
`--conv1kc`, ...). A TOML file holds training keys at the top level and the model's keyword
arguments in a `[model]` table; `--model` (`model_class`) chooses the class (maize_ddp.models).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from maize_ddp import models
from maize_ddp.errors import ConfigError
from maize_ddp.model import ModelConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def option(default, help: str, alias: str | None = None):
    """A config field whose help text becomes its command-line flag's (and an alias's)."""
    return field(default=default, metadata={"help": help, "alias": alias})


@dataclass
class TrainConfig:
    data: str = option("", "a .zarr or .wds store written by convert/")
    out: str = option("runs/run", "run folder: config, metrics, checkpoints, test report")
    task: str = option("regression", "regression (MSE; Pearson/R²) | classification (labels 0/1, BCE with "
                                      "logits; accuracy/auROC, best checkpoint by val auROC)")
    epochs: int = option(10, "passes over the training split")
    batch_size: int = option(32, "per rank; the global batch is batch_size x world size")
    lr: float = option(6e-3, "peak learning rate of Adam(W) (for the global batch)")
    weight_decay: float = option(0.0, "decoupled (AdamW); 0 is the report's plain Adam")
    warmup_steps: int = option(200, "linear warm-up, then cosine decay to lr_min_ratio x lr")
    lr_min_ratio: float = option(0.05, "the cosine decay ends at this fraction of --lr")
    grad_clip: float = option(0.0, "max global grad norm; 0 = no clipping")
    amp: str = option("auto", "mixed precision: auto (fp32 on GPU and CPU: bf16 measured no faster for this model, "
                              "see docs/gpu.md) | off | bf16 (half the activation memory) | fp16")
    device: str = option("auto", "auto (cuda when available) | cpu | cuda")
    backend: str = option("auto", "process-group backend: auto (nccl on GPUs, gloo on CPUs) | nccl | gloo (gloo "
                                  "lets several processes share one GPU: the DDP path on CUDA without NCCL)")
    sync_bn: bool = option(False, "synchronise BatchNorm statistics across ranks")
    seed: int = option(0, "seeds the model, the shuffle and augmentation")
    num_workers: int = option(0, "DataLoader workers per rank")
    reverse_complement: bool = option(False, "augmentation: random reverse complement")
    max_shift: int = option(0, "augmentation: random shift by +-max_shift bases (N padded)")
    bn_recalibration_batches: int = option(20, "before each validation, BatchNorm statistics from this many "
                                                "train batches with dropout off; 0 = keep the running averages")
    rc_average: bool = option(False, "test report: average predictions of a sequence and its RC")
    checkpoint_every: int = option(0, "steps between mid-epoch checkpoints; 0 = end of epoch only")
    log_every: int = option(50, "steps between reads of the loss and gradient norm on the host (a steps.jsonl "
                                "line, the progress bar, the non-finite check); the step itself never waits")
    tensorboard: bool = option(False, "also write TensorBoard event files to OUT/tensorboard (needs the "
                                      "tensorboard package)")
    compile: bool = option(False, "torch.compile the training forward and backward (CUDA graphs on a single "
                                  "GPU); evaluation stays eager")
    patience: int = option(0, "early stopping after this many epochs without a better val r (auROC for "
                              "classification); 0 = off")
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt when it exists")
    check: bool = option(False, "resolve the config, open the store and take the resume decision as a run "
                                "would, print one line (check: ok resume=yes|no out=PATH) and exit")
    model_class: str = option(models.DEFAULT, f"the model: {' | '.join(models.BUILT_IN)} | module:Class | "
                                              "path/to/file.py:Class (its arguments: the config's [model] table; "
                                              "see docs/models.md)", alias="--model")
    model: dict = field(default_factory=lambda: models.model_kwargs(models.DEFAULT, {}))

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("--data is required: a .zarr or .wds store (see python -m convert.npz_to_zarr)")
        if self.task not in ("regression", "classification"):
            raise ConfigError(f"--task must be regression or classification, not {self.task!r}")
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ConfigError(f"--backend must be auto, nccl or gloo, not {self.backend!r}")
        if self.backend == "nccl" and self.device == "cpu":
            raise ConfigError("--backend nccl needs GPUs; on --device cpu use gloo (or auto)")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"--amp must be auto, off, bf16 or fp16, not {self.amp!r}")
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("lr", "weight_decay", "grad_clip", "lr_min_ratio"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, not {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError("--lr must be positive")
        for name in ("seed", "weight_decay", "warmup_steps", "grad_clip", "num_workers", "max_shift",
                     "bn_recalibration_batches", "checkpoint_every", "patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError("--lr-min-ratio must be between 0 and 1")
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--tensorboard needs the tensorboard package (pip install tensorboard), "
                              "which is not installed")
        models.check_arguments(self.model_class, self.model)  # a class that does not import, or a
        # [model] key it does not take, fails now in one line, not in every rank

    def to_dict(self) -> dict:
        return asdict(self)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(f: dataclasses.Field) -> type:
    """A field's value type, read off its default (the model field has a factory instead)."""
    return type(f.default) if f.default is not dataclasses.MISSING else str


def _add_fields(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    for f in fields(cls):
        if f.name in skip:
            continue
        kind = _kind(f)
        text = f.metadata.get("help") or _model_help(f.name)
        default = "" if kind is bool or f.default == "" else f" (default: {f.default})"
        flags = [_flag(f.name)] + ([f.metadata["alias"]] if f.metadata.get("alias") else [])
        if kind is bool:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(*flags, dest=f.name, type=kind, default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=text + default)


MODEL_PARTS = {"kc": "output channels", "ks": "kernel size", "st": "stride", "pd": "padding"}


def _model_help(name: str) -> str:
    """Help for ModelConfig's report-style names: conv2ks, pool1ks, pdropd, ..."""
    if m := re.fullmatch(r"conv(\d|d)(kc|ks|st|pd)", name):
        bottleneck = " (the bottleneck)" if name == "convdkc" else ""
        return f"{MODEL_PARTS[m[2]]} of {_block(m[1])}{bottleneck}"
    if m := re.fullmatch(r"pool(\d)ks", name):
        return f"max-pool size of {_block(m[1])}"
    if m := re.fullmatch(r"pdrop(\d|d|_head)", name):
        return f"dropout of {_block(m[1])}"
    return {"convdc": "number of residual dilated blocks (dilation 1, 2, 4, ...)",
            "n_channel": "input channels (4: A, C, G, T)"}.get(name, name.replace("_", " "))


def _block(tag: str) -> str:
    return {"d": "each residual dilated block", "_head": "the output layer"}.get(tag, f"conv block {tag}")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """A flag argparse refuses is one line, as every other mistake (--help shows the usage)."""
        raise ConfigError(f"{message} (see {self.prog} --help)")


def make_parser(prog: str = "python -m maize_ddp.train") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Train BasenjiModel with DDP (run under torchrun for several processes). "
               "Flags override --config, which overrides the defaults.")
    p.add_argument("--config", type=Path, default=None, help="TOML file; model keys in a [model] table")
    p.add_argument("--default-out", default=None, metavar="OUT",
                   help="run folder when neither --out nor the config file names one (a launcher's per-job folder)")
    _add_fields(p, TrainConfig, skip=("model",))
    model = p.add_argument_group("model hyperparameters (BasenjiModel; another --model takes its arguments from "
                                 "the config file's [model] table)")
    _add_fields(model, ModelConfig, skip=("num_targets", "seq_len"))  # these come from the data
    return p


PRESETS = Path(__file__).resolve().parent / "presets"


def preset_path(path: Path) -> Path:
    """--config NAME, where no file NAME exists, is the installed preset NAME(.toml), so an
    installed maize_ddp finds its presets from any folder (`--config core_promoter`)."""
    if path.exists() or len(path.parts) != 1:
        return path
    found = PRESETS / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    return found if found.is_file() else path


def load_toml(path: Path) -> dict:
    path = preset_path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.toml")))
        raise ConfigError(f"{path}: config file not found (presets by name: {names})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def resolve(argv=None) -> TrainConfig:
    args = vars(make_parser().parse_args(argv))
    config_path = args.pop("config")
    default_out = args.pop("default_out")
    file = load_toml(config_path) if config_path else {}
    model_file = file.pop("model", {})
    if not isinstance(model_file, dict):
        raise ConfigError(f"{config_path}: model must be a [model] table of model keys, not {model_file!r}")
    train_keys = {f.name for f in fields(TrainConfig)} - {"model"}
    model_keys = {f.name for f in fields(ModelConfig)}  # BasenjiModel's; another class takes its own
    name = args.get("model_class", file.get("model_class", models.DEFAULT))
    unknown = set(file) - train_keys
    if name == "basenji":
        unknown |= {f"model.{k}" for k in set(model_file) - model_keys}
    if unknown:
        raise ConfigError(f"{config_path}: unknown keys {sorted(unknown)}")
    file = _typed(file, TrainConfig, config_path, "")
    flags = {k: v for k, v in args.items() if k in model_keys}
    if name == "basenji":
        model_file = _typed(model_file, ModelConfig, config_path, "model.")
    elif flags:
        raise ConfigError(f"{', '.join(map(_flag, flags))}: BasenjiModel settings, but --model is {name}; give "
                          "its arguments in the config file's [model] table")
    defaults = {"out": default_out} if default_out else {}
    train = {**defaults, **file, **{k: v for k, v in args.items() if k in train_keys}, "model_class": name}
    cfg = TrainConfig(**{**train, "model_class": models.recorded_name(name)},
                      model=models.model_kwargs(name, {**model_file, **flags}))
    cfg.validate()
    return cfg


def _typed(values: dict, cls, path, prefix: str) -> dict:
    """TOML values checked against the fields' types (an int is a fine float; a bool is no int)."""
    kinds = {f.name: _kind(f) for f in fields(cls) if f.default is not dataclasses.MISSING}
    out = {}
    for key, value in values.items():
        kind = kinds.get(key, type(value))
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise ConfigError(f"{path}: {prefix}{key} must be {_KIND_NAMES[kind]}, not {value!r}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{path}: {prefix}{key} must be a finite number, not {value}")
        out[key] = value
    return out


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def from_dict(d: dict) -> TrainConfig:
    name = d.get("model_class", models.DEFAULT)
    return TrainConfig(**{**d, "model": models.model_kwargs(name, d.get("model", {}))})


def dumps(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2) + "\n"
