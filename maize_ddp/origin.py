"""Where a dataset's rows came from: the command that cut them and its settings (`origin`).

A converter records the npz folder's own description in the store (StoreMeta.origin):
`{"generator": "convert.genome_to_npz", "settings": {... "geometry": {...}}, "targets": [names]}`
from its summary.json, or `{"generator": "convert.synth", "settings": {... "tss_position": P}}` from
synth's truth.json. Attribution figures read the window's landmarks from it and the variant
scorer the exact window geometry, so neither can drift from how the data were built.

No torch, no zarr: the converters import this.
"""
from __future__ import annotations

import json
from pathlib import Path

from maize_ddp.errors import ConfigError

# The file a generator writes at the top of its npz folder, and the keys kept from it.
DESCRIPTIONS = ("summary.json", "truth.json")
SYNTH_KEPT = ("seed", "seq_len", "num_targets", "noise_sd", "tss_position", "features", "weights")


def read_origin(folder) -> dict | None:
    """The origin of an npz folder from its generator's description, or None (another tool's
    folder). The settings are kept, not the run's counts: they are what describes the rows."""
    folder = Path(folder)
    for name in DESCRIPTIONS:
        try:
            doc = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("generator"), str):
            continue
        if doc["generator"] == "convert.synth":
            return {"generator": "convert.synth", "settings": {k: doc[k] for k in SYNTH_KEPT if k in doc}}
        if isinstance(doc.get("settings"), dict):
            names = doc.get("targets")  # genome_to_npz's and table_to_npz's names of the label columns
            named = {"targets": [str(n) for n in names]} if isinstance(names, list) and names else {}
            return {"generator": doc["generator"], "settings": doc["settings"], **named}
    return None


def target_index(origin: dict | None, num_targets: int, target, flag: str = "target") -> int:
    """`target` as a column index: 0..T-1, or one of target_names (a command line's text may be
    either). Anything else is a ConfigError that lists the targets."""
    names = target_names(origin, num_targets)
    if isinstance(target, str):
        if target in names:
            return names.index(target)
        if target.strip().isdigit():
            target = int(target)
    if hasattr(target, "__index__") and not isinstance(target, bool) and 0 <= int(target) < num_targets:
        return int(target)
    shown = ", ".join(f"{i} ({name})" for i, name in enumerate(names))
    raise ConfigError(f"{flag} {target!r}: the model has {num_targets} target(s): {shown}")


def target_names(origin: dict | None, num_targets: int, unnamed: str = "target{}") -> list[str]:
    """The targets' names as the dataset's converter recorded them (its label columns), else
    `unnamed` with each index: target0, target1, ..."""
    names = (origin or {}).get("targets") if isinstance(origin, dict) else None
    if isinstance(names, list) and len(names) == num_targets:
        names = [str(n) for n in names]
        # a table's header names them: each once, and none that would break a TSV of predictions
        if len(set(names)) == len(names) and all(n and not any(c in n for c in "\t\n\r") for n in names):
            return names
    return [unnamed.format(i) for i in range(num_targets)]


def geometry(origin: dict | None) -> dict | None:
    """The genome window geometry (WindowGeometry's fields) the rows were cut with, or None."""
    if not isinstance(origin, dict):
        return None
    geo = (origin.get("settings") or {}).get("geometry")
    return geo if isinstance(geo, dict) else None


def landmarks(origin: dict | None, seq_len: int) -> dict:
    """Window positions (0-based) of the TSS and TTS and the N spacer's [start, end), where the
    origin records them; {} when it does not."""
    geo = geometry(origin)
    if geo is not None:
        up, down = int(geo["tss_upstream"]), int(geo["tss_downstream"])
        marks = {"TSS": up}
        if not geo.get("promoter_only"):
            spacer = (up + down, up + down + int(geo["spacer"]))
            marks["TTS"] = spacer[1] + int(geo["tts_upstream"]) - 1
            if spacer[1] > spacer[0]:
                marks["spacer"] = spacer
        return {k: v for k, v in marks.items() if (v[0] if isinstance(v, tuple) else v) < seq_len}
    settings = (origin or {}).get("settings") or {}
    if "tss_position" in settings:
        return {"TSS": int(settings["tss_position"])}
    return {}


def describe(origin: dict | None) -> str:
    """One line for convert.inspect."""
    if not origin:
        return "origin: not recorded (the npz folder had no generator's summary.json or truth.json)"
    geo = geometry(origin)
    if geo is not None:
        parts = ("tss_upstream", "tss_downstream", "spacer", "tts_upstream", "tts_downstream")
        shape = " ".join(f"{k}={geo.get(k)}" for k in parts) + (" promoter_only" if geo.get("promoter_only") else "")
        return f"origin: {origin.get('generator')}, window geometry {shape}"
    marks = landmarks(origin, 1 << 62)
    return f"origin: {origin.get('generator')}" + (f", TSS at {marks['TSS']}" if "TSS" in marks else "")
