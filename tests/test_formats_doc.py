"""docs/FORMATS.md against what the converters really write: every metadata key the document
shows is written, and every key written is documented (the document cannot drift)."""
import json
import re
from pathlib import Path

import pytest
import zarr

from _npz import make_dataset
from convert import npz_to_wds, npz_to_zarr
from maize_ddp.store_format import FORMAT

DOC = (Path(__file__).resolve().parents[1] / "docs" / "FORMATS.md").read_text()


def section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def block(text: str, lang: str = "") -> str:
    return text.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def keys(value) -> set[str]:
    """Every dict key at any depth."""
    if isinstance(value, dict):
        return set(value) | set().union(*(keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys(v) for v in value))
    return set()


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    make_dataset(root / "src", {"train": [7, 5], "val": [4]})
    return root


def test_the_version_in_the_title_is_the_code_s():
    assert DOC.splitlines()[0] == f"# Store formats (`{FORMAT}`)"


def test_wds_manifest_keys_are_the_documented_ones(src):
    npz_to_wds.convert(src / "src", src / "d.wds")
    written = keys(json.loads((src / "d.wds" / "manifest.json").read_text()))
    documented = set(re.findall(r'"(\w+)":', block(section("WebDataset"), "json")))
    source_keys = set(re.findall(r'"(\w+)"', DOC.split("`sources` is a list of `{", 1)[1].split("}`", 1)[0]))
    assert written - {"train", "val"} == documented - {"train"} | source_keys


def test_zarr_attributes_are_the_documented_ones(src):
    npz_to_zarr.convert(src / "src", src / "d.zarr")
    root = zarr.open_group(src / "d.zarr", mode="r")
    doc = block(section("Zarr v3"))
    group_doc, split_doc = doc.split("{split}/ ", 1)[0], doc.split("{split}/ ", 1)[1].split("{split}/seq", 1)[0]
    documented_root = set(re.findall(r"(\w+):", group_doc)) - {"attrs"}
    documented_split = set(re.findall(r"(\w+)[,:\s\[]", split_doc.split("attrs:", 1)[1])) - {"T", "B", "C"}
    assert set(root.attrs) == documented_root
    files, places = root["train"].attrs["files"], root["train"].attrs["chunk_crc32"]
    assert set(root["train"].attrs) | keys(files) | keys(places) == documented_split | set(
        re.findall(r'"(\w+)":', split_doc))
    arrays = set(re.findall(r"\{split\}/(\w+) ", doc))
    assert set(root["train"].array_keys()) == arrays == {"seq", "y", "id"}


def test_the_metadata_dataclasses_are_documented():
    """Each field of the format's metadata classes appears in both formats' documentation."""
    from dataclasses import fields

    from maize_ddp.store_format import FileRecord, SplitMeta, StoreMeta

    zarr_doc, wds_doc = block(section("Zarr v3")), block(section("WebDataset"), "json")
    for cls in (StoreMeta, SplitMeta, FileRecord):
        for f in fields(cls):
            assert re.search(rf"\b{f.name}\b", zarr_doc), (cls.__name__, f.name)
            assert f'"{f.name}"' in wds_doc, (cls.__name__, f.name)
    assert set(StoreMeta(10, 1).to_dict()) == {"format", "alphabet", *(f.name for f in fields(StoreMeta))}


def test_origin_is_the_npz_folder_s_description(src, tmp_path):
    """Both converters record how the rows were made (synth's truth.json here; genome_to_npz's
    geometry is checked in test_variants), open_store reads it back, and a folder of another
    tool's shards records none."""
    from convert import synth
    from maize_ddp.data import open_store

    synth.generate(tmp_path / "npz", train=8, val=0, test=4, seq_len=60, shard_size=8)
    npz_to_zarr.convert(tmp_path / "npz", tmp_path / "s.zarr")
    npz_to_wds.convert(tmp_path / "npz", tmp_path / "s.wds")
    for store in ("s.zarr", "s.wds"):
        origin = open_store(tmp_path / store).meta.origin
        assert origin["generator"] == "convert.synth"
        assert origin["settings"]["tss_position"] == synth.tss_position(60)
    npz_to_zarr.convert(src / "src", tmp_path / "plain.zarr")
    assert open_store(tmp_path / "plain.zarr").meta.origin is None
    assert "origin" in DOC
