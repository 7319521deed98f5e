"""A trained run as a Python object: load it once, then predict and attribute from a notebook.

    from maize_ddp import Run

    run = Run.load("runs/leaf")                    # checkpoints/best.pt, eval mode, GPU when there is one
    run.predict("ACGT...")                         # one sequence -> numpy [T]
    run.predict(["ACGT...", "TTGA..."])            # strings, uint8 codes [N, L] or one-hot [N, 4, L] -> [N, T]
    ids, pred = run.predict("data.zarr", split="test")   # a store split, npz folder, table or FASTA
    scores = run.attribute(seqs, method="ism")     # [N, 4, L], as `interpret` computes them
    designs = run.design(seqs, rounds=5)           # in-silico evolution, as `design` writes it
    run.score_variants("panel.vcf.gz", "genome.fa", "genes.gff3", "variants.tsv")   # as `variants` writes it
    found, matches = run.motifs("data.zarr")       # TF-MoDISco patterns + JASPAR matches, as `motifs` writes

Predictions use the run's own settings unless told otherwise: its precision (`amp`), its
reverse-complement averaging, and the length rule its table was fitted by (`align`). In-memory
inputs come back as numpy arrays in input order; a path comes back as (ids, predictions), the
ids in the order the input holds them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from maize_ddp import attribution, checkpoint, errors, models
from maize_ddp.codes import ascii_to_codes, onehot_to_codes
from maize_ddp.inference import Predictor, recorded_origin, task_of, trained_align
from maize_ddp.sequences import fit_length


SEQUENCE = re.compile(r"[ACGTNacgtn]*")
NOT_A_BASE = re.compile(r"[^ACGTNacgtn]")
NAME_MAX = 255  # the longest file or folder name of Linux and macOS file systems


class RunInputError(errors.Error, ValueError):
    pass


def _not_bases(seq: str) -> str:
    """Where `seq` stops being bases: "'U' at position 4"."""
    at = NOT_A_BASE.search(seq).start()
    return f"{seq[at]!r} at position {at + 1}"


def _shown(seq) -> str:
    text = seq if isinstance(seq, str) else str(seq)
    return repr(text) if len(text) <= 40 else repr(text[:40] + "...")


def is_path(x) -> bool:
    """A Path, or a str that is not bases and names a file or looks like one (a '/' or a '.');
    any other str is a mistyped sequence, refused as one instead of opened as a file."""
    if isinstance(x, Path):
        return True
    if not isinstance(x, str) or SEQUENCE.fullmatch(x):
        return False
    try:
        exists = Path(x).exists()
    except (OSError, ValueError):  # too long or NUL: no file has that name
        exists = False
    names_fit = all(len(part) <= NAME_MAX for part in x.split("/"))  # else no file system holds that name
    if exists or (names_fit and ("/" in x or "." in x)):
        return True
    raise RunInputError(f"{_shown(x)} is neither a file nor a sequence: {_not_bases(x)} is not A, C, G, T or N")


@dataclass
class Run:
    """A trained model in eval mode and what its run decided: task, sequence length, targets,
    precision, RC averaging, length rule and, for genome data, the window geometry (`origin`)."""

    path: Path
    task: str
    seq_len: int
    num_targets: int
    amp: str
    rc_average: bool
    align: str | None
    origin: dict | None
    config: dict = field(repr=False)
    model: torch.nn.Module = field(repr=False)
    device: torch.device = torch.device("cpu")

    @classmethod
    def load(cls, run_dir, checkpoint_name: str = "best", device=None, trust_code: bool = False) -> "Run":
        """`run_dir`: a run folder (its checkpoints/{best,last}.pt) or a .pt file. Checkpoints
        load with weights_only=True: a file holding anything else is refused, never run. A run
        of a model class from outside maize_ddp imports that class only with trust_code=True."""
        path = Path(run_dir)
        file = path / "checkpoints" / f"{checkpoint_name}.pt" if path.is_dir() else path
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        state = checkpoint.load(file)
        predictor = Predictor.of_checkpoint(state, device, file, trust_code)
        seq_len, num_targets = models.io_shape(state)
        return cls(model=predictor.model, path=file, task=task_of(state), seq_len=seq_len, num_targets=num_targets,
                   amp=predictor.amp, rc_average=predictor.rc_average, align=trained_align(state),
                   origin=recorded_origin(state), config=state["config"], device=device)

    @property
    def target_names(self) -> list[str]:
        """Column names of the targets, as the dataset's converter recorded them (a table's label
        columns, genome_to_npz's targets); target0, target1, ... where none were recorded."""
        from maize_ddp.origin import target_names

        return target_names(self.origin, self.num_targets)

    @property
    def predictor(self) -> Predictor:
        """The model with the run's device, precision and RC averaging (maize_ddp.inference)."""
        return Predictor(self.model, self.device, self.amp, self.rc_average)

    # ---- inputs ---------------------------------------------------------------------------------
    def codes(self, x, align: str | None = None) -> np.ndarray:
        """uint8 codes [N, L] from a sequence, a list of them, codes [N, L] or one-hot [N, 4, L]."""
        align = align or self.align
        if isinstance(x, str):
            x = [x]
        if isinstance(x, (list, tuple)):
            rows = []
            for i, seq in enumerate(x):
                if not isinstance(seq, str):
                    raise RunInputError(f"sequence {i} ({_shown(seq)}) is a {type(seq).__name__}, not a str of bases")
                if not SEQUENCE.fullmatch(seq):
                    raise RunInputError(f"sequence {i} ({_shown(seq)}) is not A, C, G, T and N: {_not_bases(seq)} "
                                        "(a file is read with run.predict(path), or maize_ddp.inputs.open_rows)")
                codes = ascii_to_codes(seq)
                if len(codes) != self.seq_len:
                    if align is None:
                        raise RunInputError(f"sequence {i} has {len(codes)} bases; the model reads {self.seq_len} "
                                            "(pass align='left', 'right' or 'centre' to pad with N or trim)")
                    codes = fit_length(codes, self.seq_len, align)
                rows.append(codes)
            return np.stack(rows) if rows else np.empty((0, self.seq_len), np.uint8)
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
        if x.ndim == 3 and x.shape[1] == 4:
            x = onehot_to_codes(x, "N4L")
        if x.ndim != 2 or x.shape[1] != self.seq_len:
            raise RunInputError(f"expected codes [N, {self.seq_len}] or one-hot [N, 4, {self.seq_len}], got "
                                f"{x.dtype}{list(x.shape)}")
        if x.dtype != np.uint8 or (x.size and x.max() > 4):
            raise RunInputError("codes must be uint8 values 0..4 (A, C, G, T, N)")
        return x

    # ---- predictions ----------------------------------------------------------------------------
    def _predict_codes(self, predictor: Predictor, codes: np.ndarray, batch_size: int) -> np.ndarray:
        return predictor.array(codes, batch_size) if len(codes) else np.empty((0, self.num_targets), np.float32)

    def predict(self, x, *, split: str = "test", batch_size: int = 256, amp: str | None = None,
                rc_average: bool | None = None, align: str | None = None, seq_col=None, id_col=None):
        """Predictions (logits for a classification run): numpy [T] for one sequence, [N, T] for
        several; for a path (store, npz folder, table, FASTA), (ids, [N, T]) in the input's order."""
        predictor = self.predictor.with_settings(amp, rc_average)
        if is_path(x):
            from maize_ddp.inputs import open_rows

            source = open_rows(x, split, self.seq_len, seq_col=seq_col, id_col=id_col, align=align or self.align)
            ids, preds = [], []
            for block_ids, codes in source.blocks():
                ids += [str(i) for i in block_ids]
                preds.append(self._predict_codes(predictor, codes, batch_size))
            return ids, (np.concatenate(preds) if preds else np.empty((0, self.num_targets), np.float32))
        pred = self._predict_codes(predictor, self.codes(x, align), batch_size)
        return pred[0] if isinstance(x, str) else pred

    def attribute(self, x, method: str = "ism", target: int = 0, batch_size: int | None = None,
                  align: str | None = None) -> np.ndarray:
        """Per-base scores [N, 4, L] as `interpret` computes them: ISM (prediction with each base
        minus the reference's) or saliency (gradient x one-hot input), for target `target` (its
        index or its name in target_names)."""
        if method not in attribution.METHODS:
            raise RunInputError(f"method must be one of {', '.join(attribution.METHODS)}, not {method!r}")
        target = self.target_index(target)
        codes = torch.from_numpy(self.codes(x, align))
        scores = attribution.compute(method, self.predictor, codes, target, batch_size)
        return scores.detach().float().cpu().numpy()

    def target_index(self, target) -> int:
        """A target's column: its index, or its name in target_names."""
        from maize_ddp.origin import target_index

        return target_index(self.origin, self.num_targets, target)

    def score_variants(self, vcf, fasta, gff, out, *, batch_size: int = 128, **options):
        """Reference vs alternate predictions of every VCF allele in the gene windows the run's data
        were cut with, written to the variants table `out` as `variants` writes it (docs/interpret.md);
        returns its summary (counts). `options`: overwrite, chrom_map, max_indel, skip_invalid and
        the GFF reading flags (feature_type, id_attribute, ...)."""
        from maize_ddp.variants import score_variants

        record = {"config": self.config, "store": {"origin": self.origin}}
        return score_variants(self.predictor, record, self.path, vcf, fasta, gff, out, batch_size=batch_size,
                              **options)

    def motifs(self, x, *, split: str | None = None, ids=None, top=None, method: str = "ism", target: int = 0,
               motif_db=None, jaspar_taxon: str = "plants", matches: int = 3, seed: int = 0, **discover):
        """TF-MoDISco patterns of the attributions of `x` (sequences, codes, or a path: every row,
        `top` or `ids`; a store's `split`, by default test, or with `ids` the split that holds them),
        each with its best `matches` in `motif_db` (a MEME file) or JASPAR CORE for `jaspar_taxon`:
        (Discovery, matches per pattern), what `motifs` writes (docs/motifs.md)."""
        from maize_ddp import motifs as motifs_

        target = self.target_index(target)
        db, _ = motifs_.load_db(Path(motif_db) if motif_db else None, jaspar_taxon)  # a bad file fails first
        if is_path(x):
            from maize_ddp.inputs import split_holding

            split = split or (split_holding(x, list(ids)) if ids else "test")
            _, codes, scores, _, _ = motifs_.attributions_from_run(self, x, split, ids=ids, top=top, method=method,
                                                                   target=target)
        else:
            codes = self.codes(x)
            scores = self.attribute(codes, method=method, target=target)
        found = motifs_.discover(codes, scores, method=method, seed=seed, **discover)
        return found, motifs_.match(found.patterns, db, matches)[0]

    def design(self, seqs, *, rounds=10, goal="max", target=0, weights=None, beam=1, fixed=(), forbid=(),
               max_mutations=None, seed=0, ids=None, align=None, batch_size=None, seqs_per_step=8, show=False):
        """In-silico evolution of `seqs` towards `goal` (maize_ddp.design.evolve, docs/design.md):
        a list of Design records, round 0 the start sequences, as `design` writes them."""
        from maize_ddp import design as design_

        return design_.evolve(self, seqs, rounds=rounds, goal=goal, target=self.target_index(target), weights=weights, beam=beam,
                              fixed=fixed, forbid=forbid, max_mutations=max_mutations, seed=seed, ids=ids,
                              align=align, batch_size=batch_size, seqs_per_step=seqs_per_step, show=show)
