"""The batch exporter: a validated `BatchConfig` → synthetic images in every requested format.

For each work item (core/export/work.py) it plans a P0 §IV-A augmentation (inpaint 1-3
lesions at location-map targets in a lesion-free image; replace or remove each lesion of a
lesion image) or an outpainting of every lesion (P1 §3.2), runs the same `Synthesizer` the
GUI preview uses step by step, applies an optional classic preset (P2/P4), and hands one
`ExportItem` to each writer, then writes the item's manifest part (its "done" marker).
Finished items are skipped on a re-run; a failing item is logged and counted, never fatal.
Under torchrun each rank takes a disjoint shard; rank 0 merges the manifest and the
dataset-wide files (COCO annotations, nnU-Net dataset.json) once every rank is done.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from lesion_studio import __version__
from lesion_studio.core.classic_augment import augment, preset
from lesion_studio.core.dataset import ITK_SUFFIXES, CaseRecord, Dataset, load_dataset
from lesion_studio.core.errors import ConfigError, LesionStudioError
from lesion_studio.core.export import coco, dicom_derived, manifest, nifti, nnunet, png
from lesion_studio.core.export.atomic import TempJournal, remove_stale_temps, write_json
from lesion_studio.core.export.config import CLASSICAL_FAMILIES, BatchConfig, read_diameter_file
from lesion_studio.core.export.item import LESION_LABEL, ExportItem
from lesion_studio.core.export.work import WorkItem, plan_items, shard, summary
from lesion_studio.core.geometry.crops import component_masks
from lesion_studio.core.mask_bank import MaskBank
from lesion_studio.core.model_catalog import SHAPE_FAMILIES
from lesion_studio.core.geometry.crops import P0_MODEL_INPUT_PX
from lesion_studio.core.synthesis_plan import MaskSource, SynthesisRequest

FAILURES = "failures.json"
#: Size of the per-item sample a `uniform` diameter range is drawn into (plan_augmentation
#: draws uniformly from a list, so a large sample of U[low, high] is U[low, high]).
UNIFORM_SAMPLE = 64


@dataclass
class BatchResult:
    """What one run (all ranks) did; `failures` is `[{"item", "error"}]` across ranks."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 3 if self.failures else 0


class _Models:
    """Loads each synthesis engine (inpaint / remove / outpaint) once, when first needed."""

    def __init__(self, config: BatchConfig, device: str) -> None:
        self.config, self.device, self._cache = config, device, {}

    def method(self, role: str) -> Path | str | None:
        return {"inpaint": self.config.inpaint_checkpoint, "remove": self.config.remove_checkpoint,
                "outpaint": self.config.outpaint_checkpoint}[role]

    def get(self, role: str):
        if role not in self._cache:
            from lesion_studio.models.inference import load_synthesizer

            method = self.method(role)
            if method is None:
                raise ConfigError(f"models.{role} is needed by this export and is not set")
            family = _checkpoint_family(method)
            if family in SHAPE_FAMILIES:
                raise ConfigError(
                    f"models.{role} = {str(method)!r} is a shape checkpoint: it draws lesion masks, not images. "
                    f"Give it as models.shape (with synthesis.mask_source = \"generator\") and an image model "
                    f"(texture, cascade, pix2pix{', outpaint' if role == 'outpaint' else ''} or a classical method) "
                    f"as models.{role}")
            shape = self.config.shape_checkpoint if role == "inpaint" else None
            synth = load_synthesizer(method, self.device, shape_checkpoint=shape)
            if role not in synth.modes:
                raise ConfigError(f"models.{role} = {str(method)!r} is a {synth.family} method, which serves "
                                  f"{', '.join(synth.modes) or 'no synthesis mode'}, not {role}")
            self._cache[role] = (synth, checkpoint_identity(method, synth.identity))
        return self._cache[role]


def _checkpoint_family(method: Path | str) -> str | None:
    """The family a checkpoint's JSON sidecar names (None: classical, unreadable or absent)."""
    import json

    from lesion_studio.models.checkpoint import stem_of

    if isinstance(method, str) and method in CLASSICAL_FAMILIES:
        return None
    stem = stem_of(method)
    try:
        meta = json.loads(stem.with_name(stem.name + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = meta.get("family") if isinstance(meta, dict) else None
    return family if isinstance(family, str) else None


def checkpoint_identity(stem: Path | str, identity: dict) -> dict[str, Any]:
    """The model's identity plus the SHA-256 of its weights and JSON files (a classical
    method has none: its identity already names the method and its data's hash)."""
    from lesion_studio.models.checkpoint import stem_of

    if isinstance(stem, str) and stem in CLASSICAL_FAMILIES:
        return {**identity, "classical": True}
    stem = stem_of(stem)
    out = dict(identity)
    out["weights_sha256"] = manifest.sha256_file(stem.with_name(stem.name + ".safetensors"))
    out["json_sha256"] = manifest.sha256_file(stem.with_name(stem.name + ".json"))
    return out


def source_geometry(case: CaseRecord, spacing_mm: tuple[float, float] | None, shape: tuple[int, int]):
    """SimpleITK `(spacing_xyz, origin_xyz, direction)`: the file's own for NIfTI/MHA/NRRD,
    else the dataset spacing with origin 0 and identity direction."""
    name = case.image_path.name.lower()
    if any(name.endswith(s) for s in ITK_SUFFIXES):
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(case.image_path))
        reader.ReadImageInformation()
        if reader.GetDimension() == 2:
            return tuple(reader.GetSpacing()), tuple(reader.GetOrigin()), tuple(reader.GetDirection())
        spacing, origin, d = reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
        return (spacing[0], spacing[1]), (origin[0], origin[1]), (d[0], d[1], d[3], d[4])
    spacing = (1.0, 1.0) if spacing_mm is None else (float(spacing_mm[1]), float(spacing_mm[0]))
    return spacing, (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)


class BatchExporter:
    """Runs one rank's shard of a batch config (see the module docstring)."""

    def __init__(self, config: BatchConfig, *, device: str = "cpu", rank: int = 0, world_size: int = 1,
                 log: TextIO | None = None) -> None:
        self.config = config
        self.out = config.output_dir
        self.device = device
        self.rank, self.world_size = rank, world_size
        self.log = log or sys.stderr
        self.dataset: Dataset = load_dataset(config.dataset)
        self.items = plan_items(config, self.dataset)
        self.models = _Models(config, device)
        self._bank: MaskBank | None = None
        self._dataset_bank: MaskBank | None = None
        self._case_cache: tuple[str, dict] | None = None
        self._diameter_file: tuple[float, ...] | None = None
        self._settings: str | None = None
        self.modality = self.dataset.modality or "OT"

    # -- shared inputs ------------------------------------------------------------------------
    def dataset_bank(self) -> MaskBank:
        """Every lesion of the dataset's train split (all cases when it has none)."""
        if self._dataset_bank is None:
            cases = self.dataset.split("train") or self.dataset.cases
            cases = [c for c in cases if c.has_lesion]
            self._dataset_bank = MaskBank.from_masks(
                [self.dataset.read_mask(c) for c in cases],
                spacings_mm=[self.dataset.spacing_for(c) for c in cases],
                sources=[c.case_id for c in cases],
            )
        return self._dataset_bank

    def bank(self) -> MaskBank:
        if self._bank is None and self.config.mask_source == "real":  # real LIDC nodule outlines
            from lesion_studio.core.classical.nodule_library import bundled_library

            self._bank = bundled_library().shape_bank("axial" if self.modality.upper() == "CT" else "projected")
        if self._bank is None:
            self._bank = MaskBank.load(self.config.mask_bank) if self.config.mask_bank else self.dataset_bank()
            if len(self._bank) == 0:
                raise ConfigError("the mask bank is empty: the dataset has no lesion masks to draw from")
        return self._bank

    def diameters_mm(self, item: WorkItem) -> list[float] | None:
        spec = self.config.diameters
        if spec.kind == "bank":
            return None
        if spec.kind == "fixed":
            return list(spec.values_mm)
        if spec.kind == "uniform":
            low, high = spec.range_mm
            rng = np.random.default_rng(np.random.SeedSequence([item.seed, 2]))
            return [float(v) for v in rng.uniform(low, high, UNIFORM_SAMPLE)]
        if spec.kind == "empirical":
            values = self.dataset_bank().diameters_mm
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ConfigError("empirical diameters need lesion masks with a known pixel spacing")
            return [float(v) for v in values]
        if self._diameter_file is None:
            self._diameter_file = read_diameter_file(spec.file)
        return list(self._diameter_file)

    def case_inputs(self, case: CaseRecord) -> dict:
        if self._case_cache is None or self._case_cache[0] != case.case_id:
            image = self.dataset.read_image(case)
            spacing = self.dataset.spacing_for(case)
            self._case_cache = (case.case_id, {
                "image": image, "mask": self.dataset.read_mask(case),
                "location_map": self.dataset.read_location_map(case), "spacing": spacing,
                "sha256": manifest.sha256_file(case.image_path),
                "geometry": source_geometry(case, spacing, image.shape),
            })
        return self._case_cache[1]

    # -- one item -------------------------------------------------------------------------------
    def synthesize(self, item: WorkItem, inputs: dict) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
        """The item's image and mask after every step, the steps' records and the models used."""
        image, mask, spacing = inputs["image"], inputs["mask"], inputs["spacing"]
        records: list[dict] = []
        if item.kind == "real":
            return image, mask, records, {}
        bank = self.bank()
        if item.kind == "outpaint":
            components = component_masks(mask)
            seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(item.seed).spawn(len(components))]
            requests = []
            for component, seed in zip(components, seeds):
                rows, cols = np.nonzero(component)  # aim at one of the lesion's own pixels
                anchor = (float(rows[len(rows) // 2]) + 0.5, float(cols[len(cols) // 2]) + 0.5)
                requests.append(SynthesisRequest(mode="outpaint", centre_rc=anchor,
                                                 mask_source=MaskSource("existing"), seed=seed))
        else:
            from lesion_studio.core.augmentation_plan import plan_augmentation

            inpaint_engine = self.models.get("inpaint")[0]
            plan = plan_augmentation(
                image.shape, lesion_mask=mask, location_map=inputs["location_map"], bank=bank, seed=item.seed,
                spacing_mm=spacing, diameters_mm=self.diameters_mm(item),
                targets_per_image=self.config.targets_per_image,
                remove_probability=self.config.remove_probability,
                model_input_px=inpaint_engine.patch_px or P0_MODEL_INPUT_PX,
            )
            requests = [step.request for step in plan.steps]
            if self.config.mask_source == "generator":
                requests = [dataclasses.replace(r, mask_source=MaskSource("generator")) if r.mode == "inpaint" else r
                            for r in requests]
        current_image, current_mask = image, mask
        used: dict[str, dict] = {}
        for request in requests:
            synth, identity = self.models.get(request.mode)
            used[request.mode] = identity
            result = synth(current_image, request, lesion_mask=current_mask, bank=bank, spacing_mm=spacing,
                           modality=self.modality)
            current_image, current_mask = result.image, result.mask
            resolved = result.plan
            records.append({
                "mode": request.mode, "family": synth.family, "centre_rc": list(request.centre_rc),
                "diameter_mm": request.diameter_mm,
                "diameter_px": request.diameter_px, "seed": int(request.seed),
                "mask_source": resolved.request.mask_source.kind, "bank_index": resolved.bank_index,
                "resolved_diameter": resolved.diameter, "resolved_diameter_unit": resolved.diameter_unit,
                "rotation_deg": resolved.rotation_deg, "patch": result.provenance["patch"],
                **({"intensity": result.provenance["intensity"]} if "intensity" in result.provenance else {}),
                **({"shape_note": result.provenance["shape"]} if "shape" in result.provenance else {}),
            })
        return current_image, current_mask, records, used

    def export_item(self, item: WorkItem) -> list[Path]:
        # A stale record of an earlier config must not survive a failure of this attempt.
        manifest.part_path(self.out, item.item_id).unlink(missing_ok=True)
        (self.out / coco.FOLDER / "parts" / f"{item.item_id}.json").unlink(missing_ok=True)
        inputs = self.case_inputs(item.case)
        image, mask, records, models = self.synthesize(item, inputs)
        classic = None
        if self.config.classic_preset != "none" and item.kind != "real":
            rng = np.random.default_rng(np.random.SeedSequence([item.seed, 1]))
            image, mask, params = augment(image, mask, preset(self.config.classic_preset), rng)
            classic = {"preset": self.config.classic_preset, **params.to_dict()}
        labels = (np.asarray(mask) > 0).astype(np.uint8) * LESION_LABEL
        model_text = "; ".join(_describe_method(role, m) for role, m in models.items()) if models else \
            "no model (real image copied)"
        export = ExportItem(
            item_id=item.item_id, image=np.asarray(image, dtype=np.float32), mask=labels,
            geometry=inputs["geometry"], spacing_mm=inputs["spacing"], modality=self.modality,
            png_offset=1024 if self.modality.upper() == "CT" else 0, model_description=model_text,
            provenance={"instance_number": item.variant + 2},
        )
        written: list[Path] = []
        c = self.config
        for fmt in c.formats:
            if fmt == "png":
                written += png.write(export, self.out)
            elif fmt == "nifti":
                written += nifti.write(export, self.out)
            elif fmt == "nnunet":
                written += nnunet.write(export, self.out, dataset_id=c.nnunet_id, name=c.nnunet_name,
                                        file_ending=c.nnunet_file_ending)
            elif fmt == "coco":
                written += coco.write(export, self.out)
            elif fmt == "dicom":
                written += dicom_derived.write(export, self.out, uid_root=dicom_derived.uid_root(self.out),
                                               template=c.dicom_template)
        record = {
            "item": item.item_id, "kind": item.kind, "variant": item.variant, "seed": item.seed, "rank": self.rank,
            "source_case": item.case.case_id,
            "source_image": item.case.image_path.relative_to(self.dataset.root).as_posix(),
            "source_sha256": inputs["sha256"], "requests": records, "models": models, "classic": classic,
            "png_offset": export.png_offset, "package_version": __version__,
            "settings_sha256": self._settings or self.settings_sha256(), "formats": list(c.formats),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "outputs": sorted(p.relative_to(self.out).as_posix() for p in written),
        }
        manifest.write_part(self.out, record)  # last: marks the item done
        return written

    # -- the run ----------------------------------------------------------------------------------
    def settings_sha256(self) -> str:
        """Fingerprint of the config fields that change an item's pixels, and the checkpoints' bytes."""
        c = self.config
        settings = {k: v for k, v in c.to_dict().items()
                    if k not in ("path", "output_dir", "formats", "nnunet_id", "nnunet_name", "nnunet_file_ending",
                                 "include_real", "per_image", "splits", "device")}
        for key in ("inpaint_checkpoint", "remove_checkpoint", "outpaint_checkpoint", "shape_checkpoint"):
            stem = getattr(c, key)
            if isinstance(stem, str):  # a classical method: its name (and the bundled data's hash)
                data = _classical_data_sha256(stem)
                settings[key] = stem if data is None else f"{stem}:{data}"
                continue
            weights = None if stem is None else stem.with_name(stem.name + ".safetensors")
            settings[key] = manifest.sha256_file(weights) if weights is not None and weights.is_file() else None
        return manifest.settings_sha256(settings)

    def is_done(self, item: WorkItem) -> bool:
        if self._settings is None:
            self._settings = self.settings_sha256()
        return manifest.is_done(self.out, item.item_id, settings_sha256=self._settings, formats=self.config.formats)

    def my_items(self) -> list[WorkItem]:
        return shard(self.items, self.rank, self.world_size)

    def run(self, progress: Callable[[int], None] | None = None) -> BatchResult:
        """Export this rank's shard; returns this rank's counts and failures."""
        self.out.mkdir(parents=True, exist_ok=True)
        result = BatchResult(total=len(self.my_items()))
        pending = [i for i in self.my_items() if not self.is_done(i)]
        roles = {"outpaint" if i.kind == "outpaint" else "inpaint" for i in pending if i.kind != "real"}
        if "inpaint" in roles and self.config.replace_remove:
            roles.add("remove")
        for role in sorted(roles):
            self.models.get(role)  # an unusable checkpoint stops the run here (exit 2), not per item
        if "dicom" in self.config.formats and self.config.dicom_template is not None:
            dicom_derived.load_template(self.config.dicom_template)  # a refused template stops the run too
        for item in self.my_items():
            if self.is_done(item):
                result.skipped += 1
            else:
                try:
                    self.export_item(item)
                    result.done += 1
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # one bad item must not stop thousands of others
                    reason = exc.reason if isinstance(exc, LesionStudioError) else f"{type(exc).__name__}: {exc}"
                    result.failures.append({"item": item.item_id, "error": reason})
                    print(f"lesion-studio batch: item {item.item_id} failed: {reason}", file=self.log)
                    if not isinstance(exc, LesionStudioError):
                        traceback.print_exc(file=self.log)
            if progress is not None:
                progress(1)
        return result

    def finalize(self, failures: list[dict[str, str]]) -> None:
        """Merge the manifest and the dataset-wide files (rank 0, after every rank finished)."""
        c = self.config
        manifest.finalize(self.out)
        description = f"lesion-studio {__version__} synthetic export of {c.dataset.name} (seed {c.seed})"
        if "coco" in c.formats:
            coco.finalize(self.out, description=description)
        if "nnunet" in c.formats:
            nnunet.finalize(self.out, dataset_id=c.nnunet_id, name=c.nnunet_name, file_ending=c.nnunet_file_ending,
                            modality=self.modality, description=description)
        failures_path = self.out / FAILURES
        if failures:
            write_json(failures_path, sorted(failures, key=lambda f: f["item"]))
        else:
            failures_path.unlink(missing_ok=True)


def _describe_method(role: str, identity: dict) -> str:
    """One line per method for the derived files' description (DICOM ImageComments etc.)."""
    if identity.get("classical"):
        return f"{role}: classical {identity.get('family')} (no weights)"
    return (f"{role} model {identity.get('family')} step {identity.get('step')} "
            f"(weights sha256 {str(identity.get('weights_sha256', ''))[:16]})")


def _classical_data_sha256(family: str) -> str | None:
    """The hash of the bundled data a classical family pastes from (its lesion library), None
    for the fills: a rebuilt library changes every insertion, so resumed items must not mix."""
    from lesion_studio.core.classical.nodule_library import DEFAULT_LIBRARY_PATH as nodules
    from lesion_studio.core.classical.stone_library import DEFAULT_LIBRARY_PATH as stones

    path = {"real-nodule": nodules, "real-stone": stones}.get(family)
    if path is None:
        return None
    return manifest.sha256_file(path) if path.is_file() else "missing"


def _gather(obj: Any, world_size: int) -> list[Any]:
    if world_size <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


class BatchCancelled(Exception):
    """A batch export stopped by its cancel callback; finished outputs stay and a re-run resumes."""


def run_batch(config: BatchConfig, *, device: str = "cpu", dry_run: bool = False, show_progress: bool = True,
              stdout: TextIO | None = None, log: TextIO | None = None,
              progress: Callable[[int, int], None] | None = None,
              cancel: Callable[[], bool] | None = None, force: bool = False) -> BatchResult:
    """Run (or, with `dry_run`, only plan) a batch export, under torchrun when WORLD_SIZE > 1.

    `progress(done, total)` follows this rank's items; `cancel()` returning True stops after
    the current item with `BatchCancelled` (the GUI job manager uses both). The output folder
    is checked, locked and marked (`core.output_folder`); `force` accepts a non-empty folder
    lesion-studio did not make. `FolderInUseError` when another run holds the folder.
    """
    from lesion_studio.core.output_folder import check_output_folder
    from lesion_studio.models.distributed import init_from_env

    check_output_folder(config.output_dir, kind="batch", force=force, key="output.dir")
    stdout = stdout or sys.stdout
    info = init_from_env(device)
    exporter = BatchExporter(config, device=device, rank=info.rank, world_size=info.world_size, log=log)
    plan = summary(exporter.items, config.formats)
    done_before = sum(exporter.is_done(i) for i in exporter.items)
    plan.update({"already_done": done_before, "to_do": plan["items"] - done_before, "ranks": info.world_size,
                 "output_dir": str(config.output_dir), "formats": list(config.formats)})
    if dry_run:
        if info.is_main:
            print(json.dumps(plan, indent=2), file=stdout)
        return BatchResult(total=plan["items"], plan=plan)
    from lesion_studio.core.output_folder import open_output_folder
    from lesion_studio.models.distributed import run_on_main

    # Rank 0 locks and claims; the other ranks raise its error when it cannot (never hang or write).
    lock = run_on_main(info, lambda: open_output_folder(config.output_dir, kind="batch", force=force,
                                                         key="output.dir"))
    try:
        with TempJournal(config.output_dir):
            return _run_locked(config, exporter, plan, info, show_progress=show_progress, stdout=stdout, log=log,
                               progress=progress, cancel=cancel)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(config: BatchConfig, exporter: BatchExporter, plan: dict[str, Any], info: Any, *,
                show_progress: bool, stdout: TextIO, log: TextIO | None,
                progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None) -> BatchResult:
    """`run_batch` once rank 0 holds the output folder's lock and every rank journals its temps."""
    from lesion_studio.models.distributed import barrier

    if info.is_main:
        removed = remove_stale_temps(config.output_dir)  # only what earlier runs' journals list
        if removed:
            print(f"lesion-studio batch: removed {removed} partial file(s) of an interrupted run", file=log or sys.stderr)
    barrier(info)
    bar = None
    if show_progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(exporter.my_items()), desc=f"export (rank 0 of {info.world_size})", unit="img",
                   file=log or sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    total_mine, done_mine = len(exporter.my_items()), [0]

    def step(n: int) -> None:
        done_mine[0] += n
        if bar is not None:
            bar.update(n)
        if progress is not None:
            progress(done_mine[0], total_mine)
        if cancel is not None and cancel():
            raise BatchCancelled(f"cancelled after {done_mine[0]} of {total_mine} item(s)")

    try:
        mine = exporter.run(progress=step)
    finally:
        if bar is not None:
            bar.close()
    gathered = _gather({"done": mine.done, "skipped": mine.skipped, "failures": mine.failures}, info.world_size)
    result = BatchResult(total=plan["items"], plan=plan)
    for part in gathered:
        result.done += part["done"]
        result.skipped += part["skipped"]
        result.failures += part["failures"]
    barrier(info)
    if info.is_main:
        exporter.finalize(result.failures)
        elapsed = time.perf_counter() - started
        print(f"exported {result.done}, skipped {result.skipped} already done, failed {len(result.failures)} "
              f"of {result.total} in {elapsed:.1f} s -> {config.output_dir}", file=stdout)
        for failure in result.failures:
            print(f"  failed: {failure['item']}: {failure['error']}", file=stdout)
    barrier(info)
    return result
