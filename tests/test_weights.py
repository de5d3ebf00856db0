"""Weights: status and the model list on folders holding some files, and the download logic (skip what is complete,
resume after an interruption, refetch what is damaged, report progress) against a local stand-in for the Hub.

`FakeHub` replaces `hf_hub_download`, the one call that touches the network. Gigabyte files are created sparse, so
they take no disk space or time.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError

from animate import weights
from animate.weights import GROUPS, WeightsError, download, list_models, main, status
from conftest import ROOT

ALL_FILES = {file.path: file for group in GROUPS.values() for file in group.files}


def _sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        file.truncate(size)


def _complete(weights_dir: Path, *groups: str) -> None:
    for group in groups:
        for file in GROUPS[group].files:
            _sparse(weights_dir / file.path, file.size)


class FakeHub:
    """Stands in for `huggingface_hub.hf_hub_download(repo_id, filename, local_dir=...)`: serves each file at the size
    the Hub lists, into `local_dir/filename`, reporting bytes through `tqdm_class` in chunks and moving the file into
    place only when complete, as the real call does. `unreachable` names a file whose fetch fails like a lost
    connection."""

    def __init__(self, unreachable: str | None = None):
        self.unreachable = unreachable
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, repo_id, filename, *, local_dir, force_download=False, tqdm_class=None):
        target = Path(local_dir) / filename
        served = next(file for file in ALL_FILES.values() if (file.repo_id, file.filename) == (repo_id, filename))
        self.calls.append((served.path, force_download))
        if filename == self.unreachable:
            raise LocalEntryNotFoundError("cannot find the requested files") from httpx2.ConnectError("Network down")
        partial = target.with_name(target.name + ".incomplete")
        _sparse(partial, served.size)
        if tqdm_class is not None:
            with tqdm_class(total=served.size, unit="B") as bar:
                for _ in range(4):
                    bar.update(served.size / 4)
        os.replace(partial, target)
        return str(target)


@pytest.fixture
def hub(monkeypatch):
    """An online session against the fake Hub (the test suite itself runs with HF_HUB_OFFLINE=1)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub()
    monkeypatch.setattr(weights, "hf_hub_download", fake)
    return fake


def test_layout_mirrors_moore_animateanyone():
    assert {name: [file.path for file in group.files] for name, group in GROUPS.items()} == {
        "animate_anyone": ["denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth"],
        "sd": [
            "sd-vae-ft-mse/config.json",
            "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
            "image_encoder/config.json",
            "image_encoder/pytorch_model.bin",
            "stable-diffusion-v1-5/unet/config.json",
        ],
        "dwpose": ["DWPose/yolox_l.onnx", "DWPose/dw-ll_ucoco_384.onnx"],
        "openpose": ["openpose/body_pose_model.pth", "openpose/hand_pose_model.pth", "openpose/facenet.pth"],
        "musepose": [
            "MusePose/denoising_unet.pth",
            "MusePose/reference_unet.pth",
            "MusePose/pose_guider.pth",
            "MusePose/motion_module.pth",
        ],
        "wan_animate": [
            "Wan2.2-Animate-14B-Diffusers/model_index.json",
            "Wan2.2-Animate-14B-Diffusers/transformer/config.json",
            "Wan2.2-Animate-14B-Diffusers/transformer/diffusion_pytorch_model.safetensors.index.json",
            *[
                f"Wan2.2-Animate-14B-Diffusers/transformer/diffusion_pytorch_model-{n:05d}-of-00015.safetensors"
                for n in range(1, 16)
            ],  # fmt: skip
            "Wan2.2-Animate-14B-Diffusers/text_encoder/config.json",
            "Wan2.2-Animate-14B-Diffusers/text_encoder/model.safetensors.index.json",
            "Wan2.2-Animate-14B-Diffusers/image_encoder/model.safetensors",
            "Wan2.2-Animate-14B-Diffusers/vae/diffusion_pytorch_model.safetensors",
        ],
    }


def test_readme_documents_every_file():
    readme = (ROOT / "weights" / "README.md").read_text()
    for path, file in ALL_FILES.items():
        path = re.sub(r"-\d{5}-of-", "-000NN-of-", path)  # numbered shards share one row
        assert f"`{path}`" in readme, path
        assert file.repo_id in readme, file.repo_id


def test_status_of_an_empty_folder(tmp_path):
    entries = status(tmp_path)
    assert len(entries) == len(ALL_FILES)
    assert {entry.state for entry in entries} == {"missing"}
    assert all(entry.local_size is None for entry in entries)


def test_status_judges_files_by_size(tmp_path):
    (tmp_path / "sd-vae-ft-mse").mkdir()
    (tmp_path / "sd-vae-ft-mse" / "config.json").write_bytes(b"x" * 547)
    _sparse(tmp_path / "DWPose" / "yolox_l.onnx", 1000)  # an interrupted copy
    (tmp_path / "reference_unet.pth").write_bytes(b"unknown exact size")

    states = {entry.file.path: entry.state for entry in status(tmp_path)}

    assert states["sd-vae-ft-mse/config.json"] == "ok"
    assert states["DWPose/yolox_l.onnx"] == "wrong size"
    assert states["reference_unet.pth"] == "present"
    assert states["denoising_unet.pth"] == "missing"
    assert list(states.values()).count("missing") == len(ALL_FILES) - 3


def test_status_of_chosen_groups_and_unknown_names(tmp_path):
    assert [entry.file.path for entry in status(tmp_path, ["dwpose"])] == [
        "DWPose/yolox_l.onnx",
        "DWPose/dw-ll_ucoco_384.onnx",
    ]
    with pytest.raises(ValueError, match="Unknown weight group.*vae.*Known groups: animate_anyone"):
        status(tmp_path, ["vae"])


def test_no_models_in_an_empty_folder(tmp_path):
    assert list_models(tmp_path) == []
    incomplete = list_models(tmp_path, include_incomplete=True)
    assert [model.name for model in incomplete] == ["animate-anyone", "musepose", "wan-animate", "tiny"]
    released = incomplete[0]
    assert not released.usable
    assert released.missing.startswith("9 file(s) missing or incomplete (10.25 GB): denoising_unet.pth")
    assert "python -m animate.weights download --only animate_anyone sd" in released.missing


def test_models_listed_once_complete(tmp_path):
    _complete(tmp_path, "animate_anyone", "sd")
    _complete(tmp_path, "musepose")
    (tmp_path / "MusePose" / "motion_module.pth").unlink()
    for folder in ("tiny", "trained/dancer", "trained/zebra"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model_index.json").write_text("{}")
    (tmp_path / "trained" / "unfinished").mkdir()

    models = list_models(tmp_path)

    assert [(model.name, model.kind, model.path) for model in models] == [
        ("animate-anyone", "released", tmp_path),
        ("tiny", "builtin", tmp_path / "tiny"),
        ("trained/dancer", "trained", tmp_path / "trained" / "dancer"),
        ("trained/zebra", "trained", tmp_path / "trained" / "zebra"),
    ]
    assert all(model.description for model in models)
    missing = {model.name: model.missing for model in list_models(tmp_path, include_incomplete=True)}
    assert missing["musepose"].startswith("1 file(s) missing or incomplete (916.2 MB): MusePose/motion_module.pth.")
    assert missing["trained/unfinished"] == f"{tmp_path / 'trained' / 'unfinished'} has no model_index.json."


def test_a_damaged_file_makes_a_model_incomplete(tmp_path):
    _complete(tmp_path, "animate_anyone", "sd")
    _sparse(tmp_path / "motion_module.pth", 10)
    assert list_models(tmp_path) == []


def test_download_skips_complete_files(tmp_path, hub):
    (tmp_path / "sd-vae-ft-mse").mkdir()
    (tmp_path / "sd-vae-ft-mse" / "config.json").write_bytes(b"x" * 547)
    _sparse(tmp_path / "image_encoder" / "pytorch_model.bin", ALL_FILES["image_encoder/pytorch_model.bin"].size)

    paths = download(["sd"], tmp_path)

    assert hub.calls == [
        ("sd-vae-ft-mse/diffusion_pytorch_model.safetensors", False),
        ("image_encoder/config.json", False),
        ("stable-diffusion-v1-5/unet/config.json", False),
    ]
    assert paths == [tmp_path / file.path for file in GROUPS["sd"].files]
    assert {entry.state for entry in status(tmp_path, ["sd"])} == {"ok"}
    assert download(["sd"], tmp_path) == paths
    assert len(hub.calls) == 3  # the second run had nothing to fetch


def test_download_resumes_after_an_interruption(tmp_path, hub):
    hub.unreachable = "dw-ll_ucoco_384.onnx"
    with pytest.raises(WeightsError, match=r"DWPose/dw-ll_ucoco_384.onnx .* cannot be reached \(Network down\)"):
        download(["openpose", "dwpose"], tmp_path)
    fetched_before = [path for path, _ in hub.calls]
    assert fetched_before[-1] == "DWPose/dw-ll_ucoco_384.onnx"
    assert not (tmp_path / "DWPose" / "dw-ll_ucoco_384.onnx").exists()
    assert list((tmp_path / "DWPose").iterdir()) == [tmp_path / "DWPose" / "yolox_l.onnx"]

    hub.unreachable = None
    hub.calls.clear()
    download(["openpose", "dwpose"], tmp_path)

    assert hub.calls == [("DWPose/dw-ll_ucoco_384.onnx", False)]
    assert {entry.state for entry in status(tmp_path, ["openpose", "dwpose"])} == {"ok"}


def test_damaged_file_is_fetched_again_and_unknown_sizes_are_left_to_the_hub(tmp_path, hub):
    _sparse(tmp_path / "denoising_unet.pth", 12345)  # wrong size: forced, past any stale "complete" record
    _sparse(tmp_path / "reference_unet.pth", 999)  # exact size unknown: the Hub compares it with its own metadata
    download(["animate_anyone"], tmp_path)
    assert hub.calls[:2] == [("denoising_unet.pth", True), ("reference_unet.pth", False)]
    assert (tmp_path / "denoising_unet.pth").stat().st_size == ALL_FILES["denoising_unet.pth"].size


def test_default_download_is_the_released_model_and_dwpose(tmp_path, hub):
    download(weights_dir=tmp_path)
    fetched = {path for path, _ in hub.calls}
    expected = {file.path for name in ("animate_anyone", "sd", "dwpose") for file in GROUPS[name].files}
    assert fetched == expected


def test_progress_is_reported_as_bytes_arrive(tmp_path, hub):
    reports = []
    download(["dwpose"], tmp_path, progress=lambda fraction, message: reports.append((fraction, message)))

    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0 and fractions[-1] == 1
    assert len(reports) >= 2 * 4  # every chunk of both files
    yolox, pose = ALL_FILES["DWPose/yolox_l.onnx"].size, ALL_FILES["DWPose/dw-ll_ucoco_384.onnx"].size
    assert (yolox / (yolox + pose), "Downloading DWPose/yolox_l.onnx (216.7 MB, file 1 of 2)") in reports
    assert reports[-1][1] == "All files of dwpose are present"


def test_offline_mode_refuses_to_download(tmp_path, monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(weights, "hf_hub_download", fake)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):
        download(["sd"], tmp_path)
    assert fake.calls == []


def test_cli_status(tmp_path, capsys):
    _complete(tmp_path, "dwpose")
    assert main(["--weights-dir", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out
    assert "dwpose: DWPose skeleton detector (the default pose backend)  [2 of 2 present]" in out
    assert re.search(r"missing +3\.44 GB +denoising_unet\.pth +patrolli/AnimateAnyone", out)
    assert "animate-anyone   incomplete: 9 file(s)" in out


def test_cli_download_without_network_prints_one_clear_line(tmp_path, hub, capsys):
    hub.unreachable = "config.json"
    assert main(["--weights-dir", str(tmp_path), "download", "--only", "sd"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "Downloading sd-vae-ft-mse/config.json (547 B, file 1 of 5)",
        "error: Could not download sd-vae-ft-mse/config.json from stabilityai/sd-vae-ft-mse: the Hugging Face Hub "
        "cannot be reached (Network down). Check the internet connection (or HF_ENDPOINT) and run the download "
        "again; files already downloaded are kept.",
    ]


def test_import_and_status_do_no_network_io(tmp_path):
    """Importing the module, reading status and listing models open no connection, even with downloads allowed."""
    script = f"""
import socket, sys
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        raise RuntimeError(f"network access: {{event}} {{args}}")
sys.addaudithook(refuse)
import animate.weights as weights
from pathlib import Path
weights.status(Path({str(tmp_path)!r}))
weights.list_models(Path({str(tmp_path)!r}), include_incomplete=True)
print("no network")
"""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "no network", result.stderr


WAN = "Wan2.2-Animate-14B-Diffusers"


def _text_encoder_index(weights_dir: Path, shards: int) -> list[str]:
    """A text-encoder index naming `shards` shard files, as the Hub repository's does; returns their paths."""
    names = [f"model-{n:05d}-of-{shards:05d}.safetensors" for n in range(1, shards + 1)]
    index = {"metadata": {"total_size": 11_400_000_000}, "weight_map": {f"w{n}": name for n, name in enumerate(names)}}
    path = weights_dir / WAN / "text_encoder" / "model.safetensors.index.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index))
    return [f"{WAN}/text_encoder/{name}" for name in names]


def test_wan_animate_is_listed_once_its_files_and_the_shards_its_indexes_name_are_present(tmp_path):
    missing = {model.name: model.missing for model in list_models(tmp_path, include_incomplete=True)}
    assert missing["wan-animate"].startswith("22 file(s) missing or incomplete (82.30 GB)")  # the shards too
    assert "python -m animate.weights download --only wan_animate" in missing["wan-animate"]

    _complete(tmp_path, "wan_animate")
    shards = _text_encoder_index(tmp_path, 3)
    states = {entry.file.path: entry.state for entry in status(tmp_path, ["wan_animate"])}
    assert [states[shard] for shard in shards] == ["missing"] * 3  # named by the index: now expected too
    assert "wan-animate" not in [model.name for model in list_models(tmp_path)]

    for shard in shards:
        _sparse(tmp_path / shard, 10)
    (wan,) = [model for model in list_models(tmp_path) if model.name == "wan-animate"]
    assert (wan.kind, wan.path, wan.missing) == ("wan-animate", tmp_path / WAN, "")


def test_saved_pipelines_under_custom_are_listed_with_their_engine(tmp_path):
    for name, pipeline in (("wan-tiny", "WanAnimatePipeline"), ("other", "AnimateAnyonePipeline")):
        (tmp_path / "custom" / name).mkdir(parents=True)
        (tmp_path / "custom" / name / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    assert [(model.name, model.kind) for model in list_models(tmp_path)] == [
        ("custom/other", "custom"),
        ("custom/wan-tiny", "wan-animate"),
    ]


def test_wan_animate_is_fetched_as_one_repository_and_then_left_alone(tmp_path, monkeypatch):
    """The group's shard names are the repository's, so it comes through snapshot_download into its folder."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def snapshot(repo_id, *, local_dir, tqdm_class=None):
        calls.append((repo_id, Path(local_dir)))
        weights_dir = Path(local_dir).parent
        _complete(weights_dir, "wan_animate")
        for shard in _text_encoder_index(weights_dir, 2):
            _sparse(weights_dir / shard, 10)
        with tqdm_class(total=GROUPS["wan_animate"].total_size, unit="B") as bar:
            bar.update(GROUPS["wan_animate"].total_size)
        return str(local_dir)

    monkeypatch.setattr(weights, "snapshot_download", snapshot)
    monkeypatch.setattr(weights, "hf_hub_download", FakeHub())
    reports = []
    paths = download(["wan_animate"], tmp_path, progress=lambda fraction, message: reports.append((fraction, message)))

    assert calls == [("Wan-AI/Wan2.2-Animate-14B-Diffusers", tmp_path / WAN)]
    assert len(paths) == 22 + 2 and all(path.is_file() for path in paths)
    assert reports[0] == (0.0, f"Downloading Wan-AI/Wan2.2-Animate-14B-Diffusers into {WAN}/ (82.30 GB)")
    assert reports[-1][0] == 1.0
    download(["wan_animate"], tmp_path)
    assert len(calls) == 1  # complete: nothing asked of the Hub


def test_a_wan_download_that_leaves_files_missing_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "snapshot_download", lambda repo_id, *, local_dir, tqdm_class=None: str(local_dir))
    with pytest.raises(WeightsError, match=rf"{WAN}/model_index.json, .* is still missing: the repository has changed"):
        download(["wan_animate"], tmp_path)
