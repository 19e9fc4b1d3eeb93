"""Brush hot path: time per mouse-move event while painting on a 4096×4096 label map.

One event = one interpolated segment of 10-30 px at radius 10 px, including the history tile
bookkeeping and the event emission; the lesion table is refreshed at release (per stroke),
which is timed separately, as are the amortized cost per event (press + moves + release over
the number of moves) and undo of a stroke. Target: median ≤ 8 ms per move event on a 2-core
machine. Prints one JSON line per measurement.

    python benchmarks/brush.py [--strokes 150] [--events 30] [--size 4096]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lesion_studio.core.annotation import AnnotationDocument, BrushStroke  # noqa: E402

TARGET_MS = 8.0


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stats_ms(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1000.0
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def random_walk(rng: np.random.Generator, size: int, events: int) -> list[tuple[float, float]]:
    """A mouse path: `events + 1` points, successive ones 10-30 px apart."""
    margin = 40
    point = rng.uniform(margin, size - margin, 2)
    heading = rng.uniform(0, 2 * math.pi)
    path = [tuple(point)]
    for _ in range(events):
        heading += rng.normal(0, 0.5)
        step = rng.uniform(10, 30)
        point = np.clip(point + step * np.array([math.sin(heading), math.cos(heading)]), margin, size - margin)
        path.append((float(point[0]), float(point[1])))
    return path


def run(variant: str, doc: AnnotationDocument, rng: np.random.Generator, strokes: int, events: int) -> dict:
    move_s: list[float] = []
    release_s: list[float] = []
    per_event_amortized_s: list[float] = []
    size = doc.plane_shape[0]
    for _ in range(strokes):
        path = random_walk(rng, size, events)
        if variant == "eraser":
            stroke = BrushStroke(doc, erase=True, radius_px=10)
        else:
            label = doc.new_lesion("nodule")
            stroke = BrushStroke(doc, label=label, radius_px=10, preserve_other=variant == "brush_preserve")
        t_start = time.perf_counter()
        stroke.press(path[0])
        for point in path[1:]:
            t0 = time.perf_counter()
            stroke.move(point)
            move_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stroke.release()
        t1 = time.perf_counter()
        release_s.append(t1 - t0)
        per_event_amortized_s.append((t1 - t_start) / events)
    return {"move": move_s, "release": release_s, "amortized": per_event_amortized_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=150)
    parser.add_argument("--events", type=int, default=30, help="mouse-move events per stroke")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    doc = AnnotationDocument((args.size, args.size), spacing_mm=(0.143, 0.143))
    events_seen = []
    doc.events.connect(events_seen.append)  # a subscriber, as the canvas will be
    common = {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "image": f"{args.size}x{args.size}",
        "radius_px": 10,
        "segment_px": [10, 30],
        "events_per_stroke": args.events,
    }
    # warm-up: imports, allocator, first-touch of pages
    run("brush", doc, rng, 5, args.events)

    for variant in ("brush", "brush_preserve", "eraser"):
        samples = run(variant, doc, rng, args.strokes, args.events)
        move = stats_ms(samples["move"])
        record = {"benchmark": "brush", "variant": variant, **move, "target_ms": TARGET_MS,
                  "meets_target": move["median_ms"] <= TARGET_MS, **common}
        print(json.dumps(record), flush=True)
        print(json.dumps({"benchmark": "brush_release", "variant": variant, **stats_ms(samples["release"]),
                          "note": "commit: history patches + lesion table refresh, once per stroke", **common}),
              flush=True)
        print(json.dumps({"benchmark": "brush_amortized", "variant": variant, **stats_ms(samples["amortized"]),
                          "note": "(press + moves + release) / moves", **common}), flush=True)

    undo_s = []
    for _ in range(min(50, len(doc.history))):
        t0 = time.perf_counter()
        doc.undo()
        undo_s.append(time.perf_counter() - t0)
    print(json.dumps({"benchmark": "brush_undo", **stats_ms(undo_s), "note": "undo of one stroke", **common}),
          flush=True)
    print(json.dumps({"benchmark": "brush_history", "steps": len(doc.history),
                      "history_mb": round(doc.history.nbytes / 2**20, 2),
                      "label_map_mb": round(doc.labels.nbytes / 2**20, 2),
                      "lesions": len(doc.lesion_table()), **common}), flush=True)

    # whole-map commands the widgets will run on the GUI thread: fill, its undo, an autosave
    import tempfile

    from lesion_studio.core.annotation.autosave import AutosaveStore
    from lesion_studio.core.annotation.session import SessionState

    t0 = time.perf_counter()
    doc.fill((0, 0), doc.new_lesion("mass"))
    t1 = time.perf_counter()
    doc.undo()
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        store = AutosaveStore(folder)
        t3 = time.perf_counter()
        job = store.prepare(doc, SessionState(current_slice=0))
        t35 = time.perf_counter()
        store.write(job)
        t4 = time.perf_counter()
        recovery_mb = sum(f.stat().st_size for f in store.folder.iterdir()) / 2**20
    print(json.dumps({"benchmark": "whole_map", "fill_background_ms": round((t1 - t0) * 1000, 1),
                      "undo_fill_ms": round((t2 - t1) * 1000, 1), "autosave_prepare_ms": round((t35 - t3) * 1000, 1),
                      "autosave_write_ms": round((t4 - t35) * 1000, 1),
                      "recovery_mb": round(recovery_mb, 2), **common}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
