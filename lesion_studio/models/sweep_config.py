"""The `[sweep]` table of an experiment (issue 15, P4 §4.2): baseline vs. B-SG vs. MC-SG with
N generated cases for several N, each with and without spatial augmentation.

```toml
[sweep]
generated_counts = [20, 50, 100, 200, 400, 500]   # P4 §4.2 (the default)
spatial_augmentation = [false, true]             # P4 §4.2: every method without and with
[sweep.generators.bsg]
kind = "b-sg"                                    # one stylegan2-joint generator: image + mask
checkpoint = "gens/bsg.toml"                     # a train TOML (trained per fold) or a checkpoint
[sweep.generators.mcsg]
kind = "mc-sg"                                   # M-SG masks -> C-SG images (P4 §3.3)
mask = "gens/msg.toml"                           # stylegan2-mask: TOML or checkpoint
image = "gens/csg.toml"                          # stylegan2-cond: TOML or checkpoint
```

It expands to P4's methods: `baseline` (no generated cases) and `<generator>_n<N>` for every
generator and count, each once more with `_aug` (the experiment's `classic_preset`). Settings
the file leaves out follow P4 in a sweep (`SWEEP_DEFAULTS`). Qt-free and torch-free: the
experiment config imports it; `models.sweeps` runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_studio.core.config_schema import Problems, Setting, check_table

#: P4 §4.2: "The numbers of generated samples were 20, 50, 100, 200, 400, and 500 patients."
P4_GENERATED_COUNTS = (20, 50, 100, 200, 400, 500)
#: Generator kinds: B-SG (P4 §3.1, one StyleGAN2 drawing image and mask together) and MC-SG
#: (P4 §3.3, M-SG masks conditioning C-SG).
KINDS = ("b-sg", "mc-sg")
#: The baseline's condition name (P4's BL: real cases only); `_aug` is appended when augmented.
BASELINE = "baseline"
#: Experiment settings a sweep defaults to P4's, not P0's, when the file leaves them out: P4's
#: spatial augmentation (§4.4) for the `_aug` arms; every generated case in every epoch (P4 §3.3:
#: "the generated and the real samples were used to train the U-Net", not P0's 5 % a epoch);
#: no fixed P0 rotation (P4's only augmentation is the `_aug` arms').
SWEEP_DEFAULTS: dict[str, Any] = {"classic_preset": "P4", "synthetic_per_epoch": 1.0, "rotation_deg": 0.0}
#: Which path keys each kind needs, and the StyleGAN2 family each must hold.
FAMILIES = {"b-sg": {"checkpoint": "stylegan2-joint"},
            "mc-sg": {"mask": "stylegan2-mask", "image": "stylegan2-cond"}}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

SWEEP_SETTINGS: dict[str, Setting] = {
    "generators": Setting("table", {}, doc="name -> {kind = 'b-sg' | 'mc-sg', checkpoint | mask + image}"),
    "generated_counts": Setting("list[int]", list(P4_GENERATED_COUNTS), ge=1, min_len=1,
                                doc="generated cases added per training fold (P4 §4.2: 20 ... 500); "
                                    "0 is the baseline, always included"),
    "spatial_augmentation": Setting("list[bool]", [False, True], min_len=1,
                                    doc="each method without / with the classic preset (P4 §4.2)"),
    "psi": Setting("float", 1.0, ge=0.0, le=1.0, doc="StyleGAN2 truncation psi when sampling (1: none; P4 silent)"),
}
GENERATOR_SETTINGS: dict[str, Setting] = {
    "kind": Setting("str", choices=KINDS, doc="b-sg | mc-sg"),
    "checkpoint": Setting("path", None, nullable=True, doc="b-sg: stylegan2-joint train TOML or checkpoint"),
    "mask": Setting("path", None, nullable=True, doc="mc-sg: stylegan2-mask (M-SG) train TOML or checkpoint"),
    "image": Setting("path", None, nullable=True, doc="mc-sg: stylegan2-cond (C-SG) train TOML or checkpoint"),
}


@dataclass(frozen=True)
class SweepGenerator:
    """One generator of the sweep: `paths` maps its role (`checkpoint`, or `mask` and `image`)
    to a train TOML (one generator trained per fold) or a checkpoint (leak-checked)."""

    name: str
    kind: str
    paths: tuple[tuple[str, Path], ...]

    def path(self, role: str) -> Path:
        return dict(self.paths)[role]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **{role: str(p) for role, p in self.paths}}


@dataclass(frozen=True)
class SweepArm:
    """One expanded condition: its name, generator ('' for the baseline), count and augmentation."""

    name: str
    generator: str
    generated_count: int
    spatial_augmentation: bool


@dataclass(frozen=True)
class SweepConfig:
    """The parsed `[sweep]` table (see the module docstring)."""

    generators: tuple[SweepGenerator, ...]
    generated_counts: tuple[int, ...] = P4_GENERATED_COUNTS
    spatial_augmentation: tuple[bool, ...] = (False, True)
    psi: float = 1.0

    def generator(self, name: str) -> SweepGenerator:
        """The generator called `name`; KeyError naming the known ones otherwise."""
        for g in self.generators:
            if g.name == name:
                return g
        raise KeyError(f"no sweep generator {name!r} (known: {', '.join(g.name for g in self.generators)})")

    def arms(self) -> list[SweepArm]:
        """P4's methods in P4 Table 2's order: per augmentation setting the baseline, then every
        generator at every count (`bsg_n100`, `bsg_n100_aug`, ...)."""
        out = []
        for aug in self.spatial_augmentation:
            suffix = "_aug" if aug else ""
            out.append(SweepArm(BASELINE + suffix, "", 0, aug))
            for g in self.generators:
                out.extend(SweepArm(f"{g.name}_n{n}{suffix}", g.name, n, aug) for n in self.generated_counts)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"generators": [g.to_dict() for g in self.generators], "generated_counts": list(self.generated_counts),
                "spatial_augmentation": list(self.spatial_augmentation), "psi": self.psi}


def _unique(values: list, key: str, problems: Problems) -> None:
    if len(set(values)) != len(values):
        problems.add(f"sweep.{key}", f"values must not repeat, got {values}")


def sweep_from_table(values: dict[str, Any], doc: dict[str, Any], base_dir: Path,
                     problems: Problems) -> SweepConfig | None:
    """The sweep of a checked `[sweep]` table (`values`, from `SWEEP_SETTINGS`) of the experiment
    file `doc`; every problem goes into `problems` (did-you-mean for misspelt keys, the kind's
    missing or foreign paths, other condition tables beside it), None when there was one.
    Relative paths resolve against `base_dir`."""
    raw = doc.get("sweep")
    if not isinstance(raw, dict):
        return None  # already reported by check_tables
    before = len(problems)
    for other in ("conditions", "grid"):
        if other in doc:
            problems.add(other, f"[sweep] makes the conditions itself; leave {other} out")
    task = (doc.get("experiment") or {}).get("task") if isinstance(doc.get("experiment"), dict) else None
    if task == "hard_example_mining":
        problems.add("sweep", "a hard_example_mining experiment has no [sweep]")
    _unique(values["generated_counts"], "generated_counts", problems)
    _unique(values["spatial_augmentation"], "spatial_augmentation", problems)
    generators = []
    if not values["generators"] and "generators" in raw:
        problems.add("sweep.generators", "must name at least one generator ([sweep.generators.NAME])")
    elif "generators" not in raw:
        problems.add("sweep.generators", "is required: at least one [sweep.generators.NAME] table "
                                         "(kind = 'b-sg' or 'mc-sg')")
    for name, table in values["generators"].items():
        where = f"sweep.generators.{name}"
        if not _NAME.match(str(name)) or name == BASELINE:
            problems.add(where, f"a generator name is letters, digits and '-' (not {BASELINE!r}), got {name!r}")
            continue
        if not isinstance(table, dict):
            problems.add(where, f"must be a table ({{kind = ..., ...}}), got {table!r}")
            continue
        checked = check_table(table, GENERATOR_SETTINGS, where, problems)
        kind = checked.get("kind")
        if kind not in FAMILIES:
            continue  # reported by check_table
        needed = FAMILIES[kind]
        for role in GENERATOR_SETTINGS:
            if role == "kind":
                continue
            if role in needed and not checked.get(role):
                problems.add(f"{where}.{role}", f"is required for kind {kind!r} (a {needed[role]} train TOML "
                                                "or checkpoint)")
            elif role not in needed and checked.get(role) is not None:
                problems.add(f"{where}.{role}", f"is not used by kind {kind!r} (it takes "
                                                f"{' and '.join(needed)})")
        paths = []
        for role in needed:
            if checked.get(role):
                p = Path(checked[role]).expanduser()
                paths.append((role, p if p.is_absolute() else (base_dir / p).resolve()))
        generators.append(SweepGenerator(str(name), kind, tuple(paths)))
    if len(problems) > before:
        return None
    return SweepConfig(tuple(generators), tuple(values["generated_counts"]), tuple(values["spatial_augmentation"]),
                       float(values["psi"]))
