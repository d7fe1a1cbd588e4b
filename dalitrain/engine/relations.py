"""`dalitrain relations CKPT [--top 5] [--png FILE] [--relations FILE]`: the class relations the projections learned.

For every ordered pair of datasets (src -> dst), the projection W [C_dst, C_src] adds W @ logits_src to dataset
dst's logits on dst's samples, so a large W[b, a] says "src class a is evidence for dst class b". The report
lists the top-k (a, b) pairs by weight for each ordered pair (MultiTrain's Table 4) and draws every W as a heatmap
with class names on both axes (`dalitrain.figures.relations_figure`).

On the synthetic corpus, `relations.json` holds the planted truth: for videos of dataset i, P(label_j = b |
label_i = a). The projection into dst is trained on dst's videos, so its truth is relations[dst][src], read as
P(src class a | dst class b); a pair counts as related when that probability is above chance (1 / C_src).
precision@k = share of the top-k pairs that are related, averaged over the ordered pairs; the same measure on
the untrained projection (stored in every checkpoint) is the baseline.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from dalitrain.config import resolve_path
from dalitrain.data.manifest import read_class_names
from dalitrain.engine.checkpoint import CheckpointError, load_checkpoint
from dalitrain.errors import InputError
from dalitrain.figures import relations_figure, save

Weights = dict[tuple[int, int], np.ndarray]  # (src, dst) -> W [C_dst, C_src]


@dataclass
class LearnedRelations:
    names: list[str]
    class_names: list[list[str]]
    trained: Weights
    initial: Weights
    base_dir: str  # the run's data.base_dir, where the synthetic corpus keeps relations.json


def _weights(stored: dict, path: Path, key: str) -> Weights:
    try:
        return {tuple(int(i) for i in name.split("->")): w.numpy() for name, w in stored.items()}
    except (ValueError, AttributeError):
        raise CheckpointError(f"{path}: malformed '{key}' entry (expected 'src->dst' -> tensor)") from None


def load_relations(path: str | Path) -> LearnedRelations:
    path = Path(path)
    state = load_checkpoint(path)
    if not state.get("projection"):
        raise CheckpointError(f"{path}: has no projection weights (the model was trained without a projection)")
    datasets = state["config"]["data"]["datasets"]
    base_dir = state["config"]["data"]["base_dir"]
    class_names = []
    for d in datasets:
        names_file = resolve_path(base_dir, d["class_names"]) if d.get("class_names") else None
        if names_file is not None and names_file.is_file():
            class_names.append(read_class_names(names_file))
        else:  # the report still works without names, e.g. when the corpus has moved
            class_names.append([f"class {j}" for j in range(d["num_classes"])])
    return LearnedRelations(state["dataset_names"], class_names, _weights(state["projection"], path, "projection"),
                            _weights(state["projection_init"], path, "projection_init"), base_dir)


def read_planted(path: str | Path, names: list[str]) -> Weights:
    """relations.json -> (src, dst) -> P(src class a | dst class b) as [C_dst, C_src] (see the module docstring)."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())["relations"]
        return {(s, d): np.asarray(table[dst][src], dtype=np.float64)
                for s, src in enumerate(names) for d, dst in enumerate(names) if s != d}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such relations file") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a synthetic-corpus relations.json ({type(err).__name__}: {err})") from None


def top_pairs(w: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The k largest entries of W [C_dst, C_src] as (src class a, dst class b, weight), largest first."""
    order = np.argsort(-w, axis=None, kind="stable")[:k]
    return [(int(i % w.shape[1]), int(i // w.shape[1]), float(w.flat[i])) for i in order]


def precision_at_k(weights: Weights, planted: Weights, k: int) -> float:
    """Mean over ordered pairs of the share of the top-k (a, b) pairs whose planted probability beats chance."""
    shares = []
    for pair, w in weights.items():
        truth = planted[pair]
        if truth.shape != w.shape:
            raise InputError(f"relations for {pair} have shape {truth.shape}, the projection {w.shape}: "
                             "the checkpoint was not trained on this corpus")
        chance = 1.0 / w.shape[1]
        shares.append(np.mean([truth[b, a] > chance for a, b, _ in top_pairs(w, k)]))
    return 100.0 * float(np.mean(shares))


def random_ranking_precision(planted: Weights) -> float:
    """Expected precision@k of a ranking drawn at random (any k): the share of related pairs, averaged over the
    ordered dataset pairs. An untrained projection is one such draw."""
    return 100.0 * float(np.mean([np.mean(truth > 1.0 / truth.shape[1]) for truth in planted.values()]))


def report_lines(learned: LearnedRelations, k: int, planted: Optional[Weights]) -> list[str]:
    lines = []
    for (src, dst), w in sorted(learned.trained.items()):
        lines.append(f"{learned.names[src]} -> {learned.names[dst]}:")
        for a, b, weight in top_pairs(w, k):
            mark = ""
            if planted is not None:
                mark = "  (planted)" if planted[(src, dst)][b, a] > 1.0 / w.shape[1] else "  (not planted)"
            lines.append(f"  {learned.class_names[src][a]:>28} -> {learned.class_names[dst][b]:<28} "
                         f"{weight:+.3f}{mark}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (e.g. RUN/checkpoints/best.pt)")
    parser.add_argument("--top", type=int, default=5, help="class pairs per ordered dataset pair (default 5)")
    parser.add_argument("--png", help="write a heatmap of every projection matrix to this PNG file")
    parser.add_argument("--relations", help="planted relations (default: relations.json in the run's data.base_dir, "
                                            "when there is one)")


def run(args: argparse.Namespace) -> int:
    learned = load_relations(args.checkpoint)
    relations_file = Path(args.relations) if args.relations else Path(learned.base_dir) / "relations.json"
    planted = read_planted(relations_file, learned.names) if args.relations or relations_file.is_file() else None
    print("\n".join(report_lines(learned, args.top, planted)))
    if planted is not None:
        print(f"precision@{args.top} against {relations_file}: "
              f"trained {precision_at_k(learned.trained, planted, args.top):.1f}%, "
              f"untrained {precision_at_k(learned.initial, planted, args.top):.1f}%, "
              f"a random ranking {random_ranking_precision(planted):.1f}% expected")
    if args.png:
        save(relations_figure(learned.trained, learned.names, learned.class_names), args.png)
        print(f"heatmaps (row: destination dataset, column: source dataset): {args.png}")
    return 0
