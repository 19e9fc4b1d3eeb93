"""Which trained models the user can pick: default models shipped in `resources/models` and
checkpoints in the user's models folder, described from their JSON sidecar only (no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lesion_studio.core.app_paths import data_dir
from lesion_studio.core.model_card import card_image_kinds, card_is_default, card_lines

CHECKPOINT_FORMAT = "lesion-studio-checkpoint"  # models/checkpoint.py writes this

#: Which preview modes a family serves. Texture/cascade generators serve what they were
#: trained for (`modes_of_checkpoint`: lesion inpainting by default, removal when trained on
#: non-lesion holes); the texture generator trained with inverted masks is the outpainter
#: (P1's role); the classical families need no weights (SPEC §4).
MODES_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "texture": ("inpaint",),
    "cascade": ("inpaint",),
    "pix2pix": ("inpaint",),
    "outpaint": ("outpaint",),
    "shape": (),
    "stylegan2-mask": (),
    "stylegan2-joint": (),
    "stylegan2-cond": (),
    "auto-fill": ("remove",),
    "texture-fill": ("remove", "outpaint"),
    "telea": ("remove",),
    "navier-stokes": ("remove",),
    "real-nodule": ("inpaint",),
    "real-stone": ("inpaint",),
}
#: Families that draw lesion shapes (P3's DCGAN, P4's M-SG): the shape picker's "generator" source.
SHAPE_FAMILIES: tuple[str, ...] = ("shape", "stylegan2-mask")
#: Families that insert real lesions with their own outlines (the engine's `own_bank`): the
#: shape picker's shape never reaches them, only the diameter, pose and seed do.
OWN_SHAPE_FAMILIES: tuple[str, ...] = ("real-nodule",)
#: Families that draw whole image + mask pairs (P4's B-SG; C-SG, conditioned on M-SG masks):
#: training data for the downstream experiments, no preview mode.
PAIR_FAMILIES: tuple[str, ...] = ("stylegan2-joint", "stylegan2-cond")
#: Classical methods, always listed first: (family, description).
CLASSICAL_MODELS: tuple[tuple[str, str], ...] = (
    ("real-nodule", "Real LIDC-IDRI CT nodules (bundled library, never the benchmark's held-out "
                    "patients) scaled to the requested diameter and blended: HU-aware in CT, "
                    "projected along the beam in radiographs (NODE21 generation baseline). Each "
                    "nodule brings its own shape: the shape picker is not used, the cursor outline "
                    "is a circle of the requested diameter."),
    ("real-stone", "Real kidney stones (TEZ_ROI_AUG coronal CT; bundled library, never the benchmark's "
                   "held-out sessions): the stone nearest in size keeps its own intensity profile, "
                   "resampled into the chosen outline and added to the tissue there. Beats the learned "
                   "stone inpainter on held-out stones (docs/models.md)."),
    ("auto-fill", "The best classical fill per case (benchmarks/realism.py): the texture fill for "
                  "radiographs and CT holes over 24 px, Navier-Stokes for smaller CT holes."),
    ("texture-fill", "A smooth biharmonic base plus the fine texture of a nearby donor region, "
                     "blended seamlessly: no flat disc, no star streaks. Also outpaints: the crop around "
                     "a kept lesion is refilled smoothly from the crop's outer band (no donor texture fits "
                     "there)."),
    ("telea", "OpenCV TELEA fill of the removal hole, on the image's own values."),
    ("navier-stokes", "OpenCV Navier-Stokes fill of the removal hole, on the image's own values."),
)


def modes_of_checkpoint(family: str, meta: dict) -> tuple[str, ...]:
    """The modes a checkpoint serves, from its JSON: a texture/cascade model trained with
    `objective = "remove"` (non-lesion holes, P0 §III-A) removes, otherwise it inpaints."""
    if family in ("texture", "cascade"):
        config = meta.get("config") if isinstance(meta, dict) else None
        model = config.get("model") if isinstance(config, dict) else None
        objective = model.get("objective", "inpaint") if isinstance(model, dict) else "inpaint"
        return ("remove",) if objective == "remove" else ("inpaint",)
    return MODES_BY_FAMILY.get(family, ())


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
    modes_served: tuple[str, ...] | None = None
    classical: bool = False
    problem: str = ""  # non-empty: the sidecar is unusable (listed greyed out with this reason)
    selection: dict = field(default_factory=dict)  # how this checkpoint was chosen (models/selection.py)
    card: dict = field(default_factory=dict)  # a shipped model's card (data, held-out series, benchmark)

    @property
    def name(self) -> str:
        return self.stem.name

    @property
    def modes(self) -> tuple[str, ...]:
        if self.problem:
            return ()
        return self.modes_served if self.modes_served is not None else MODES_BY_FAMILY.get(self.family, ())

    def serves(self, mode: str) -> bool:
        return mode in self.modes

    @property
    def image_kinds(self) -> tuple[str, ...]:
        """The image kinds ("ct", "radiograph") its card allows; () = any (no card, or it does not say)."""
        return card_image_kinds(self.card)

    def runs_on(self, image_kind: str | None) -> bool:
        """Whether the engine will run it on an image of `image_kind` (None: not known yet)."""
        return image_kind is None or not self.image_kinds or image_kind in self.image_kinds

    @property
    def is_default(self) -> bool:
        """A bundled model whose card makes it the default for its task (it beat the classical
        family on held-out data); classical methods and user checkpoints are not."""
        return self.builtin and bool(self.card) and card_is_default(self.card)

    def label(self) -> str:
        if self.problem:
            return f"{self.name} · unusable: {self.problem}"
        if self.classical:
            return f"{self.name} · classical, no weights ({'/'.join(self.modes)})"
        if not self.builtin:
            origin = "user"
        elif not self.card:
            origin = "default demo"
        else:
            origin = "default, real data" if self.is_default else "bundled, real data, not the default"
        return f"{self.name} · {self.family} · step {self.step} ({origin})"

    def summary(self) -> str:
        """Family, training data fingerprint and validation metrics, for the selector's tooltip."""
        if self.problem:
            return f"{self.stem}.json cannot be used: {self.problem}"
        if self.classical:
            return f"classical method (modes: {', '.join(self.modes)}); no training, no weights\n{self.description}"
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.metrics.items())) or "none recorded"
        fingerprint = self.dataset_fingerprint[:16] or "unknown"
        lines = [
            f"family: {self.family} (modes: {', '.join(self.modes) or 'masks only'})",
            f"training data: {fingerprint}",
            f"validation: {metrics}",
        ]
        chosen = self.selection_line()
        if chosen:
            lines.append(chosen)
        if self.description:
            lines.append(self.description)
        lines.extend(card_lines(self.card))
        return "\n".join(lines)

    def selection_line(self) -> str:
        """Which criterion picked this checkpoint, its value and the runner-up ("" when none
        was recorded, e.g. a periodic or final checkpoint, or one from before issue 14)."""
        sel = self.selection
        criterion = sel.get("criterion")
        if not isinstance(criterion, str) or not criterion:
            return ""

        def number(value: object) -> str:
            return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"

        text = (f"selected by {criterion} ({sel.get('better', '?')} is better): {number(sel.get('best_value'))} "
                f"at step {sel.get('best_step', '?')}")
        runner = sel.get("runner_up")
        if isinstance(runner, dict):
            text += f"; runner-up step {runner.get('step', '?')}: {number(runner.get('value'))}"
        note = sel.get("note")
        if isinstance(note, str) and note:
            text += f" ({note})"
        return text


def builtin_models_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "resources" / "models"


def user_models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sidecar_problem(meta: dict) -> str:
    """Why a lesion-studio sidecar cannot describe a usable model ('' when it can)."""
    family = meta.get("family")
    if not isinstance(family, str) or not family:
        return f"family must be a name, got {family!r}"[:200]
    step = meta.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step must be a non-negative integer, got {step!r}"[:200]
    for key in ("config", "metrics", "normalization"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"{key} must be a table, got {type(meta[key]).__name__}"
    for key in ("dataset_fingerprint", "description"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"{key} must be text, got {type(meta[key]).__name__}"
    return ""


def read_model_info(json_path: Path, builtin: bool = False) -> ModelInfo | None:
    """A checkpoint's description, or None when the file is not a lesion-studio checkpoint.

    A lesion-studio sidecar with invalid fields is returned with `problem` set (never raises):
    the selector lists it greyed out with the reason instead of failing the whole list.
    """
    try:
        if json_path.stat().st_size > 16 * 1024 * 1024:
            return None
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        return None
    stem = json_path.with_suffix("")
    if not stem.with_name(stem.name + ".safetensors").is_file():
        return None
    problem = _sidecar_problem(meta)
    if problem:
        family = meta.get("family") if isinstance(meta.get("family"), str) else "?"
        return ModelInfo(stem=stem, family=family, step=0, dataset_fingerprint="", builtin=builtin,
                         modes_served=(), problem=problem)
    family = meta["family"]
    metrics = {str(k): float(v) for k, v in (meta.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ModelInfo(
        stem=stem,
        family=family,
        modes_served=modes_of_checkpoint(family, meta),
        step=int(meta.get("step", 0)),
        dataset_fingerprint=str(meta.get("dataset_fingerprint", "") or ""),
        metrics=metrics,
        builtin=builtin,
        description=str(meta.get("description", "") or ""),
        selection=dict(meta["selection"]) if isinstance(meta.get("selection"), dict) else {},
        card=dict(meta["card"]) if isinstance(meta.get("card"), dict) else {},
    )


def classical_models() -> list[ModelInfo]:
    """The classical methods (SPEC §4) as selector entries; their `stem` is the family name."""
    return [ModelInfo(stem=Path(family), family=family, step=0, dataset_fingerprint="", builtin=True,
                      description=text, classical=True) for family, text in CLASSICAL_MODELS]


def scan_models(folders: list[Path] | None = None) -> list[ModelInfo]:
    """Classical methods first, then default models, then user checkpoints (name order),
    skipping files that are not lesion-studio checkpoints; a checkpoint with an invalid
    sidecar is listed with its `problem` (never raises for one bad file)."""
    found: list[ModelInfo] = classical_models()
    sources = [(builtin_models_dir(), True)] + [(f, False) for f in (folders if folders is not None else [user_models_dir()])]
    seen: set[Path] = set()
    for folder, builtin in sources:
        if not folder.is_dir():
            continue
        for json_path in sorted(folder.rglob("*.json")):
            if json_path.name.endswith(".state.json"):
                continue
            try:
                info = read_model_info(json_path, builtin)
            except Exception as exc:  # one bad file must never break the whole list
                info = ModelInfo(stem=json_path.with_suffix(""), family="?", step=0, dataset_fingerprint="",
                                 builtin=builtin, modes_served=(), problem=f"unreadable ({type(exc).__name__})")
            if info is not None and info.stem.resolve() not in seen:
                seen.add(info.stem.resolve())
                found.append(info)
    return found
