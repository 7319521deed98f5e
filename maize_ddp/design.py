"""Model-guided sequence design: in-silico evolution of start sequences, as in Jores et al. 2021.

    python -m maize_ddp.design RUN --seqs FASTA|TABLE --out DIR [--rounds 10] [--goal max|min|VALUE]
        [--target I | --weights W0,W1,...] [--beam B] [--fixed START:END ...] [--forbid SEQ ...]
        [--max-mutations M] [--seed S]

Each round scores every single substitution (3 per position) of every sequence in the beam, in
batches, with the run's own forward pass (its precision and reverse-complement averaging: the
computation `interpret`'s ISM does), and keeps the B best distinct sequences among the beam and
its mutants. Keeping the beam's own sequences in the running means the best objective never goes
down from one round to the next; a sequence that no substitution improves stays as it is.

The objective is a score, one target's prediction or a weighted sum of several (`weights`), to
maximise, minimise, or bring to a value. Constraints: fixed regions and N positions are never
mutated, a forbidden sequence (a restriction site, say) never appears on either strand, and a
design differs from its start at no more than `max_mutations` positions.

Ties between candidates of equal objective go to the one with fewer mutations, then to a random
order drawn from `seed`: the only randomness, so the same seed gives the same designs.

Library: `evolve(run, seqs, ...)` -> [Design]; the command writes, into DIR atomically:

    designs.tsv      id, round, rank, sequence, prediction per target, score, objective,
                     n_mutations, mutations (e.g. G12A;T40C, 1-based) -- round 0 is the start
    trajectory.png   the best design's score per round, one line per start sequence
    design.json      what was run (marks the folder as this command's output)

Under torchrun the start sequences are split across ranks (each designed once); rank 0 writes.
See docs/design.md.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from maize_ddp import attribution, errors, progress
from maize_ddp.codes import ALPHABET, ascii_to_codes, codes_to_ascii, reverse_complement
from maize_ddp.process_exit import exit_process

GENERATOR = "maize_ddp.design"
MANIFEST = "design.json"
GOALS = ("max", "min")  # or a number: bring the score to that value


class DesignError(errors.Error, ValueError):
    pass


# ---------------------------------------------------------------- what is optimised


@dataclass(frozen=True)
class Objective:
    """score = weights . prediction; objective = score (max), -score (min) or -|score - value|."""

    goal: str  # "max", "min" or "value"
    value: float | None
    weights: np.ndarray  # float64 [T]

    def score(self, prediction: np.ndarray) -> np.ndarray:
        return np.asarray(prediction, np.float64) @ self.weights

    def of_score(self, score):
        if self.goal == "max":
            return score
        if self.goal == "min":
            return -score
        return -np.abs(score - self.value)

    def describe(self) -> str:
        if self.goal == "value":
            return f"bring the score to {self.value:g}"
        return {"max": "maximise", "min": "minimise"}[self.goal] + " the score"


def make_objective(num_targets: int, goal="max", target: int = 0, weights: Sequence[float] | None = None) -> Objective:
    """`goal`: "max", "min" or a number (or its text); `weights` (one per target) replace `target`."""
    value = None
    if isinstance(goal, str) and goal.strip().lower() in GOALS:
        goal = goal.strip().lower()
    else:
        try:
            value = float(goal)
        except (TypeError, ValueError):
            raise DesignError(f"goal must be max, min or a number, not {goal!r}") from None
        if not np.isfinite(value):
            raise DesignError(f"goal {goal!r}: a target value must be a finite number")
        goal = "value"
    if weights is None:
        if not 0 <= target < num_targets:
            raise DesignError(f"target {target}: the model has {num_targets} target(s) (0..{num_targets - 1})")
        w = np.zeros(num_targets)
        w[target] = 1.0
    else:
        w = np.asarray(weights, np.float64).reshape(-1)
        if len(w) != num_targets:
            raise DesignError(f"weights: {len(w)} given, the model has {num_targets} target(s); give one per target")
        if not np.isfinite(w).all() or not w.any():
            raise DesignError("weights: need finite numbers, at least one of them non-zero")
    return Objective(goal, value, w)


# ---------------------------------------------------------------- what may change


@dataclass(frozen=True)
class Constraints:
    fixed: np.ndarray  # bool [L]: positions never mutated
    forbidden: tuple[str, ...]  # the forbidden words and their reverse complements
    max_mutations: int | None

    def forbidden_in(self, text: str) -> tuple[str, int] | None:
        """The first forbidden word in `text` (on either strand) and where, or None."""
        for word in self.forbidden:
            at = text.find(word)
            if at >= 0:
                return word, at
        return None

    def creates_forbidden(self, codes: np.ndarray, pos: int) -> bool:
        """Whether `codes`, one substitution at `pos` away from a sequence free of forbidden
        words, holds one: any new occurrence overlaps `pos`, so only that stretch is read."""
        for word in self.forbidden:
            lo, hi = max(0, pos - len(word) + 1), pos + len(word)
            if word in codes_to_ascii(codes[lo:hi]):
                return True
        return False


def parse_region(text: str) -> tuple[int, int]:
    """'START:END' (0-based, END exclusive) -> (start, end)."""
    start, sep, end = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(end)
    except ValueError:
        raise DesignError(f"fixed region {text!r}: write it as START:END (0-based, END exclusive), e.g. 0:50") from None


def make_constraints(seq_len: int, fixed=(), forbid: Sequence[str] = (),
                     max_mutations: int | None = None) -> Constraints:
    """`fixed`: (start, end) pairs or 'START:END' texts, 0-based, end exclusive."""
    mask = np.zeros(seq_len, bool)
    # one region or one word given alone, as a notebook user writes them: fixed=(0, 50), forbid="GAATTC"
    if isinstance(fixed, str) or (len(fixed) == 2 and all(isinstance(v, (int, np.integer)) for v in fixed)):
        fixed = [fixed]
    if isinstance(forbid, str):
        forbid = [forbid]
    for region in fixed:
        start, end = parse_region(region) if isinstance(region, str) else (int(region[0]), int(region[1]))
        if not 0 <= start < end <= seq_len:
            raise DesignError(f"fixed region {start}:{end} is not inside the {seq_len}-base sequence the model reads "
                              f"(0-based START < END <= {seq_len})")
        mask[start:end] = True
    words = []
    for word in forbid:
        upper = str(word).upper()
        if not upper or set(upper) - set("ACGT"):
            raise DesignError(f"forbidden sequence {word!r}: only the letters A, C, G and T are allowed")
        rc = codes_to_ascii(reverse_complement(ascii_to_codes(upper)))
        words += [w for w in (upper, rc) if w not in words]
    if max_mutations is not None and max_mutations < 0:
        raise DesignError(f"max_mutations must not be negative, not {max_mutations}")
    return Constraints(mask, tuple(words), max_mutations)


# ---------------------------------------------------------------- the search


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields; compare .sequence or .prediction instead
class Design:
    """One sequence of a round's beam, with what the run predicts for it."""

    id: str  # of its start sequence
    start: int  # the start sequence's position in the input
    round: int  # 0: the start sequence itself
    rank: int  # 1: the best of the round's beam
    codes: np.ndarray  # uint8 [L]
    prediction: np.ndarray  # float32 [T], exactly as run.predict gives it
    score: float  # weights . prediction
    objective: float  # what the search maximises (see Objective)
    mutations: tuple[tuple[int, str, str], ...]  # (0-based position, start base, new base)

    @property
    def sequence(self) -> str:
        return codes_to_ascii(self.codes)

    @property
    def mutation_text(self) -> str:
        """e.g. 'G12A;T40C': start base, 1-based position, new base."""
        return ";".join(f"{a}{pos + 1}{b}" for pos, a, b in self.mutations)


def mutations_between(start: np.ndarray, codes: np.ndarray) -> tuple[tuple[int, str, str], ...]:
    return tuple((int(p), ALPHABET[start[p]], ALPHABET[codes[p]]) for p in np.flatnonzero(start != codes))


def evolve(run, seqs, *, rounds: int = 10, goal="max", target: int = 0, weights: Sequence[float] | None = None,
           beam: int = 1, fixed=(), forbid: Sequence[str] = (), max_mutations: int | None = None, seed: int = 0,
           ids: Sequence[str] | None = None, align: str | None = None, batch_size: int | None = None,
           seqs_per_step: int = 8, part: tuple[int, int] = (0, 1), show: bool = False) -> list[Design]:
    """In-silico evolution of `seqs` (a sequence, a list of them, codes [N, L] or one-hot [N, 4, L],
    as run.predict takes them) for `rounds` rounds: every round keeps the `beam` best distinct
    sequences among the beam and all their single substitutions (see the module doc).

    goal: "max", "min" or a number; the score is target `target`'s prediction, or with `weights`
    (one per target) the weighted sum. fixed: (start, end) regions never mutated (0-based, end
    exclusive); forbid: words that never appear on either strand (a start holding one is an
    error); max_mutations: most positions a design may differ from its start at. seed: orders
    exact ties (after the fewer mutations), the only randomness. `run`: a maize_ddp.Run, or an
    object with its predictor, device, amp, rc_average, seq_len, num_targets, codes() and predict().
    part (rank, world size): design only every world_size-th start sequence, from `rank`.

    Returns a Design for each round (0 = the start) and rank, ordered by start, round and rank.
    """
    if seed < 0:
        raise DesignError(f"seed must not be negative, not {seed}")
    codes = run.codes(seqs, align)
    ids = [str(i) for i in (range(len(codes)) if ids is None else ids)]
    if len(ids) != len(codes):
        raise DesignError(f"{len(ids)} ids for {len(codes)} sequences")
    if rounds < 0 or beam < 1:
        raise DesignError(f"rounds must be at least 0 and beam at least 1 (got rounds {rounds}, beam {beam})")
    objective = make_objective(run.num_targets, goal, target, weights)
    constraints = make_constraints(codes.shape[1], fixed, forbid, max_mutations)
    check_starts(codes, ids, constraints)  # all of them, on every rank: every rank stops, or none
    rank, world = part
    mine = np.arange(rank, len(codes), world)
    batch_size = batch_size or attribution.ism_batch(run.device)
    search = Search(run, objective, constraints, beam, seed, batch_size, seqs_per_step)
    return search.designs([ids[i] for i in mine], mine, codes[mine], rounds, show)


def check_starts(codes: np.ndarray, ids: Sequence[str], constraints: Constraints) -> None:
    """A design never holds a forbidden word, so no start sequence may: say which does."""
    if not constraints.forbidden:
        return
    for row_id, row in zip(ids, codes):
        found = constraints.forbidden_in(codes_to_ascii(row))
        if found:
            word, at = found
            raise DesignError(f"start sequence {row_id!r} already holds forbidden {word} at {at + 1} (1-based; on "
                              "either strand); a design never may, so remove it from the start or from the "
                              "forbidden list")


@dataclass
class Search:
    """One evolution's settings, and its rounds over a set of start sequences."""

    run: object
    objective: Objective
    constraints: Constraints
    beam: int
    seed: int
    batch_size: int
    seqs_per_step: int

    def designs(self, ids: list[str], starts: np.ndarray, codes: np.ndarray, rounds: int, show: bool) -> list[Design]:
        """Every round of every start sequence (`starts`: their places in the input)."""
        if not len(codes):  # a rank with no share (fewer start sequences than ranks)
            return []
        beams = [[row] for row in codes]  # per start: the beam's codes, best first
        latest = self.round_designs(ids, starts, codes, beams, 0)
        out = list(latest)
        group = max(1, self.seqs_per_step // self.beam)  # start sequences whose mutants are scored together
        done = progress.bar(total=rounds * len(codes), desc="designing", unit="seqs x rounds", enabled=show)
        for r in range(1, rounds + 1):
            members = self.by_start(latest, starts)
            for g in range(0, len(codes), group):
                chunk = list(range(g, min(g + group, len(codes))))
                for i, kept in zip(chunk, self.next_beams([members[i] for i in chunk], codes[chunk], r)):
                    beams[i] = kept
                done.update(len(chunk))
            latest = self.round_designs(ids, starts, codes, beams, r)
            out += latest
        done.close()
        return sorted(out, key=lambda d: (d.start, d.round, d.rank))

    @staticmethod
    def by_start(designs: list[Design], starts: np.ndarray) -> list[list[Design]]:
        """Designs (ordered by start, then rank) grouped per start sequence, in `starts`' order."""
        groups: dict[int, list[Design]] = {int(s): [] for s in starts}
        for d in designs:
            groups[d.start].append(d)
        return [groups[int(s)] for s in starts]

    def round_designs(self, ids, starts, codes, beams, r: int) -> list[Design]:
        """The round's beams as Designs, predicted by run.predict itself: what is reported is what
        the run predicts for these sequences."""
        flat = np.stack([c for b in beams for c in b])
        pred = np.asarray(self.run.predict(flat, batch_size=self.batch_size), np.float32)
        score = self.objective.score(pred)
        out, k = [], 0
        for i, members in enumerate(beams):
            for rank, seq in enumerate(members, 1):
                out.append(Design(ids[i], int(starts[i]), r, rank, seq, pred[k], float(score[k]),
                                  float(self.objective.of_score(score[k])), mutations_between(codes[i], seq)))
                k += 1
        return out

    def mutant_scores(self, parents: np.ndarray) -> np.ndarray:
        """Score (weights . prediction) minus the parent's, of every single substitution of each
        parent: float64 [P, 4, L], 0 at the parent's own base and at N. Through attribution.ism,
        which design's scoring is."""
        x = torch.from_numpy(np.ascontiguousarray(parents)).to(self.run.device)
        # summed in float32 whatever the autocast precision (a product and a sum are not lowered)
        weights = torch.tensor(self.objective.weights, dtype=torch.float32, device=self.run.device)
        delta = attribution.ism(self.run.predictor, x, batch_size=self.batch_size, weights=weights)
        return delta.double().cpu().numpy()

    def next_beams(self, members: list[list[Design]], starts: np.ndarray, r: int) -> list[list[np.ndarray]]:
        """For each start sequence: the beam's next members, from its members and their mutants."""
        parents = np.stack([d.codes for m in members for d in m])
        delta = self.mutant_scores(parents)
        out, k = [], 0
        for m, start in zip(members, starts):
            out.append(self.select(m, delta[k:k + len(m)], start, r))
            k += len(m)
        return out

    def select(self, members: list[Design], delta: np.ndarray, start: np.ndarray, r: int) -> list[np.ndarray]:
        """The `beam` best distinct sequences among `members` and their mutants that keep every
        constraint; best objective first, then fewer mutations, then the seed's order."""
        length = len(start)
        parents = np.stack([d.codes for d in members])  # [P, L]
        alt = np.arange(4)[None, :, None]
        parent_score = np.array([d.score for d in members])
        objective = self.objective.of_score(parent_score[:, None, None] + delta)  # [P, 4, L]
        changed = parents != start  # [P, L]
        n_mut = (np.array([len(d.mutations) for d in members])[:, None, None]
                 + (alt != start[None, None, :]) - changed[:, None, :])
        allowed = (alt != parents[:, None, :]) & (parents[:, None, :] < 4) & ~self.constraints.fixed[None, None, :]
        if self.constraints.max_mutations is not None:
            allowed &= n_mut <= self.constraints.max_mutations
        # candidates: the members themselves first (index < P), then every mutant (p, base, position)
        cand_objective = np.concatenate([[d.objective for d in members], np.where(allowed, objective, -np.inf).ravel()])
        cand_mut = np.concatenate([[len(d.mutations) for d in members], n_mut.ravel()])
        tie = np.random.default_rng([self.seed, r, int(members[0].start)]).random(len(cand_objective))
        order = np.lexsort((tie, cand_mut, -cand_objective))
        kept, seen = [], set()
        for c in order:
            if len(kept) == self.beam or not np.isfinite(cand_objective[c]):
                break
            if c < len(members):
                seq = parents[c]
            else:
                p, base, pos = np.unravel_index(c - len(members), (len(members), 4, length))
                seq = parents[p].copy()
                seq[pos] = base
                if self.constraints.creates_forbidden(seq, int(pos)):
                    continue
            key = seq.tobytes()
            if key not in seen:
                seen.add(key)
                kept.append(seq)
        return kept


# ---------------------------------------------------------------- output


def target_names(run) -> list[str]:
    """The names of the run's targets (maize_ddp.origin.target_names), target0, ... where unrecorded."""
    from maize_ddp.origin import target_names as names_of

    return names_of(getattr(run, "origin", None), run.num_targets)


FIXED_COLUMNS = ("id", "round", "rank", "sequence", "score", "objective", "n_mutations", "mutations")


def designs_table(designs: Sequence[Design], names: Sequence[str]) -> str:
    """designs.tsv: one row per design, id of the start sequence first (see the module doc); the
    targets' columns are numbered instead where a name is one of the table's own columns."""
    if set(names) & set(FIXED_COLUMNS):
        names = [f"target{i}" for i in range(len(names))]
    header = ["id", "round", "rank", "sequence", *names, "score", "objective", "n_mutations", "mutations"]
    lines = ["\t".join(header)]
    for d in designs:
        lines.append("\t".join([d.id, str(d.round), str(d.rank), d.sequence, *(f"{v:.9g}" for v in d.prediction),
                                f"{d.score:.9g}", f"{d.objective:.9g}", str(len(d.mutations)), d.mutation_text]))
    return "\n".join(lines) + "\n"


def best_designs(designs: Sequence[Design]) -> list[Design]:
    """Each start sequence's best design of the last round."""
    last = {}
    for d in designs:
        if d.rank == 1 and d.round >= last.get(d.start, d).round:
            last[d.start] = d
    return [last[s] for s in sorted(last)]


# ---------------------------------------------------------------- command line


def region_arg(text: str) -> tuple[int, int]:
    try:
        return parse_region(text)
    except DesignError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def weights_arg(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, one per target, "
                                         "e.g. 1,-1") from None


def build_parser() -> argparse.ArgumentParser:
    from maize_ddp.arguments import add_trust_flag, count, positive_int
    from maize_ddp.sequences import ALIGNMENTS

    p = argparse.ArgumentParser(prog="python -m maize_ddp.design", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See docs/design.md for the algorithm and the output columns.")
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--seqs", required=True, type=Path,
                   help="the start sequences: a FASTA file or a sequence table (TSV/CSV; also a store or npz folder)")
    p.add_argument("--seq-col", help="a table's sequence column")
    p.add_argument("--id-col", help="a table's id column (default <file name>:<row>)")
    p.add_argument("--align", choices=ALIGNMENTS, help="fit sequences to the model's length as maize_ddp.predict "
                                                       "does (default: as the run's data were)")
    p.add_argument("--split", default="test", help="split of a store (default test; ignored for FASTA and tables)")
    p.add_argument("--out", required=True, type=Path, help="output folder (new, or see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier design output")
    p.add_argument("--rounds", type=positive_int, default=10, help="rounds of evolution (default 10)")
    p.add_argument("--goal", default="max",
                   help="max or min the score, or a number to bring it to (default max)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--target", default="0",
                       help="the target whose prediction is the score: its index or name (default 0)")
    which.add_argument("--weights", type=weights_arg,
                       help="score = this weighted sum of the targets' predictions, one weight per target, "
                            "e.g. 1,-1: high in the first, low in the second (default: --target alone)")
    p.add_argument("--beam", type=positive_int, default=1,
                   help="variants kept per start sequence each round (default 1)")
    p.add_argument("--fixed", action="append", default=[], type=region_arg, metavar="START:END",
                   help="positions never mutated, 0-based, END exclusive, in the model's window; repeatable "
                        "(default none; N positions are never mutated either)")
    p.add_argument("--forbid", action="append", default=[], metavar="SEQ",
                   help="a sequence no design may hold on either strand, e.g. GAATTC; repeatable (default none)")
    p.add_argument("--max-mutations", type=count,
                   help="most positions a design may differ from its start at (default: no limit)")
    p.add_argument("--seed", type=count, default=0,
                   help="orders candidates that tie exactly (after fewer mutations); the only randomness, so "
                        "the same seed gives the same designs (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="mutants per forward pass (default 512 on a GPU, 128 on CPU)")
    p.add_argument("--seqs-per-step", type=positive_int, default=8,
                   help="sequences whose mutants are scored together (default 8)")
    p.add_argument("--figures", type=count, default=1, metavar="N",
                   help="figures to draw: trajectory.png, the one design draws (default 1; 0: none)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_trust_flag(p)
    return p


def read_starts(a, run) -> tuple[list[str], np.ndarray]:
    from maize_ddp.inputs import InputError, open_rows

    source = open_rows(a.seqs, a.split, run.seq_len, seq_col=a.seq_col, id_col=a.id_col, align=a.align or run.align)
    ids, blocks = [], []
    for block_ids, codes in source.blocks():
        ids += [str(i) for i in block_ids]
        blocks.append(codes)
    if not ids:
        raise InputError(f"{source.where}: no sequences")
    return ids, np.concatenate(blocks)


def settings(a, run, n: int, world_size: int, seconds: float) -> dict:
    """design.json: what was run, enough to run it again."""
    objective = make_objective(run.num_targets, a.goal, a.target, a.weights)
    return {"generator": GENERATOR, "checkpoint": str(a.checkpoint), "seqs": str(a.seqs), "n": n,
            "seq_len": run.seq_len, "rounds": a.rounds,
            "goal": objective.goal if objective.value is None else objective.value, "objective": objective.describe(),
            "weights": objective.weights.tolist(), "target_names": target_names(run), "beam": a.beam,
            "fixed": [list(r) for r in a.fixed], "forbid": [w.upper() for w in a.forbid],
            "max_mutations": a.max_mutations, "seed": a.seed, "amp": run.amp, "rc_average": run.rc_average,
            "align": a.align or run.align, "world_size": world_size, "seconds": round(seconds, 3),
            "columns": "designs.tsv: id, round (0 = start), rank in the beam, sequence, prediction per target, "
                       "score = weights . prediction, objective (maximised: score, -score or -|score - goal|), "
                       "n_mutations, mutations from the start (G12A = G at 1-based 12 became A)"}


def write_output(tmp: Path, designs: list[Design], names: list[str], info: dict, figure: bool) -> None:
    (tmp / "designs.tsv").write_text(designs_table(designs, names))
    if figure:
        from maize_ddp.design_plot import trajectory_figure

        goal = info["goal"]
        trajectory_figure(tmp / "trajectory.png", designs, info["objective"], None if goal in GOALS else goal)
    (tmp / MANIFEST).write_text(json.dumps(info, indent=2) + "\n")  # last: marks a complete output


def refuse_output(out: Path, overwrite: bool, inputs: list) -> None:
    """As outputs.refuse_existing, and --overwrite never replaces another command's output (its own
    `kind` check would, once design.json is among outputs.OUTPUT_SIGNS)."""
    from maize_ddp.outputs import OutputError, output_kind, refuse_existing

    found = output_kind(out)
    if overwrite and found not in (None, MANIFEST):
        raise OutputError(f"{out}: is another command's output (it holds {found}); --overwrite replaces only an "
                          "earlier design output")
    refuse_existing(out, overwrite, inputs)


def command(a, d) -> dict | None:
    from maize_ddp import distributed
    from maize_ddp.checkpoint import checkpoint_file
    from maize_ddp.outputs import atomic_output_dir
    from maize_ddp.origin import target_index
    from maize_ddp.run import Run

    inputs = [a.seqs, checkpoint_file(a.checkpoint)]
    distributed.on_main(d, lambda: refuse_output(a.out, a.overwrite, inputs))
    run = Run.load(a.checkpoint, device=d.device, trust_code=a.trust_model_code)
    a.target = target_index(run.origin, run.num_targets, a.target, "--target")
    ids, codes = read_starts(a, run)
    started = time.perf_counter()
    mine = evolve(run, codes, ids=ids, rounds=a.rounds, goal=a.goal, target=a.target, weights=a.weights,
                  beam=a.beam, fixed=a.fixed, forbid=a.forbid, max_mutations=a.max_mutations, seed=a.seed,
                  batch_size=a.batch_size, seqs_per_step=a.seqs_per_step, part=(d.rank, d.world_size),
                  show=d.is_main)
    parts = distributed.all_gather_objects(d, mine)
    if not d.is_main:
        return None
    designs = sorted((x for part in parts for x in part), key=lambda x: (x.start, x.round, x.rank))
    info = settings(a, run, len(ids), d.world_size, time.perf_counter() - started)
    refuse_output(a.out, a.overwrite, inputs)  # again: another command may have written it meanwhile
    with atomic_output_dir(a.out, a.overwrite, inputs) as tmp:
        write_output(tmp, designs, target_names(run), info, a.figures > 0)
    info["gain"] = float(np.mean([b.score for b in best_designs(designs)]) -
                         np.mean([x.score for x in designs if x.round == 0 and x.rank == 1]))
    return info


def main(argv=None) -> int:
    from maize_ddp import distributed

    a = build_parser().parse_args(argv)
    return distributed.run_command(a.device, lambda d: command(a, d), lambda info: (
        f"designed {info['n']} sequences over {info['rounds']} rounds ({info['objective']}; mean score "
        f"change {info['gain']:+.4g}) in {info['seconds']:.1f} s on {info['world_size']} process(es) -> {a.out}"))


if __name__ == "__main__":
    exit_process(main())
