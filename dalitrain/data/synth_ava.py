"""`dalitrain synth --preset ava_demo`: a synthetic action-localisation dataset in AVA's real file formats.

Each video shows a few "actors" (coloured shapes) over a static background for a few seconds; at every keyframe
(one per second, as AVA's; timestamp s is frame s x fps) each actor has a ground-truth box and the actions it is
doing in the second centred on the keyframe, several at once, drawn per actor and second with long-tailed rates, so
that head, mid and tail classes exist:

| id | action | what it looks like | rate |
|---|---|---|---|
| 1 | move | the actor travels across the frame | 0.45 |
| 2 | spin | it turns about its centre | 0.3 |
| 3 | blink | its colour alternates between two colours | 0.15 |
| 4 | grow | its size swells and shrinks | 0.08 |
| 5 | touch | its shape meets another actor's (follows from the motion: not drawn) | - |

The demo preset's frames are square, so that evaluation's whole-frame view (scaled to the crop) shows the actors
with the proportions training's square crops do.

Files (the formats `dalitrain.data.ava` reads): `videos/VIDEO.webm`; `annotations/train.csv`, `val.csv` (`video_id,
timestamp, x1, y1, x2, y2, action_id, person_id`); `annotations/proposals_train.csv`, `proposals_val.csv` (the true
boxes jittered, plus false positives, with detector-like scores); `annotations/labelmap.pbtxt`;
`annotations/excluded.csv` (a few validation keyframes, as AVA's excluded timestamps); `corpus.json` (the settings and
the per-action training counts). Deterministic for a seed; pure numpy rendering (`synth_render.paint`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dalitrain.data.synth_factors import SHAPES
from dalitrain.data.synth_render import encode, paint
from dalitrain.errors import InputError

ACTIONS = {1: "move", 2: "spin", 3: "blink", 4: "grow", 5: "touch"}
RATES = {1: 0.45, 2: 0.3, 3: 0.15, 4: 0.08}  # drawn per actor and second; touch follows from the motion
PALETTE = ((220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 30), (200, 60, 200), (30, 200, 210))


@dataclass(frozen=True)
class AvaPreset:
    videos: tuple[int, int]  # train, val
    seconds: int  # keyframes per video
    fps: int
    width: int
    height: int
    actors: tuple[int, int]  # inclusive range per video


PRESETS = {"ava_demo": AvaPreset(videos=(150, 24), seconds=6, fps=8, width=80, height=80, actors=(2, 3)),
           "ava_tiny": AvaPreset(videos=(3, 2), seconds=3, fps=4, width=64, height=48, actors=(2, 2))}


def _actor_tracks(rng: np.random.Generator, preset: AvaPreset, count: int) -> list[dict]:
    """Per actor: its shape, colours, radius and, per frame, position, angle, scale, colour index and actions."""
    frames = preset.seconds * preset.fps
    tracks = []
    for _ in range(count):
        radius = rng.uniform(0.08, 0.12) * min(preset.width, preset.height)
        colours = rng.choice(len(PALETTE), size=2, replace=False)
        active = {a: rng.random(preset.seconds) < rate for a, rate in RATES.items()}  # [seconds] per action
        x, y = rng.uniform(radius, preset.width - radius), rng.uniform(radius, preset.height - radius)
        vx, vy = rng.choice([-1, 1]) * rng.uniform(1.0, 2.0), rng.uniform(-0.8, 0.8)
        xs, ys, angles, scales, tints = [], [], [], [], []
        angle, phase = 0.0, 0.0
        for t in range(frames):
            second = min(round(t / preset.fps), preset.seconds - 1)  # the keyframe this frame is nearest to
            if active[1][second]:
                x, y = x + vx, y + vy
                if not radius <= x <= preset.width - radius:
                    vx, x = -vx, float(np.clip(x, radius, preset.width - radius))
                if not radius <= y <= preset.height - radius:
                    vy, y = -vy, float(np.clip(y, radius, preset.height - radius))
            angle += 0.3 if active[2][second] else 0.0  # a clear turn, well under the shapes' symmetry
            phase += 1.0
            xs.append(x)
            ys.append(y)
            angles.append(angle)
            scales.append(1.0 + 0.35 * np.sin(phase * 0.8) if active[4][second] else 1.0)
            tints.append(int(t % 2) if active[3][second] else 0)
        tracks.append({"shape": SHAPES[rng.integers(len(SHAPES))], "colours": colours, "radius": radius,
                       "x": xs, "y": ys, "angle": angles, "scale": scales, "tint": tints, "active": active})
    return tracks


def _keyframe_rows(video: str, tracks: list[dict], preset: AvaPreset) -> list[tuple]:
    """(video, second, x1, y1, x2, y2, action, person) at each keyframe (frame second x fps)."""
    rows = []
    for second in range(preset.seconds):
        t = second * preset.fps
        boxes = []
        for track in tracks:
            r = track["radius"] * track["scale"][t]
            boxes.append((max(track["x"][t] - r, 0) / preset.width, max(track["y"][t] - r, 0) / preset.height,
                          min(track["x"][t] + r, preset.width) / preset.width,
                          min(track["y"][t] + r, preset.height) / preset.height))
        for person, (track, box) in enumerate(zip(tracks, boxes)):
            actions = [a for a in RATES if track["active"][a][second]]
            touching = any(_touch(track, other, t) for j, other in enumerate(tracks) if j != person)
            for action in actions + ([5] if touching else []):
                rows.append((video, second, *box, action, person))
    return rows


def _touch(a: dict, b: dict, t: int) -> bool:
    """The two actors' shapes meet at frame t: their centres closer than the sum of their radii (the shapes fill
    most of their circles, so this is contact, where overlapping bounding boxes would already count near misses)."""
    reach = a["radius"] * a["scale"][t] + b["radius"] * b["scale"][t]
    return bool(np.hypot(a["x"][t] - b["x"][t], a["y"][t] - b["y"][t]) < reach)


def _frames(tracks: list[dict], preset: AvaPreset, rng: np.random.Generator):
    base = rng.uniform(90, 150, size=3).astype(np.float32)  # a muted flat background
    for t in range(preset.seconds * preset.fps):
        frame = np.broadcast_to(base, (preset.height, preset.width, 3)).copy()
        for track in tracks:
            colour = PALETTE[track["colours"][track["tint"][t]]]
            paint(frame, track["shape"], track["x"][t], track["y"][t], track["radius"] * track["scale"][t],
                  track["angle"][t], colour)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _proposals(rows: list[tuple], rng: np.random.Generator) -> list[tuple]:
    """A detector's person boxes: each true box once, jittered, scored high; plus false positives scored low."""
    out = []
    for video, second, x1, y1, x2, y2 in sorted({row[:6] for row in rows}):
        w, h = x2 - x1, y2 - y1
        j = rng.uniform(-0.08, 0.08, size=4) * np.array([w, h, w, h])
        box = np.clip(np.array([x1, y1, x2, y2]) + j, 0.0, 1.0)
        out.append((video, second, *box.tolist(), float(rng.uniform(0.75, 1.0))))
        if rng.random() < 0.3:
            cx, cy, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.2)
            out.append((video, second, cx - s, cy - s, cx + s, cy + s, float(rng.uniform(0.05, 0.5))))
    return out


def generate_ava(out_dir: str | Path, preset: str = "ava_demo", seed: int = 0) -> dict:
    """Write the dataset (module docstring) and return its summary; an existing complete one is kept."""
    if preset not in PRESETS:
        raise InputError(f"unknown AVA preset {preset!r} (choose from {', '.join(PRESETS)})")
    spec = PRESETS[preset]
    out = Path(out_dir)
    info = out / "corpus.json"
    if info.is_file() and json.loads(info.read_text()).get("complete"):
        return json.loads(info.read_text())
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = {"train": [], "val": []}
    for split, count in zip(("train", "val"), spec.videos):
        for i in range(count):
            video = f"{split}_{i:04d}"
            tracks = _actor_tracks(rng, spec, int(rng.integers(spec.actors[0], spec.actors[1] + 1)))
            rows[split] += _keyframe_rows(video, tracks, spec)
            encode(_frames(tracks, spec, rng), out / "videos" / f"{video}.webm", spec.width, spec.height, spec.fps,
                   "vp9", gop=spec.fps)
    for split, split_rows in rows.items():
        _write_csv(out / "annotations" / f"{split}.csv", split_rows)
        _write_csv(out / "annotations" / f"proposals_{split}.csv", _proposals(split_rows, rng))
    excluded = sorted({(row[0], row[1]) for row in rows["val"]})[::7]  # a few validation keyframes
    _write_csv(out / "annotations" / "excluded.csv", excluded)
    (out / "annotations" / "labelmap.pbtxt").write_text("".join(
        f'item {{\n  name: "{name}"\n  id: {action}\n}}\n' for action, name in ACTIONS.items()))
    counts = {ACTIONS[a]: sum(1 for row in rows["train"] if row[6] == a) for a in ACTIONS}
    summary = {"preset": preset, "seed": seed, "complete": True, "fps": spec.fps, "seconds": spec.seconds,
               "videos": dict(zip(("train", "val"), spec.videos)), "train_counts": counts}
    info.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_csv(path: Path, rows: list[tuple]) -> None:
    path.write_text("".join(",".join(_format(v, i) for i, v in enumerate(row)) + "\n" for row in rows))


def _format(value, column: int) -> str:
    """AVA's formats: the timestamp as four digits, coordinates and scores with four decimals."""
    if column == 1:
        return f"{int(value):04d}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
