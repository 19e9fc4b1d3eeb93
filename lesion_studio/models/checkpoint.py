"""Checkpoints as safetensors + JSON: nothing in them can execute code when loaded.

A checkpoint `NAME` is up to three files side by side:
- `NAME.safetensors`: network weights, keys `<network>.<parameter>` (e.g. `generator.x.weight`);
- `NAME.json`: family, config, step, metrics, dataset fingerprint, package version,
  normalisation, the network names and the layout of the training state;
- `NAME.state.safetensors` (training checkpoints only): optimizer and scheduler tensors and
  the RNG states; their non-tensor parts (hyper-parameters, step counts) are in the JSON.

Loading reads the JSON first (plain `json`), then the tensors with `safetensors`; a pickle
(`.pt`, `.pth`, `.ckpt`, `.pkl`) is refused with `CheckpointError`, never unpickled.

Saving is all-or-nothing: every file is written under a temporary name (fsynced), the JSON
records the size and SHA-256 of the tensor files (`files`), then the old `NAME.json` is
removed (the old checkpoint is now absent), the tensor files are renamed into place and the
JSON is renamed last: the commit. A kill at any point leaves the old checkpoint complete, or
no checkpoint `NAME`, or the new one complete; loading verifies the recorded hashes, so
a JSON beside tensors of another save is refused (`CheckpointError` naming the file), never
loaded. Checkpoints without `files` (older versions) load unchecked; the bundled ones all have them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lesion_studio import __version__
from lesion_studio.core.errors import CheckpointError
from lesion_studio.core.export.atomic import fsync_dir, temp_path
from lesion_studio.core.hashing import sha256_file

CHECKPOINT_FORMAT = "lesion-studio-checkpoint"
CHECKPOINT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")
#: Largest network a checkpoint's config may describe (parameters; 400 M ≈ 1.6 GB float32).
#: Counted on torch's "meta" device (no memory) before the real network is built.
MAX_NETWORK_PARAMETERS = 400_000_000
#: Largest JSON sidecar read (bytes): metadata, never weights.
MAX_SIDECAR_BYTES = 16 * 1024 * 1024


def check_sidecar(meta: Any, json_path: Path) -> dict[str, Any]:
    """Types and ranges of a checkpoint's JSON fields; `CheckpointError` naming the file.

    Runs before any tensor is read or network built, so a hostile or damaged sidecar (text in
    numeric fields, lists where tables belong, NaN normalisation) is refused clearly.
    """
    import math

    def bad(reason: str) -> None:
        raise CheckpointError(f"invalid checkpoint metadata: {reason}", json_path)

    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError("not a lesion-studio checkpoint (format field missing or different)", json_path)
    version = meta.get("version", 0)
    if not integer(version) or version < 0:
        bad(f"version must be a non-negative integer, got {version!r}")
    if not isinstance(meta.get("family"), str) or not meta["family"]:
        bad(f"family must be a name, got {meta.get('family')!r}")
    step = meta.get("step", 0)
    if not integer(step) or step < 0:
        bad(f"step must be a non-negative integer, got {step!r}")
    networks = meta.get("networks", [])
    if not isinstance(networks, list) or not all(isinstance(n, str) and n for n in networks) or len(networks) > 16:
        bad(f"networks must be a list of up to 16 names, got {networks!r}"[:300])
    for key in ("config", "metrics", "normalization", "files", "selection"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            bad(f"{key} must be a table, got {type(meta[key]).__name__}")
    for key, value in (meta.get("metrics") or {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            bad(f"metrics.{key} must be a number, got {value!r}"[:300])
    norm = meta.get("normalization")
    if norm:
        lo, hi = norm.get("lo"), norm.get("hi")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        if not numbers or not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            bad(f"normalization must hold finite numbers lo < hi, got lo={lo!r}, hi={hi!r}")
    patients = meta.get("patients")
    if patients is not None and (not isinstance(patients, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in patients.values())):
        bad("patients must be a table of lists of patient ids")
    for role, record in (meta.get("files") or {}).items():
        if (not isinstance(record, dict) or not integer(record.get("bytes"))
                or not isinstance(record.get("sha256"), str)):
            bad(f"files.{role} must hold an integer 'bytes' and a 'sha256' string")
    return meta


def build_checked(build, config: Any, weights: dict[str, torch.Tensor], *, name: str, path: Path) -> nn.Module:
    """Build a network from a checkpoint's config only after checking it on the meta device.

    `build(config)` first runs under `torch.device("meta")` (no memory is allocated): the
    parameter count must be at most `MAX_NETWORK_PARAMETERS` and every tensor shape must match
    `weights` (what the safetensors file holds); only then is the real network built and the
    weights copied in. A sidecar claiming a huge network is refused before any allocation.
    """
    try:
        with torch.device("meta"):
            probe = build(config)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"the checkpoint's config does not describe a {name}: {exc}", path) from exc
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_NETWORK_PARAMETERS:
        raise CheckpointError(
            f"the checkpoint's config describes a {name} of {count:,} parameters, more than the limit of "
            f"{MAX_NETWORK_PARAMETERS:,} (checkpoint.MAX_NETWORK_PARAMETERS); refused before building it", path)
    own = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in weights.items()}
    if own != stored:
        missing = sorted(set(own) - set(stored))
        unexpected = sorted(set(stored) - set(own))
        differ = sorted(k for k in set(own) & set(stored) if own[k] != stored[k])
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        if differ:
            k = differ[0]
            parts.append(f"{name}.{k} is {stored[k]} in the weights file, the config's network expects {own[k]}")
        raise CheckpointError("the weights file does not fit the network its metadata describes: "
                              + "; ".join(parts), path)
    del probe
    module = build(config)
    load_state_checked(module, weights, name=name, path=path)
    return module


@dataclass
class Checkpoint:
    """What a checkpoint holds once read: metadata, weights per network, optional training state."""

    path: Path
    meta: dict[str, Any]
    weights: dict[str, dict[str, torch.Tensor]]
    training_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def load_into(self, networks: dict[str, nn.Module]) -> None:
        """Copy weights into `networks` (by name); `CheckpointError` for any missing or misfit tensor."""
        for name, module in networks.items():
            if name not in self.weights:
                raise CheckpointError(f"the checkpoint has no weights for {name!r} (it has {sorted(self.weights)})", self.path)
            load_state_checked(module, self.weights[name], name=name, path=self.path)


def stem_of(path: str | Path) -> Path:
    """`run/step_10` from `run/step_10`, `run/step_10.json` or `run/step_10.safetensors`."""
    path = Path(path)
    for suffix in (".state.safetensors", ".safetensors", ".json"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], *, name: str, path: Path | None) -> None:
    """`load_state_dict` that reports key and shape mismatches as a readable `CheckpointError`."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise CheckpointError(f"{name} weights do not fit this network: " + ", ".join(parts), path)
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{name}.{key} has shape {tuple(state[key].shape)} in the checkpoint, "
                f"the network expects {tuple(tensor.shape)} (another width or patch size?)", path,
            )
    module.load_state_dict(state)


# -- nested state (optimizers, schedulers) ↔ JSON + flat tensors ------------------------------
def _encode(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Counter):
        return {"__counter__": [[_encode(k, tensors, prefix), v] for k, v in obj.items()]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, _encode(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint ({prefix})")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__counter__" in obj:
        return Counter({k: v for k, v in obj["__counter__"]})
    if "__dict__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    raise CheckpointError(f"unknown entry in the training state: {sorted(obj)[:3]}")


def _write_temp(path: Path, write) -> Path:
    """Write a temporary file beside `path` with `write(tmp)`, fsync it; returns the temp path."""
    tmp = temp_path(path)
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    return tmp


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _verify_file(meta: dict[str, Any], role: str, path: Path) -> None:
    """`CheckpointError` when `path` is not the file the metadata recorded for `role`."""
    record = (meta.get("files") or {}).get(role)
    if record is None:
        return  # a checkpoint from before hashes were recorded
    if not path.is_file():
        raise CheckpointError(f"file not found (the checkpoint metadata lists it as its {role})", path)
    size = path.stat().st_size
    if size != record.get("bytes") or sha256_file(path) != record.get("sha256"):
        raise CheckpointError(
            f"does not match its checkpoint metadata ({role}: {size} bytes, expected {record.get('bytes')}, "
            "or another SHA-256): a save was interrupted or the file was replaced; use another checkpoint", path)


def save_checkpoint(
    path: str | Path,
    *,
    family: str,
    config: dict[str, Any],
    networks: dict[str, nn.Module],
    step: int,
    metrics: dict[str, float] | None = None,
    dataset_fingerprint: str = "",
    normalization: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
    reason: str = "periodic",
    patients: dict[str, list[str]] | None = None,
) -> Path:
    """Write `path.safetensors` + `path.json` (+ `path.state.safetensors`); returns the stem.

    `patients` (`{"train": [...], "val": [...]}`) records whose images the networks learned
    from, so an experiment can refuse a generator that saw its test patients (issue 14).

    `training_state` is any nesting of dicts/lists/tuples/numbers/tensors (optimizer and
    scheduler `state_dict()`s, RNG states); it round-trips exactly through `load_checkpoint`.
    """
    stem = stem_of(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights: dict[str, torch.Tensor] = {}
    for name, module in networks.items():
        for key, tensor in module.state_dict().items():
            weights[f"{name}.{key}"] = tensor.detach().cpu().contiguous()
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "family": family,
        "step": int(step),
        "reason": reason,
        "metrics": dict(metrics or {}),
        "dataset_fingerprint": dataset_fingerprint,
        "package_version": __version__,
        "torch_version": torch.__version__,
        "config": config,
        "normalization": normalization or {},
        "networks": sorted(networks),
        "training_state": None,
    }
    if patients is not None:
        meta["patients"] = {role: sorted({str(p) for p in ids}) for role, ids in patients.items()}
    weights_path = stem.with_name(stem.name + ".safetensors")
    state_path = stem.with_name(stem.name + ".state.safetensors")
    json_path = stem.with_name(stem.name + ".json")
    temps: list[Path] = []
    try:
        files: dict[str, Any] = {}
        moves: list[tuple[Path, Path]] = []
        if training_state is not None:
            state_tensors: dict[str, torch.Tensor] = {}
            meta["training_state"] = _encode(training_state, state_tensors, "state")
            tmp = _write_temp(state_path, lambda t: save_file(state_tensors, str(t)))
            temps.append(tmp)
            files["state"] = _file_record(tmp)
            moves.append((tmp, state_path))
        tmp = _write_temp(weights_path, lambda t: save_file(weights, str(t)))
        temps.append(tmp)
        files["weights"] = _file_record(tmp)
        moves.append((tmp, weights_path))
        meta["files"] = files
        text = json.dumps(meta, indent=2, sort_keys=True)
        tmp = _write_temp(json_path, lambda t: t.write_text(text, encoding="utf-8"))
        temps.append(tmp)
        # commit: the old checkpoint goes first (absent, never half old and half new) ...
        json_path.unlink(missing_ok=True)
        if training_state is None:
            state_path.unlink(missing_ok=True)  # a stale state of an earlier save must not pair with these weights
        for src, dst in moves:
            os.replace(src, dst)
        # ... and the JSON, renamed last, makes the new one exist
        os.replace(tmp, json_path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(stem.parent)
    return stem


def update_sidecar(path: str | Path, **fields: Any) -> Path:
    """Set top-level `fields` in a checkpoint's JSON (e.g. `selection`), atomically: the
    tensor files and their recorded hashes stay as they are. Returns the stem."""
    stem = stem_of(path)
    json_path = stem.with_name(stem.name + ".json")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the checkpoint metadata: {exc}", json_path) from exc
    check_sidecar(meta, json_path)
    meta.update(fields)
    text = json.dumps(meta, indent=2, sort_keys=True)
    tmp = _write_temp(json_path, lambda t: t.write_text(text, encoding="utf-8"))
    os.replace(tmp, json_path)
    return stem


def _read_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError("file not found", path)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"not a safetensors file ({exc}); pickle checkpoints are never loaded", path) from exc


def load_checkpoint(
    path: str | Path,
    *,
    family: str | None = None,
    device: str | torch.device = "cpu",
    with_training_state: bool = False,
) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; `CheckpointError` with the reason otherwise.

    `family`: when given, a checkpoint of another family is refused.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES or (path.is_file() and _looks_like_pickle(path)):
        raise CheckpointError(
            "this looks like a pickle/torch.save file; lesion-studio never loads pickles "
            "(they can run code). Use a lesion-studio checkpoint (NAME.safetensors + NAME.json).", path,
        )
    stem = stem_of(path)
    json_path = stem.with_name(stem.name + ".json")
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint metadata {json_path.name} next to it", json_path)
    if json_path.stat().st_size > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"checkpoint metadata is larger than {MAX_SIDECAR_BYTES // 2**20} MiB", json_path)
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint metadata is not valid JSON: {exc}", json_path) from exc
    check_sidecar(meta, json_path)
    if int(meta.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint version {meta.get('version')} is newer than this program", json_path)
    if family is not None and meta.get("family") != family:
        raise CheckpointError(
            f"this is a {meta.get('family')!r} checkpoint; a {family!r} checkpoint is needed here", json_path,
        )
    weights_path = stem.with_name(stem.name + ".safetensors")
    _verify_file(meta, "weights", weights_path)
    flat = _read_tensors(weights_path, device)
    weights: dict[str, dict[str, torch.Tensor]] = {name: {} for name in meta.get("networks", [])}
    for key, tensor in flat.items():
        name, _, param = key.partition(".")
        if name not in weights:
            raise CheckpointError(f"weights for an undeclared network {name!r}", stem)
        weights[name][param] = tensor
    training_state = None
    if with_training_state:
        if meta.get("training_state") is None:
            raise CheckpointError("this checkpoint holds weights only; it cannot resume training", json_path)
        state_path = stem.with_name(stem.name + ".state.safetensors")
        _verify_file(meta, "state", state_path)
        tensors = _read_tensors(state_path, "cpu")
        try:
            training_state = _decode(meta["training_state"], tensors)
        except KeyError as exc:
            raise CheckpointError(f"training state tensor {exc} is missing", stem) from exc
    return Checkpoint(path=stem, meta=meta, weights=weights, training_state=training_state)


def _looks_like_pickle(path: Path) -> bool:
    """Pickle protocol 2+ starts with 0x80; torch.save zips start with 'PK'."""
    with path.open("rb") as fh:
        head = fh.read(2)
    return head[:1] == b"\x80" or head == b"PK"


def remove_checkpoint(stem: str | Path) -> None:
    """Delete the files of one checkpoint (used to keep only the last few periodic ones)."""
    stem = stem_of(stem)
    for suffix in (".json", ".safetensors", ".state.safetensors"):  # the JSON first: absent at once
        stem.with_name(stem.name + suffix).unlink(missing_ok=True)


def latest_checkpoint(folder: str | Path, *, family: str | None = None) -> Path | None:
    """The newest (highest step) checkpoint in `folder` that loads completely with its training
    state, or None: what to resume from after a crash."""
    best: tuple[int, Path] | None = None
    for json_path in Path(folder).glob("*.json"):
        if json_path.name.startswith("."):
            continue
        try:
            ck = load_checkpoint(json_path, family=family, with_training_state=True)
        except CheckpointError:
            continue
        if best is None or ck.step > best[0]:
            best = (ck.step, ck.path)
    return None if best is None else best[1]
