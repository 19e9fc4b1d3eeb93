"""Which trained models the user can pick: default models shipped in `resources/models` and
checkpoints in the user's models folder, described from their JSON sidecar only (no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lesion_studio.core.app_paths import data_dir

CHECKPOINT_FORMAT = "lesion-studio-checkpoint"  # models/checkpoint.py writes this

#: Which preview modes a generator family serves (texture/cascade/pix2pix inpaint and remove;
#: the texture generator trained with inverted masks is the outpainter, P1's role).
MODES_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "texture": ("inpaint", "remove"),
    "cascade": ("inpaint", "remove"),
    "pix2pix": ("inpaint",),
    "outpaint": ("outpaint",),
    "shape": (),
}


@dataclass(frozen=True)
class ModelInfo:
    """One checkpoint as the model selector lists it."""

    stem: Path  # NAME (NAME.json, NAME.safetensors beside it)
    family: str
    step: int
    dataset_fingerprint: str
    metrics: dict[str, float] = field(default_factory=dict)
    builtin: bool = False
    description: str = ""

    @property
    def name(self) -> str:
        return self.stem.name

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES_BY_FAMILY.get(self.family, ())

    def serves(self, mode: str) -> bool:
        return mode in self.modes

    def label(self) -> str:
        origin = "default" if self.builtin else "user"
        return f"{self.name} · {self.family} · step {self.step} ({origin})"

    def summary(self) -> str:
        """Family, training data fingerprint and validation metrics, for the selector's tooltip."""
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.metrics.items())) or "none recorded"
        fingerprint = self.dataset_fingerprint[:16] or "unknown"
        lines = [
            f"family: {self.family} (modes: {', '.join(self.modes) or 'masks only'})",
            f"training data: {fingerprint}",
            f"validation: {metrics}",
        ]
        if self.description:
            lines.append(self.description)
        return "\n".join(lines)


def builtin_models_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "resources" / "models"


def user_models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_model_info(json_path: Path, builtin: bool = False) -> ModelInfo | None:
    """A checkpoint's description, or None when the file is not a lesion-studio checkpoint."""
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        return None
    stem = json_path.with_suffix("")
    if not stem.with_name(stem.name + ".safetensors").is_file():
        return None
    metrics = {k: float(v) for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float))}
    return ModelInfo(
        stem=stem,
        family=str(meta.get("family", "")),
        step=int(meta.get("step", 0)),
        dataset_fingerprint=str(meta.get("dataset_fingerprint", "")),
        metrics=metrics,
        builtin=builtin,
        description=str(meta.get("description", "")),
    )


def scan_models(folders: list[Path] | None = None) -> list[ModelInfo]:
    """Default models first, then user checkpoints (newest name order), skipping unreadable files."""
    found: list[ModelInfo] = []
    sources = [(builtin_models_dir(), True)] + [(f, False) for f in (folders if folders is not None else [user_models_dir()])]
    seen: set[Path] = set()
    for folder, builtin in sources:
        if not folder.is_dir():
            continue
        for json_path in sorted(folder.rglob("*.json")):
            if json_path.name.endswith(".state.json"):
                continue
            info = read_model_info(json_path, builtin)
            if info is not None and info.stem.resolve() not in seen:
                seen.add(info.stem.resolve())
                found.append(info)
    return found
