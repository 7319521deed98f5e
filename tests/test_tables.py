"""convert.table_to_npz: sequence tables and FASTA in, npz shards of base codes with ids out.

References are independent: the rows are parsed here with the csv module and turned into codes
by a plain dict, and the stores read back through the real converters.
"""
import csv
import gzip
import json

import numpy as np
import pytest

from convert import npz_to_wds, npz_to_zarr, table_to_npz
from convert.table_to_npz import Splitter, TableError, convert_table
from maize_ddp.data import open_store, read_ids
from maize_ddp.origin import target_names
from maize_ddp.sequences import fit_length

CODE = {"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}


def random_table(rng, n, length=30, targets=1, lengths=None):
    rows = []
    for i in range(n):
        L = length if lengths is None else int(lengths[i])
        seq = "".join(rng.choice(list("ACGTacgtN"), size=L))
        rows.append({"name": f"seq_{i:04d}", "sequence": seq, "group": f"g{i % 7}",
                     **{f"act{t}": f"{rng.normal():.6f}" for t in range(targets)}})
    return rows


def write_table(path, rows, sep="\t"):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=sep)
        w.writeheader()
        w.writerows(rows)
    return path


def read_npz_folder(out):
    """{split: (codes, labels, ids)} concatenated over each split's shards."""
    data = {}
    for split_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        parts = [np.load(f) for f in sorted(split_dir.glob("*.npz"))]
        data[split_dir.name] = (np.concatenate([z["arr_0"] for z in parts]),
                                np.concatenate([z["arr_1"] for z in parts]),
                                np.concatenate([z["ids"] for z in parts]).tolist())
    return data


@pytest.mark.parametrize("name,sep", [("t.tsv", "\t"), ("t.csv", ","), ("t.tsv.gz", "\t"), ("t.csv.gz", ",")])
def test_rows_arrive_as_codes_labels_and_ids(tmp_path, name, sep):
    rng = np.random.default_rng(0)
    rows = random_table(rng, 200, targets=2)
    table = write_table(tmp_path / name, rows, sep)
    out = tmp_path / "npz"
    summary = convert_table(table, out, seq_col="sequence", label_cols=["act0", "act1"], id_col="name",
                            shard_size=64)
    data = read_npz_folder(out)
    by_id = {r["name"]: r for r in rows}
    seen = []
    for split, (codes, y, ids) in data.items():
        assert codes.dtype == np.uint8 and codes.shape == (len(ids), 30)
        for c, label, i in zip(codes, y, ids):
            row = by_id[i]
            assert c.tolist() == [CODE[b.upper()] for b in row["sequence"]]
            assert label.tolist() == pytest.approx([float(row["act0"]), float(row["act1"])], rel=1e-6)
        seen += ids
    assert sorted(seen) == sorted(by_id)
    assert summary.rows == {s: len(d[2]) for s, d in data.items()}
    written = json.loads((out / "summary.json").read_text())
    assert written["generator"] == "convert.table_to_npz" and written["seq_len"] == 30
    assert written["targets"] == ["act0", "act1"]
    # the rows keep their ids through both store formats
    npz_to_zarr.convert(out, tmp_path / "d.zarr")
    npz_to_wds.convert(out, tmp_path / "d.wds")
    for store in ("d.zarr", "d.wds"):
        info = open_store(tmp_path / store)
        assert read_ids(info, "train").tolist() == data["train"][2]
        assert info.meta.origin["generator"] == "convert.table_to_npz"
        assert target_names(info.meta.origin, 2) == ["act0", "act1"]  # what a run trained on it calls its targets
    assert target_names(info.meta.origin, 3) == ["target0", "target1", "target2"]  # names that do not fit: numbered
    for names in (["a", "a"], ["a", "b\tc"], ["a", ""]):  # repeated, or no header could hold them
        assert target_names({"targets": names}, 2) == ["target0", "target1"]


def test_splits_by_hash_are_seeded_and_independent_of_row_order(tmp_path):
    rng = np.random.default_rng(1)
    rows = random_table(rng, 2000)
    splits = {}
    for name, ordered, seed in [("a", rows, 0), ("b", rows[::-1], 0), ("c", rows, 1)]:
        out = tmp_path / name
        convert_table(write_table(tmp_path / f"{name}.tsv", ordered), out, seq_col="sequence",
                      label_cols=["act0"], id_col="name", splitter=Splitter(seed=seed))
        splits[name] = {i: s for s, (_, _, ids) in read_npz_folder(out).items() for i in ids}
    assert splits["a"] == splits["b"]  # the table's order does not move a row to another split
    assert splits["a"] != splits["c"]
    counts = np.array([sum(v == s for v in splits["a"].values()) for s in ("train", "val", "test")]) / 2000
    assert np.abs(counts - [0.8, 0.1, 0.1]).max() < 0.03


def test_group_column_keeps_groups_in_one_split(tmp_path):
    rows = random_table(np.random.default_rng(2), 700)
    out = tmp_path / "o"
    convert_table(write_table(tmp_path / "t.tsv", rows), out, seq_col="sequence", label_cols=["act0"],
                  id_col="name", splitter=Splitter(group_col="group", fractions=(0.5, 0.25, 0.25)))
    group_of = {r["name"]: r["group"] for r in rows}
    split_of_group = {}
    for split, (_, _, ids) in read_npz_folder(out).items():
        for i in ids:
            assert split_of_group.setdefault(group_of[i], split) == split
    assert len(set(split_of_group.values())) > 1


def test_named_groups_are_held_out_and_a_split_no_group_reached_is_an_error(tmp_path):
    rows = random_table(np.random.default_rng(2), 140)  # groups g0 .. g6
    table = write_table(tmp_path / "t.tsv", rows)
    out = tmp_path / "o"
    convert_table(table, out, seq_col="sequence", label_cols=["act0"], id_col="name",
                  splitter=Splitter(group_col="group", test_groups=("g3",)))
    data = read_npz_folder(out)
    group_of = {r["name"]: r["group"] for r in rows}
    assert {group_of[i] for i in data["test"][2]} == {"g3"}  # the held-out species, and it alone
    assert "g3" not in {group_of[i] for s in ("train", "val") for i in data[s][2]} and data["val"][2]
    # three groups hashed into three splits: some seed leaves a split empty, which is refused
    few = [dict(r, group=f"sp{i % 3}") for i, r in enumerate(rows)]
    table = write_table(tmp_path / "few.tsv", few)
    refused = 0
    for seed in range(8):
        try:
            convert_table(table, tmp_path / f"few{seed}", seq_col="sequence", label_cols=["act0"], id_col="name",
                          splitter=Splitter(group_col="group", seed=seed))
        except TableError as e:
            refused += 1
            assert "left it empty: name groups with --val-groups/--test-groups" in str(e)
            assert not (tmp_path / f"few{seed}").exists()
        else:
            assert all(read_npz_folder(tmp_path / f"few{seed}")[s][2] for s in ("train", "val", "test"))
    assert refused > 0


def test_split_column(tmp_path):
    rows = random_table(np.random.default_rng(3), 30)
    for i, r in enumerate(rows):
        r["set"] = ["train", "val", "test"][i % 3]
    out = tmp_path / "o"
    convert_table(write_table(tmp_path / "t.tsv", rows), out, seq_col="sequence", label_cols=["act0"],
                  id_col="name", splitter=Splitter(split_col="set"))
    data = read_npz_folder(out)
    assert data["val"][2] == [r["name"] for r in rows if r["set"] == "val"]  # table order within a split


@pytest.mark.parametrize("align", ["left", "right", "centre"])
def test_unequal_lengths_are_fitted_by_the_documented_rule(tmp_path, align):
    rng = np.random.default_rng(4)
    rows = random_table(rng, 40, lengths=rng.integers(10, 31, size=40))
    out = tmp_path / "o"
    summary = convert_table(write_table(tmp_path / "t.tsv", rows), out, seq_col="sequence", label_cols=["act0"],
                            id_col="name", length=20, align=align)
    by_id = {r["name"]: r["sequence"].upper() for r in rows}
    for codes, _, ids in read_npz_folder(out).values():
        for c, i in zip(codes, ids):
            seq = by_id[i]
            keep = min(len(seq), 20)
            if align == "left":
                expect = seq[:20].ljust(20, "N")
            elif align == "right":
                expect = seq[len(seq) - keep:].rjust(20, "N")
            else:
                cut = (len(seq) - 20) // 2 if len(seq) > 20 else 0
                pad = (20 - len(seq)) // 2 if len(seq) < 20 else 0
                expect = ("N" * pad + seq[cut:cut + 20]).ljust(20, "N")
            assert c.tolist() == [CODE[b] for b in expect], (i, seq, align)
    lengths = [len(s) for s in by_id.values()]
    assert summary.padded == sum(n < 20 for n in lengths) and summary.trimmed == sum(n > 20 for n in lengths)


def test_fit_length_keeps_the_chosen_part():
    codes = np.arange(5, dtype=np.uint8) % 4
    assert fit_length(codes, 3, "left").tolist() == [0, 1, 2]
    assert fit_length(codes, 3, "right").tolist() == [2, 3, 0]
    assert fit_length(codes, 3, "centre").tolist() == [1, 2, 3]
    assert fit_length(codes, 8, "centre").tolist() == [4, 0, 1, 2, 3, 0, 4, 4]


def test_unequal_lengths_without_a_rule_are_refused_naming_the_row(tmp_path):
    rows = random_table(np.random.default_rng(5), 10)
    rows[6]["sequence"] = rows[6]["sequence"][:25]
    out = tmp_path / "o"
    with pytest.raises(TableError, match=r"line 8: id 'seq_0006' is 25 bp but earlier rows are 30 bp; pass --length"):
        convert_table(write_table(tmp_path / "t.tsv", rows), out, seq_col="sequence", label_cols=["act0"],
                      id_col="name")
    assert not out.exists()


BAD_ROWS = [  # (change to row 3, which is on line 5, words of the message, reason counted)
    (lambda r: r.update(sequence="ACGTRACGT" + r["sequence"][9:]), "has 'R' at position 5", "invalid base"),
    (lambda r: r.update(sequence=""), "empty sequence", "empty sequence"),
    (lambda r: r.update(name="seq_0001"), "id 'seq_0001' appears on an earlier row", "duplicate id"),
    (lambda r: r.update(act0=""), "missing label in column 'act0'", "missing label"),
    (lambda r: r.update(act0="high"), "label 'high' in column 'act0' is not a number", "non-numeric label"),
    (lambda r: r.update(act0="inf"), "is not finite", "non-finite label"),
    (lambda r: r.update(act0="1e39"), "label '1e39' in column 'act0' is beyond float32's range",
     "label out of float32 range"),
    (lambda r: r.update(name=""), "empty id", "empty id"),
    # characters str.splitlines() breaks on would split a predictions table's row when read back
    (lambda r: r.update(name="g\u2028x"), "holds a tab or line break ('\\u2028'", "id with a line break"),
    (lambda r: r.update(name="g\x85x"), "holds a tab or line break ('\\x85'", "id with a line break"),
    (lambda r: r.update(name="g\ufffdx"), "holds a byte that is not UTF-8", "id not UTF-8"),
]


@pytest.mark.parametrize("change,words,reason", BAD_ROWS)
def test_bad_rows_are_named_or_dropped_and_counted(tmp_path, change, words, reason):
    rows = random_table(np.random.default_rng(6), 12)
    change(rows[3])
    table = write_table(tmp_path / "t.tsv", rows)
    out = tmp_path / "o"
    with pytest.raises(TableError) as e:
        convert_table(table, out, seq_col="sequence", label_cols=["act0"], id_col="name")
    message = str(e.value)
    assert message.startswith(f"{table}: line 5: ") and words in message and "\n" not in message
    assert not out.exists()
    summary = convert_table(table, out, seq_col="sequence", label_cols=["act0"], id_col="name",
                            drop_invalid=True)
    assert sum(summary.rows.values()) == 11
    written = json.loads((out / "summary.json").read_text())
    assert written["dropped"] == {reason: 1}


def test_fasta_with_a_labels_table(tmp_path):
    rows = random_table(np.random.default_rng(7), 50)
    fasta = tmp_path / "s.fa"
    fasta.write_text("".join(f">{r['name']} some description\n{r['sequence'][:13]}\n{r['sequence'][13:]}\n"
                             for r in rows[:45]))
    labels = write_table(tmp_path / "labels.csv", [{"name": r["name"], "act0": r["act0"]} for r in rows], ",")
    out = tmp_path / "o"
    summary = convert_table(fasta, out, label_cols=["act0"], id_col="name", labels=labels)
    assert summary.label_rows_unused == 5
    by_id = {r["name"]: r for r in rows}
    for codes, y, ids in read_npz_folder(out).values():
        for c, label, i in zip(codes, y, ids):
            assert c.tolist() == [CODE[b.upper()] for b in by_id[i]["sequence"]]
            assert label[0] == pytest.approx(float(by_id[i]["act0"]), rel=1e-6)


def test_command_line_and_missing_column(tmp_path, capsys):
    rows = random_table(np.random.default_rng(8), 60)
    table = write_table(tmp_path / "t.tsv", rows)
    assert table_to_npz.main([str(table), "--seq-col", "sequence", "--label-col", "activity",
                              "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{table}: no column 'activity'" in err
    assert table_to_npz.main([str(table), "--seq-col", "sequence", "--label-col", "act0", "--id-col", "name",
                              "--out", str(tmp_path / "o")]) == 0
    assert "wrote 60 sequences" in capsys.readouterr().out
    # an existing output is replaced only when asked, and only when it is ours
    assert table_to_npz.main([str(table), "--seq-col", "sequence", "--label-col", "act0",
                              "--out", str(tmp_path / "o")]) == 1
    assert "exists" in capsys.readouterr().err
    assert table_to_npz.main([str(table), "--seq-col", "sequence", "--label-col", "act0", "--seed", "3",
                              "--out", str(tmp_path / "o"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["settings"]["seed"] == 3
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("a user's file")
    assert table_to_npz.main([str(table), "--seq-col", "sequence", "--label-col", "act0",
                              "--out", str(other), "--overwrite"]) == 1
    assert "is not a maize_ddp output" in capsys.readouterr().err and (other / "mine.txt").exists()


def test_a_tsv_field_starting_with_a_quote_is_text(tmp_path):
    table = tmp_path / "q.tsv"
    table.write_text('id\tsequence\tact\tnote\nr1\tACGT\t1\t"5 inch\nr2\tACGA\t2\tok\nr3\tACGC\t3\tok\nr4\tACGG\t4\tx"\n')
    summary = convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act"], id_col="id",
                            splitter=Splitter(fractions=(1.0, 0.0, 0.0)))
    assert summary.rows["train"] == 4 and summary.table_rows == 4


def test_excel_csv_with_a_byte_order_mark(tmp_path):
    table = tmp_path / "bom.csv"
    table.write_bytes("\ufeffname,sequence,act\nr1,ACGT,1\nr2,ACGA,2\n".encode("utf-8"))
    summary = convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act"], id_col="name",
                            splitter=Splitter(fractions=(1.0, 0.0, 0.0)))
    assert summary.rows["train"] == 2


@pytest.mark.parametrize("row,words", [
    ('"a\tb",ACGT,1', "holds a tab or line break"),
    ('"a\nb",ACGT,1', "holds a tab or line break"),
    ("r1,ACÉGT,1", "sequence has 'É' at position 3"),
])
def test_ids_that_would_break_a_table_and_non_ascii_bases_are_named(tmp_path, row, words):
    table = tmp_path / "t.csv"
    table.write_text(f"name,sequence,act\nr0,ACGT,0\n{row}\n")
    with pytest.raises(TableError, match=words):
        convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act"], id_col="name")


def test_without_an_id_column_the_split_follows_the_sequence_not_the_file(tmp_path):
    rows = random_table(np.random.default_rng(9), 300)
    splits = []
    for name in ("a.tsv", "renamed.tsv"):
        out = tmp_path / name.replace(".tsv", "")
        convert_table(write_table(tmp_path / name, rows), out, seq_col="sequence", label_cols=["act0"])
        splits.append({s: sorted(map(tuple, codes.tolist())) for s, (codes, _, _) in read_npz_folder(out).items()})
    assert splits[0] == splits[1]


def test_split_names_the_trainer_does_not_read_are_warned_about(tmp_path):
    table = tmp_path / "t.tsv"
    table.write_text("name\tsequence\tact\tset\nr1\tACGT\t1\ttrain\nr2\tACGA\t2\tvalidation\n")
    summary = convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act"], id_col="name",
                            splitter=Splitter(split_col="set"))
    assert "warning: 1 rows went to split 'validation', which the trainer does not read" in "\n".join(summary.lines())


def test_spreadsheet_empty_rows_are_skipped_and_a_semicolon_header_is_explained(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("name,sequence,act\nr1,ACGT,1\nr2,ACGA,2\n,,\n,,\n")
    summary = convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act"], id_col="name",
                            splitter=Splitter(fractions=(1.0, 0.0, 0.0)))
    assert summary.table_rows == 2
    semi = tmp_path / "semi.csv"
    semi.write_text("name;sequence;act\nr1;ACGT;1\n")
    with pytest.raises(Exception, match="the header looks semicolon-separated"):
        convert_table(semi, tmp_path / "o2", seq_col="sequence", label_cols=["act"], id_col="name")


def test_an_id_in_latin1_is_refused_not_turned_into_another_id(tmp_path):
    """A Latin-1 byte read as UTF-8 becomes U+FFFD: the stored id would no longer match the table."""
    lines = ["name\tsequence\tact0"] + [f"gene{i}\tACGTACGTAC\t{i}" for i in range(20)] + ["g\u00e9ne\tACGTACGTAC\t1"]
    table = tmp_path / "t.tsv"
    table.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(TableError) as e:
        convert_table(table, tmp_path / "o", seq_col="sequence", label_cols=["act0"], id_col="name")
    assert f"{table}: line 22: " in str(e.value) and "not UTF-8" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_a_tss_position_reaches_the_store_and_the_landmarks(tmp_path, capsys):
    """--tss-position P is recorded as the data's origin: a store built from the folder gives
    interpret its TSS (windows' from_tss, figures in bp from it); outside the sequences: refused."""
    from maize_ddp.attribution_plot import axis_name, position_label
    from maize_ddp.origin import landmarks

    table = write_table(tmp_path / "t.tsv", random_table(np.random.default_rng(3), 40, length=30))
    base = [str(table), "--seq-col", "sequence", "--label-col", "act0", "--id-col", "name"]
    assert table_to_npz.main(base + ["--out", str(tmp_path / "o"), "--tss-position", "25"]) == 0
    npz_to_zarr.convert(tmp_path / "o", tmp_path / "o.zarr")
    marks = landmarks(open_store(tmp_path / "o.zarr").meta.origin, 30)
    assert marks == {"TSS": 25}
    assert [position_label(x, marks) for x in (0, 25, 29)] == ["-25", "TSS", "+4"]
    assert axis_name(marks) == "bp from the TSS" and axis_name({}) == "position in the window (bp)"
    gene = {"TSS": 10, "TTS": 25, "spacer": (20, 22)}  # right of the spacer: bp from the TTS
    assert [position_label(x, gene) for x in (5, 19, 22, 25, 27)] == ["-5", "+9", "TTS-3", "TTS", "TTS+2"]
    capsys.readouterr()
    assert table_to_npz.main(base + ["--out", str(tmp_path / "bad"), "--tss-position", "30"]) == 1
    assert "--tss-position 30: outside the 30-bp sequences" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
