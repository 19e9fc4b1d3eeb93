"""A shipped model's card (the `card` table of its JSON sidecar) as plain text lines.

The card says what a default model was trained on and how well it does against the classical
method for its task (scripts/train_default_models.py writes it). The model selector shows
these lines in its tooltip; a user's own sidecar may carry a card too, so nothing here trusts
the card's types: anything malformed is skipped, never raised.
"""

from __future__ import annotations

from typing import Any

from lesion_studio.core.synthesis_backend import IMAGE_KINDS

#: Benchmark tables a card may carry, and the metrics each row shows (in this order).
_BENCHMARK_KEYS = ("realism_benchmark", "shape_benchmark")
_ROW_METRICS = ("psnr", "ssim", "mae", "w1_sd_mean", "auc")


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return ""


def _table(card: dict, key: str) -> dict:
    value = card.get(key)
    return value if isinstance(value, dict) else {}


def _metric(value: Any) -> str:
    """`12.3` or `mean 12.3` for a {mean, sd} summary; '' when neither."""
    if isinstance(value, dict):
        return _text(value.get("mean"))
    return _text(value)


def _benchmark_rows(bench: dict) -> list[str]:
    """One line per compared method: `name: metric value, ...`."""
    rows = bench.get("results") if isinstance(bench.get("results"), dict) else bench
    lines = []
    for name, row in rows.items():
        if not isinstance(row, dict):
            continue
        parts = [f"{m} {_metric(row[m])}" for m in _ROW_METRICS if m in row and _metric(row[m])]
        if parts:
            lines.append(f"  {name}: {', '.join(parts)}")
    return lines


def card_image_kinds(card: Any) -> tuple[str, ...]:
    """The image kinds a card allows a model to run on (lower-cased, unknown names dropped);
    () = any: no card, or the card does not say."""
    kinds = card.get("image_kinds") if isinstance(card, dict) else None
    if not isinstance(kinds, list):
        return ()
    return tuple(dict.fromkeys(k.lower() for k in kinds if isinstance(k, str) and k.lower() in IMAGE_KINDS))


def card_is_default(card: Any) -> bool:
    """Whether a shipped model is the default for its task. A card's `status` is "default"
    (the model beat the classical family on held-out data) or "alternative" (bundled because
    it is the best learned model for its mode, but a classical family scored closer to real);
    a card without one is a default (cards from before the field)."""
    return not (isinstance(card, dict) and card.get("status") == "alternative")


def card_lines(card: Any) -> list[str]:
    """The card as short lines: task, data and licence, series used / held out, training,
    selection, benchmark rows against the classical methods, known failure modes."""
    if not isinstance(card, dict) or not card:
        return []
    lines = ["— model card —"]
    if _text(card.get("task")):
        lines.append(f"task: {_text(card['task'])}")
    kinds = card_image_kinds(card)
    if kinds:
        lines.append(f"images: {', '.join(kinds)} only (other images are refused)")
    if _text(card.get("status")):
        reason = _text(card.get("status_reason"))
        lines.append(f"status: {_text(card['status'])}" + (f" ({reason})" if reason else ""))
    data = _table(card, "data")
    for key, label in (("source", "data"), ("licence", "licence"), ("attribution", "attribution")):
        if _text(data.get(key)):
            lines.append(f"{label}: {_text(data[key])}")
    series = [f"{label} {_text(data[key])}" for key, label in
              (("series_used", "used"), ("series_train", "train"), ("series_validation", "validation"),
               ("series_held_out", "held out")) if _text(data.get(key))]
    if series:
        lines.append("series: " + ", ".join(series))
    training = _table(card, "training")
    run = [f"{label} {_text(training[key])}" for key, label in
           (("steps", "steps"), ("hardware", "on"), ("wall_time_s", "wall s")) if _text(training.get(key))]
    if run:
        lines.append("training: " + ", ".join(run))
    if _text(training.get("selection")):
        lines.append(f"selection: {_text(training['selection'])}")
    for key in _BENCHMARK_KEYS:
        bench = _table(card, key)
        rows = _benchmark_rows(bench)
        if rows:
            lines.append(f"{key.replace('_', ' ')} (held-out series):")
            lines.extend(rows)
    failures = card.get("known_failure_modes")
    if isinstance(failures, list):
        items = [_text(f) for f in failures if _text(f)]
        if items:
            lines.append("known failure modes:")
            lines.extend(f"  - {item}" for item in items)
    return lines
