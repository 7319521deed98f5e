"""Model classes by name: the built-in families and a group's own.

    --model basenji                 BasenjiModel, the report's residual dilated CNN (the default)
    --model deepcre                 the DeepCRE CNN of Peleke et al. 2024 (maize_ddp.deepcre)
    --model my_pkg.nets:MyNet       a class importable from the Python path
    --model path/to/nets.py:MyNet   a class defined in a file

A class is built with the config's `[model]` table as keyword arguments, plus `num_targets` and
`seq_len` from the data where its __init__ takes them. It reads float one-hot [B, 4, L] (A, C, G,
T rows; N is all zeros), made on the device from the streamed uint8 codes, unless it declares
`input = "codes"` to read the codes [B, L] (0..4 = A, C, G, T, N) itself; either way it returns
[B, T]. Everything else (streaming, DDP, AMP, exact metrics, resume, predict, interpret, variants)
is the same for every class.

A run records the class by name, so a checkpoint names code to import: a built-in family is ours,
any other class runs only when the caller trusts the run (`--trust-model-code`,
`Run.load(..., trust_code=True)`), as a shared checkpoint must never run code on its own say-so.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from maize_ddp.errors import ConfigError

BUILT_IN = {"basenji": "maize_ddp.model:BasenjiModel", "deepcre": "maize_ddp.deepcre:DeepCRE"}
DEFAULT = "basenji"


def is_built_in(name: str) -> bool:
    return name in BUILT_IN


def recorded_name(name: str) -> str:
    """The name a run records: a file's absolute path, so the run loads from any folder."""
    module, _, cls = name.rpartition(":")
    if module.endswith(".py"):
        return f"{Path(module).resolve()}:{cls}"
    return name


def model_class(name: str, flag: str = "--model") -> type[nn.Module]:
    """The class `name` stands for; a name that does not resolve is one ConfigError line."""
    target = BUILT_IN.get(name, name)
    module_name, sep, class_name = target.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"{flag} {name}: expected a built-in model ({', '.join(BUILT_IN)}), "
                          "module:Class or path/to/file.py:Class")
    try:
        module = _import_file(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as e:  # the user's module failed while importing: say what and where
        raise ConfigError(f"{flag} {name}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"{flag} {name}: {module_name} has no torch.nn.Module class {class_name!r}")
    return cls


def _import_file(path: str):
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{path}: no such model file")
    name = f"maize_ddp_user_model_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def model_kwargs(name: str, settings: dict) -> dict:
    """The keyword arguments a run records for its class: BasenjiModel's settings checked and
    completed with their defaults (so the record says every one), another class's as given."""
    if name == "basenji":
        from maize_ddp.model import ModelConfig

        cfg = ModelConfig.from_dict(settings)
        cfg.validate()
        return asdict(cfg)
    return dict(settings)


def build(name: str, kwargs: dict) -> nn.Module:
    """A fresh model of class `name` (see the module doc), reading codes [B, L] whatever input
    the class itself takes."""
    cls = model_class(name)
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    given = {k: v for k, v in kwargs.items() if takes_any or k in accepted or k not in ("num_targets", "seq_len")}
    try:
        model = cls(**given)
    except Exception as e:  # the user's __init__ may raise anything for settings it cannot take
        raise ConfigError(f"--model {name}: cannot build it from {given} ({type(e).__name__}: {e})") from None
    if getattr(cls, "input", "one_hot") != "codes":
        model.register_forward_pre_hook(_codes_to_one_hot)
    return model


def check_arguments(name: str, kwargs: dict) -> None:
    """The [model] table's keys must be arguments the class takes: said before any process starts."""
    cls = model_class(name)
    try:
        inspect.signature(cls).bind_partial(**{k: v for k, v in kwargs.items() if k not in ("num_targets", "seq_len")})
    except TypeError as e:
        raise ConfigError(f"--model {name}: its [model] table does not fit {cls.__name__}'s arguments ({e})") from None


def one_hot(codes: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 codes [B, L] -> one-hot [B, 4, L] (N, code 4, is all zeros), on the codes' device."""
    table = torch.eye(5, 4, dtype=dtype, device=codes.device)
    return table[codes.long()].transpose(1, 2)


def _codes_to_one_hot(module, args):
    x = args[0]
    if x.dim() == 2 and not torch.is_floating_point(x):
        return (one_hot(x), *args[1:])
    return None


def check_output(model: nn.Module, name: str, seq_len: int, num_targets: int, device) -> None:
    """A model must map [B, L] to [B, T]: say so before training, not in the loss's traceback."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.full((2, seq_len), 4, dtype=torch.uint8, device=device))
    except Exception as e:
        raise ConfigError(f"--model {name}: fails on a batch of 2 sequences of {seq_len} bp "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_targets):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"--model {name}: returns {shape} for 2 sequences; it must return [B, T] = "
                          f"[2, {num_targets}] (one column per target of the store)")


def io_shape(state: dict) -> tuple[int, int]:
    """(seq_len, num_targets) of a checkpoint's model, whatever its class."""
    model = state["config"]["model"]
    return model["seq_len"], model["num_targets"]


def from_checkpoint_config(config: dict, where, trust_code: bool) -> nn.Module:
    """The model a run's config describes (no weights yet). A class outside maize_ddp is code the
    run names: it is imported only when the caller trusts the run."""
    name = config.get("model_class", DEFAULT)
    if not is_built_in(name) and not trust_code:
        raise ConfigError(f"{where}: the run's model is {name}, code from outside maize_ddp; pass "
                          "--trust-model-code (Run.load(..., trust_code=True)) if you trust this run")
    try:
        return build(name, config["model"])
    except ConfigError as e:
        raise ConfigError(f"{where}: its model config cannot build a model ({e})") from None
