"""`lesion-studio batch`: every format end to end on a phantom dataset, skip-finished, failures,
dry run, SIGKILL-and-resume, and torchrun sharding with 2 gloo processes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lesion_studio.app.cli import main
from lesion_studio.core.dataset import load_dataset, read_array
from lesion_studio.core.export import deid, dicom_derived
from lesion_studio.core.export.config import load_batch_config
from lesion_studio.core.phantom import generate_phantom_dataset
from lesion_studio.models import batch_export
from lesion_studio.models.trainer import Trainer
from tests.models.conftest import tiny_config
from tests._process import live_group_members, run_group

REPO = Path(__file__).resolve().parents[2]
ALL_FORMATS = ["png", "nifti", "nnunet", "coco", "dicom"]
N_CASES, PER_IMAGE = 5, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    generate_phantom_dataset(root / "ds", "chest", N_CASES, size_px=64)
    Trainer(tiny_config("texture", root / "ds", root / "texture", steps=2, num_threads=1)).run()
    return {"root": root, "dataset": root / "ds", "checkpoint": root / "texture" / "final"}


def write_config(path: Path, setup: dict, out: Path, *, formats=ALL_FORMATS, per_image=PER_IMAGE,
                 extra: str = "") -> Path:
    path.write_text(f"""
seed = 11
[input]
dataset = "{setup['dataset']}"
[synthesis]
per_image = {per_image}
{extra}
[models]
inpaint = "{setup['checkpoint']}"
device = "cpu"
[output]
dir = "{out}"
formats = {json.dumps(formats)}
nnunet_id = 42
nnunet_name = "PhantomChest"
""")
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesion_studio", "batch", str(config), "--quiet", "--threads", "1",
                           *args], capture_output=True, text=True, timeout=240, env=_env())


#: The UIDs a derived DICOM takes from its export's random root (`dicom_derived.uid_root`).
EXPORT_UIDS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "sop": "SOPInstanceUID",
               "frame": "FrameOfReferenceUID"}


def _without_export_uids(path: Path) -> bytes:
    """A derived DICOM re-encoded with its root-derived UIDs blanked, to compare two exports."""
    ds = pydicom.dcmread(path)
    for keyword in EXPORT_UIDS.values():
        setattr(ds, keyword, "1.2")
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def assert_uids_follow_the_root(out: Path) -> set[str]:
    """Every DICOM of `out` carries the UIDs of `out`'s own root (items written before and after a
    kill alike); returns the SOP Instance UIDs."""
    root = dicom_derived.uid_root(out)
    sops = set()
    for path in (out / "dicom").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for role, keyword in EXPORT_UIDS.items():
            item = "" if role in ("study", "series") else path.stem
            assert ds.get(keyword) == dicom_derived.new_uid(root, item, role), (path, keyword)
        sops.add(ds.SOPInstanceUID)
    return sops


def files_of(out: Path, *, same_export: bool = True) -> dict[str, bytes]:
    """Every output file by relative path; manifest lines without their time stamp. To compare two
    exports (`same_export=False`), DICOM files without the UIDs of their export's random root."""
    files = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(out).as_posix()
        if not same_export and (rel == dicom_derived.UID_ROOT_FILE or rel.startswith(".lesion-studio")):
            continue  # what makes each export its own: UID root, folder marker and lock
        data = path.read_bytes() if same_export or path.suffix != ".dcm" else _without_export_uids(path)
        if rel.startswith("manifest"):
            lines = [json.loads(line) for line in data.decode().splitlines()]
            for record in lines:
                record.pop("time")
            data = json.dumps(lines, sort_keys=True).encode()
        files[rel] = data
    return files


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    """One uninterrupted run with every format (a subprocess, like the kill-and-resume runs)."""
    out = setup["root"] / "reference"
    config = write_config(setup["root"] / "reference.toml", setup, out)
    proc = _cli(config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"exported {N_CASES * PER_IMAGE}, skipped 0" in proc.stdout
    return out


def test_every_format_end_to_end(reference: Path, setup) -> None:
    n = N_CASES * PER_IMAGE
    records = [json.loads(line) for line in (reference / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == n and len({r["item"] for r in records}) == n
    dataset = load_dataset(setup["dataset"])
    kinds = {r["kind"] for r in records}
    assert kinds == {"inpaint", "replace_remove"}  # lesion-free and lesion cases both present
    for record in records:
        assert len(record["source_sha256"]) == 64 and record["package_version"] and record["time"]
        assert len(record["models"]["inpaint"]["weights_sha256"]) == 64
        assert record["requests"], record["item"]
        for request in record["requests"]:
            assert {"mode", "centre_rc", "diameter_mm", "seed"} <= set(request)
        if record["kind"] == "inpaint":
            assert 1 <= len(record["requests"]) <= 3  # P0 §IV-A: 1-3 new lesions
            assert {r["mode"] for r in record["requests"]} == {"inpaint"}

    # PNG pairs: 16-bit images, 0/1 label masks
    item = records[0]["item"]
    image = read_array(reference / "png" / "images" / f"{item}.png")
    mask = read_array(reference / "png" / "masks" / f"{item}.png")
    assert image.dtype == np.uint16 and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1} and mask.any()

    # NIfTI with the source geometry (dataset spacing for a PNG source)
    nii = sitk.ReadImage(str(reference / "nifti" / "images" / f"{item}.nii.gz"))
    spacing = dataset.spacing_mm
    assert nii.GetSpacing() == pytest.approx((spacing[1], spacing[0]))
    assert np.array_equal(np.rint(sitk.GetArrayFromImage(nii)).astype(np.uint16), image)
    nii_mask = sitk.ReadImage(str(reference / "nifti" / "masks" / f"{item}.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(nii_mask), mask) and nii_mask.GetSpacing() == nii.GetSpacing()

    # nnU-Net v2 raw dataset, dataset.json with its documented fields
    root = reference / "nnunet" / "Dataset042_PhantomChest"
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "CR"} and doc["labels"] == {"background": 0, "lesion": 1}
    assert doc["numTraining"] == n and doc["file_ending"] == ".nii.gz"
    assert len(list((root / "imagesTr").glob("*_0000.nii.gz"))) == n
    assert sorted(p.name[: -len(".nii.gz")] for p in (root / "labelsTr").iterdir()) == sorted(r["item"] for r in records)

    # COCO loads with pycocotools; masks and boxes match the exported label masks
    coco_api = pytest.importorskip("pycocotools.coco")
    coco = coco_api.COCO(str(reference / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == n and coco.loadCats(1)[0]["name"] == "lesion"
    for image_info in coco.loadImgs(coco.getImgIds()):
        item_id = Path(image_info["file_name"]).stem
        union = np.zeros((image_info["height"], image_info["width"]), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"])):
            union |= coco.annToMask(ann).astype(bool)
            x, y, w, h = ann["bbox"]
            assert coco.annToMask(ann)[int(y): int(y + h), int(x): int(x + w)].sum() == ann["area"]
        assert np.array_equal(union, read_array(reference / "png" / "masks" / f"{item_id}.png") > 0)
        assert (reference / "coco" / image_info["file_name"]).is_file()

    # DICOM derived images: pixels, new UIDs, de-identified, synthetic marker
    uids = set()
    for record in records:
        ds = pydicom.dcmread(reference / "dicom" / f"{record['item']}.dcm")
        png_image = read_array(reference / "png" / "images" / f"{record['item']}.png")
        assert np.array_equal(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), png_image)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and "SYNTHETIC" in ds.DerivationDescription
        assert "texture" in ds.DerivationDescription and ds.PatientIdentityRemoved == "YES"
        for keyword in deid.REMOVE:
            assert keyword not in ds or keyword in ("DerivationDescription", "SeriesDescription"), keyword
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == n


def test_rerun_skips_finished_items(reference: Path, tmp_path: Path, setup, capsys) -> None:
    before = files_of(reference)
    config = write_config(setup["root"] / "reference.toml", setup, reference)
    assert main(["batch", str(config), "--quiet"]) == 0
    assert f"skipped {N_CASES * PER_IMAGE} already done" in capsys.readouterr().out
    assert files_of(reference) == before


def test_dry_run_prints_the_plan_and_writes_nothing(setup, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png", "dicom"], per_image=10)
    assert main(["batch", str(config), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["items"] == N_CASES * 10 and plan["cases"] == N_CASES  # P0: 10 per real image
    assert plan["files"] == {"png": 2 * N_CASES * 10, "dicom": N_CASES * 10}
    assert sum(plan["by_kind"].values()) == plan["items"] and not out.exists()


def test_item_failures_are_counted_not_fatal_and_retried(setup, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png"], per_image=1)

    def fake(self, item, inputs):  # no model: fast; one item fails
        if item.case.case_id.endswith("0001"):
            raise RuntimeError("simulated failure")
        return inputs["image"], inputs["mask"], [], {}

    monkeypatch.setattr(batch_export.BatchExporter, "synthesize", fake)
    assert main(["batch", str(config), "--quiet"]) == 3
    output = capsys.readouterr().out
    assert "failed 1 of 5" in output and "phantom_chest_0001_s000" in output
    failures = json.loads((out / "failures.json").read_text())
    assert [f["item"] for f in failures] == ["phantom_chest_0001_s000"] and "simulated" in failures[0]["error"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4

    monkeypatch.setattr(batch_export.BatchExporter, "synthesize",
                        lambda self, item, inputs: (inputs["image"], inputs["mask"], [], {}))
    assert main(["batch", str(config), "--quiet"]) == 0
    assert "exported 1, skipped 4" in capsys.readouterr().out
    assert not (out / "failures.json").exists() and len((out / "manifest.jsonl").read_text().splitlines()) == 5


def test_uniform_diameters_classic_preset_and_real_images(setup, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = '[diameters]\nkind = "uniform"\nrange_mm = [25.0, 35.0]\n[classic]\npreset = "P4"\n'
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png"], per_image=1, extra=extra)
    text = config.read_text().replace("[output]", "[output]\ninclude_real = true")
    config.write_text(text)
    exporter = batch_export.BatchExporter(load_batch_config(config), device="cpu")
    chosen = [i for i in exporter.items if i.case.case_id.endswith(("0000", "0002"))]
    for item in chosen:
        exporter.export_item(item)
    records = {r["item"]: r for r in (json.loads(p.read_text()) for p in (out / "manifest" / "parts").iterdir())}
    real = records["phantom_chest_0000_real"]
    assert real["kind"] == "real" and real["requests"] == [] and real["classic"] is None
    assert np.array_equal(read_array(out / "png" / "images" / "phantom_chest_0000_real.png"),
                          read_array(setup["dataset"] / "images" / "phantom_chest_0000.png"))
    synthetic = [r for r in records.values() if r["kind"] != "real"]
    assert synthetic and all(r["classic"]["preset"] == "P4" for r in synthetic)
    inpaints = [q for r in synthetic for q in r["requests"] if q["mode"] == "inpaint"]
    assert inpaints and all(25.0 <= q["diameter_mm"] <= 35.0 for q in inpaints)


def test_sigkill_and_resume_gives_the_uninterrupted_result(reference: Path, setup, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out)
    proc = subprocess.Popen([sys.executable, "-m", "lesion_studio", "batch", str(config), "--quiet", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    parts = out / "manifest" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "manifest.jsonl").exists()
    resumed = _cli(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "skipped 0 " not in resumed.stdout  # finished items were kept
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    got, want = files_of(out, same_export=False), files_of(reference, same_export=False)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    # Same seed, same dataset name, another export: no UID in common (issue 18 item 2).
    assert not assert_uids_follow_the_root(out) & assert_uids_follow_the_root(reference)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_ranks_disjoint_shards_one_manifest(reference: Path, setup, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png", "coco"], per_image=1)
    proc = run_group(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
         "-m", "lesion_studio", "batch", str(config), "--quiet", "--threads", "1"],
        timeout=240, env=_env(), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("exported 5,") == 1  # rank 0 reports the merged counts
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["item"] for r in records) == [f"phantom_chest_{i:04d}_s000" for i in range(N_CASES)]
    by_rank = {rank: {r["item"] for r in records if r["rank"] == rank} for rank in (0, 1)}
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1]
    assert len(json.loads((out / "coco" / "annotations.json").read_text())["images"]) == N_CASES
    for record in records:  # an item's output does not depend on the shard that made it
        name = f"{record['item']}.png"
        assert (out / "png" / "images" / name).read_bytes() == (reference / "png" / "images" / name).read_bytes()
        assert (out / "png" / "masks" / name).read_bytes() == (reference / "png" / "masks" / name).read_bytes()


def test_torchrun_ranks_stop_with_rank_0_when_the_output_folder_is_locked(setup, tmp_path: Path) -> None:
    """Rank 0 cannot lock output.dir: both ranks print why and exit non-zero; none waits or writes."""
    from lesion_studio.core.output_folder import open_output_folder

    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png"], per_image=1)
    lock = open_output_folder(out, kind="batch")  # this test process is the other export
    before = sorted(p.name for p in out.rglob("*"))
    try:
        proc = run_group(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
             str(_free_port()), "-m", "lesion_studio", "batch", str(config), "--quiet", "--threads", "1"],
            timeout=240, env=_env(), cwd=tmp_path,  # a hang guard
        )
    finally:
        lock.release()
    assert proc.returncode != 0
    message = f"lesion-studio batch: {out.resolve()}: in use by PID {os.getpid()} since"
    assert proc.stderr.count(message) == 2, proc.stderr[-3000:]  # rank 0 and rank 1
    assert "exitcode  : 0" not in proc.stderr
    assert sorted(p.name for p in out.rglob("*")) == before
    assert live_group_members(proc.pid) == []


def test_an_unusable_checkpoint_is_a_config_error(setup, tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus"
    bogus.with_name("bogus.safetensors").write_bytes(b"not tensors")
    bogus.with_name("bogus.json").write_text("{}")
    config = write_config(tmp_path / "c.toml", setup, tmp_path / "out", formats=["png"], per_image=1)
    config.write_text(config.read_text().replace(str(setup["checkpoint"]), str(bogus)))
    assert main(["batch", str(config), "--quiet"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_a_shape_checkpoint_as_inpaint_model_names_the_key(setup, tmp_path: Path, capsys) -> None:
    from lesion_studio.core.model_catalog import builtin_models_dir

    config = write_config(tmp_path / "c.toml", setup, tmp_path / "out", formats=["png"], per_image=1)
    shape = builtin_models_dir() / "ct_nodule_shape"
    config.write_text(config.read_text().replace(str(setup["checkpoint"]), str(shape)))
    assert main(["batch", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "models.inpaint" in err and "shape checkpoint" in err and "models.shape" in err


def test_outpaint_mix_keeps_every_lesion(setup, tmp_path: Path) -> None:
    Trainer(tiny_config("outpaint", setup["dataset"], tmp_path / "outpaint", steps=1, num_threads=1)).run()
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png", "coco"], per_image=1,
                          extra="inpaint = false\nreplace_remove = false\noutpaint_fraction = 1.0")
    config.write_text(config.read_text().replace("[models]", f'[models]\noutpaint = "{tmp_path / "outpaint" / "final"}"'))
    assert main(["batch", str(config), "--quiet"]) == 0
    dataset = load_dataset(setup["dataset"])
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == sum(c.has_lesion for c in dataset.cases)  # lesion-free images are not outpainted
    for record in records:
        assert record["kind"] == "outpaint" and {r["mode"] for r in record["requests"]} == {"outpaint"}
        assert record["models"]["outpaint"]["family"] == "outpaint"
        case = next(c for c in dataset.cases if c.case_id == record["source_case"])
        exported = read_array(out / "png" / "masks" / f"{record['item']}.png") > 0
        assert np.array_equal(exported, dataset.read_mask(case))  # the finding is kept as it was


def test_ct_source_keeps_nifti_geometry_and_signed_hu(tmp_path: Path, monkeypatch) -> None:
    generate_phantom_dataset(tmp_path / "ct", "ct", 3, size_px=64)
    (tmp_path / "none.safetensors").write_bytes(b"")  # never loaded: the model is patched out
    monkeypatch.setattr(batch_export.BatchExporter, "synthesize",
                        lambda self, item, inputs: (inputs["image"], inputs["mask"], [], {}))
    out = tmp_path / "out"
    config = tmp_path / "c.toml"
    config.write_text(f'[input]\ndataset = "{tmp_path / "ct"}"\n[synthesis]\nper_image = 1\n'
                      f'[models]\ninpaint = "{tmp_path}/none"\n[output]\ndir = "{out}"\n'
                      'formats = ["png", "nifti", "dicom", "nnunet"]\n')
    monkeypatch.setattr(batch_export._Models, "get", lambda self, role: (None, {}))
    assert main(["batch", str(config), "--quiet"]) == 0
    source = sitk.ReadImage(str(tmp_path / "ct" / "images" / "phantom_ct_0000.nii.gz"))
    exported = sitk.ReadImage(str(out / "nifti" / "images" / "phantom_ct_0000_s000.nii.gz"))
    assert exported.GetSpacing() == source.GetSpacing() and exported.GetOrigin() == source.GetOrigin()
    assert exported.GetDirection() == source.GetDirection()
    hu = np.rint(sitk.GetArrayFromImage(source).astype(np.float64)).squeeze()
    assert hu.min() < 0
    ds = pydicom.dcmread(out / "dicom" / "phantom_ct_0000_s000.dcm")
    assert ds.PixelRepresentation == 1 and np.array_equal(ds.pixel_array.astype(np.float64), hu)
    png_image = read_array(out / "png" / "images" / "phantom_ct_0000_s000.png")
    assert np.array_equal(png_image.astype(np.float64), np.clip(hu + 1024, 0, 65535))  # png_offset
    doc = json.loads((out / "nnunet" / "Dataset501_LesionStudio" / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "CT"}


def test_a_changed_config_redoes_what_it_changes(setup, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(batch_export.BatchExporter, "synthesize",
                        lambda self, item, inputs: (inputs["image"], inputs["mask"], [], {}))
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", setup, out, formats=["png"], per_image=1)
    assert main(["--batch", str(config)]) == 0  # the GUI launcher's --batch runs the same command
    assert "exported 5, skipped 0" in capsys.readouterr().out
    config.write_text(config.read_text().replace('formats = ["png"]', 'formats = ["png", "coco"]'))
    assert main(["batch", str(config), "--quiet"]) == 0
    assert "exported 5, skipped 0" in capsys.readouterr().out  # a new format: every item again
    (out / "png" / "masks" / "phantom_chest_0002_s000.png").unlink()
    assert main(["batch", str(config), "--quiet"]) == 0
    assert "exported 1, skipped 4" in capsys.readouterr().out  # a lost file: that item again
    config.write_text(config.read_text().replace("seed = 11", "seed = 12"))
    assert main(["batch", str(config), "--quiet"]) == 0
    assert "exported 5, skipped 0" in capsys.readouterr().out  # another seed: new images


def test_a_refused_dicom_template_stops_the_run_before_any_item(tmp_path: Path, monkeypatch, capsys) -> None:
    generate_phantom_dataset(tmp_path / "ct", "ct", 2, size_px=64)
    (tmp_path / "none.safetensors").write_bytes(b"")  # never loaded: the model is patched out
    monkeypatch.setattr(batch_export._Models, "get", lambda self, role: (None, {}))
    template = tmp_path / "burned.dcm"
    source = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    source.BurnedInAnnotation = "YES"
    source.save_as(template)
    out = tmp_path / "out"
    config = tmp_path / "c.toml"
    config.write_text(f'[input]\ndataset = "{tmp_path / "ct"}"\ndicom_template = "{template}"\n'
                      f'[synthesis]\nper_image = 1\n[models]\ninpaint = "{tmp_path}/none"\n'
                      f'[output]\ndir = "{out}"\nformats = ["png", "dicom"]\n')
    assert main(["batch", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(template) in err and "BurnedInAnnotation YES" in err and "failed" not in err
    assert not list(out.rglob("*.png")) and not list(out.rglob("*.dcm"))
