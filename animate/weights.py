"""The weight files the app can use: where each lives under `weights/`, where it comes from, what is present, and
downloading what is missing from the Hugging Face Hub.

The layout mirrors Moore-AnimateAnyone's `pretrained_weights/`, so users can copy or symlink theirs in. Nothing here
touches the network except `download`, which is only ever called on the user's request (CLI command or app button).

    python -m animate.weights status
    python -m animate.weights download [--only GROUP ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import tqdm as hub_tqdm

from animate import WEIGHTS_DIR

logger = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """A download that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class WeightFile:
    repo_id: str
    filename: str  # path inside the Hub repository
    local_dir: str  # folder under weights/ that the repository's layout is mirrored into
    size: int  # bytes
    size_is_exact: bool = True  # False where only the Hub page's rounded size is known: presence is all we check

    @property
    def path(self) -> str:
        """Where the file lives, relative to the weights folder."""
        return f"{self.local_dir}/{self.filename}" if self.local_dir else self.filename


@dataclass(frozen=True)
class Group:
    purpose: str
    files: tuple[WeightFile, ...]
    default: bool  # fetched by a plain `download`
    # A whole Hub repository fetched with snapshot_download into `files[0].local_dir` (its shard names may change;
    # `files` are the ones this app checks for), instead of file by file.
    snapshot: bool = False
    size: int | None = None  # bytes in all, where `files` do not add up to it (a snapshot's files named elsewhere)

    @property
    def total_size(self) -> int:
        return self.size or sum(file.size for file in self.files)


def _animate_anyone_file(filename: str, size: int, size_is_exact: bool = True) -> WeightFile:
    return WeightFile("patrolli/AnimateAnyone", filename, "", size, size_is_exact)


def _musepose_file(name: str, size: int) -> WeightFile:
    return WeightFile("TMElyralab/MusePose", f"MusePose/{name}", "", size)


WAN_REPO = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
WAN_DIR = "Wan2.2-Animate-14B-Diffusers"


def _wan_file(filename: str, size: int) -> WeightFile:
    return WeightFile(WAN_REPO, filename, WAN_DIR, size, size_is_exact=False)


# Sizes are the byte counts in the files' Git LFS pointers on the Hub (see weights/README.md); for Wan-Animate the
# Hub page's rounded sizes (82.3 GB in all).
GROUPS = {
    "animate_anyone": Group(
        "Animate Anyone, the released model (Moore-AnimateAnyone)",
        (
            _animate_anyone_file("denoising_unet.pth", 3_438_374_293),
            _animate_anyone_file("reference_unet.pth", 3_440_000_000, size_is_exact=False),
            _animate_anyone_file("pose_guider.pth", 4_350_000, size_is_exact=False),
            _animate_anyone_file("motion_module.pth", 1_817_900_227),
        ),
        default=True,
    ),
    "sd": Group(
        "Stable Diffusion 1.5 parts the released models build on: VAE, CLIP image encoder, UNet config",
        (
            WeightFile("stabilityai/sd-vae-ft-mse", "config.json", "sd-vae-ft-mse", 547),
            WeightFile(
                "stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors", "sd-vae-ft-mse", 334_643_276
            ),
            WeightFile("lambdalabs/sd-image-variations-diffusers", "image_encoder/config.json", "", 703),
            WeightFile(
                "lambdalabs/sd-image-variations-diffusers", "image_encoder/pytorch_model.bin", "", 1_215_993_967
            ),
            WeightFile("stable-diffusion-v1-5/stable-diffusion-v1-5", "unet/config.json", "stable-diffusion-v1-5", 743),
        ),
        default=True,
    ),
    "dwpose": Group(
        "DWPose skeleton detector (the default pose backend)",
        (
            WeightFile("yzd-v/DWPose", "yolox_l.onnx", "DWPose", 216_746_733),
            WeightFile("yzd-v/DWPose", "dw-ll_ucoco_384.onnx", "DWPose", 134_399_116),
        ),
        default=True,
    ),
    "openpose": Group(
        "OpenPose skeleton detector (an alternative pose backend)",
        (
            WeightFile("lllyasviel/Annotators", "body_pose_model.pth", "openpose", 209_267_595),
            WeightFile("lllyasviel/Annotators", "hand_pose_model.pth", "openpose", 147_341_049),
            WeightFile("lllyasviel/Annotators", "facenet.pth", "openpose", 153_718_792),
        ),
        default=False,
    ),
    "musepose": Group(
        "MusePose, a second released model of the same architecture (optional)",
        (
            _musepose_file("denoising_unet.pth", 3_402_758_813),
            _musepose_file("reference_unet.pth", 3_440_402_647),
            _musepose_file("pose_guider.pth", 3_402_614_286),
            _musepose_file("motion_module.pth", 916_202_377),
        ),
        default=False,
    ),
    "wan_animate": Group(
        "Wan2.2-Animate-14B, the second engine (animate and replace modes; diffusers format, 82.3 GB; a GPU with "
        "24 GB or more, or offloading: see README)",
        (
            _wan_file("model_index.json", 555),
            _wan_file("transformer/config.json", 808),
            _wan_file("transformer/diffusion_pytorch_model.safetensors.index.json", 150_000),
            *[
                _wan_file(f"transformer/diffusion_pytorch_model-{n:05d}-of-00015.safetensors", 4_610_000_000)
                for n in range(1, 16)
            ],  # fmt: skip
            _wan_file("text_encoder/config.json", 850),
            _wan_file("text_encoder/model.safetensors.index.json", 22_500),
            _wan_file("image_encoder/model.safetensors", 1_260_000_000),
            _wan_file("vae/diffusion_pytorch_model.safetensors", 508_000_000),
        ),  # and the text encoder's shards (umt5-xxl, 11.4 GB), named in its index file: see `status`
        default=False,
        snapshot=True,
        size=82_300_000_000,
    ),
}


@dataclass(frozen=True)
class FileStatus:
    group: str
    file: WeightFile
    state: str  # "ok", "present" (size unknown, not checked), "missing" or "wrong size"
    local_size: int | None

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "present")


def status(weights_dir: Path = WEIGHTS_DIR, groups: Sequence[str] | None = None) -> list[FileStatus]:
    """What is on disk for each expected file (all groups, or `groups`), judged by size; reads no file's content."""
    result = []
    for name in _check_groups(list(groups or GROUPS)):
        for file in _expected_files(weights_dir, GROUPS[name]):
            target = weights_dir / file.path
            local_size = target.stat().st_size if target.is_file() else None
            if local_size is None:
                state = "missing"
            elif not file.size_is_exact:
                state = "present"
            else:
                state = "ok" if local_size == file.size else "wrong size"
            result.append(FileStatus(name, file, state, local_size))
    return result


def _expected_files(weights_dir: Path, group: Group) -> list[WeightFile]:
    """The group's files, and for a snapshot every shard its downloaded *.index.json files name (their names and
    number are the repository's; sizes are the index's total shared out, so only presence is checked)."""
    files = list(group.files)
    if not group.snapshot:
        return files
    known = {file.filename for file in files}
    folder = weights_dir / files[0].local_dir
    for index in sorted(folder.glob("*/*.safetensors.index.json")):
        try:
            content = json.loads(index.read_text())
            shards = sorted(set(content["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            continue  # a damaged index: from_pretrained names it when the model loads
        share = int(content.get("metadata", {}).get("total_size", 0)) // max(1, len(shards))
        component = index.parent.name
        files += [
            WeightFile(files[0].repo_id, f"{component}/{shard}", files[0].local_dir, share, size_is_exact=False)
            for shard in shards
            if f"{component}/{shard}" not in known
        ]
    return files


def _check_groups(groups: Sequence[str]) -> Sequence[str]:
    unknown = [name for name in groups if name not in GROUPS]
    if unknown:
        raise ValueError(f"Unknown weight group(s): {', '.join(unknown)}. Known groups: {', '.join(GROUPS)}.")
    return groups


def download(
    groups: Sequence[str] | None = None,
    weights_dir: Path = WEIGHTS_DIR,
    progress: Callable[[float, str], None] | None = None,
) -> list[Path]:
    """Fetches the files of `groups` (default: every group marked default) that are not complete on disk, and returns
    the paths of all their files.

    Complete files (right size) are skipped without asking the Hub. Each file is downloaded to a temporary name and
    moved into place when it is complete, so an interrupted run keeps every finished file and the next run resumes
    with the rest; within a run, huggingface_hub retries a dropped connection from where it stopped. Files whose exact
    size we do not know are handed to huggingface_hub, which compares them with the Hub's metadata (etag / sha256)
    and fetches them again only if they differ. `progress(fraction, message)` is called as bytes arrive.
    """
    names = _check_groups(groups or [name for name, group in GROUPS.items() if group.default])
    if constants.HF_HUB_OFFLINE:
        raise WeightsError("Downloads are switched off: HF_HUB_OFFLINE is set. Unset it and run the download again.")
    entries = status(weights_dir, names)
    to_fetch = [entry for entry in entries if entry.state != "ok" and not GROUPS[entry.group].snapshot]
    snapshots = sorted({entry.group for entry in entries if not entry.usable and GROUPS[entry.group].snapshot})
    total_bytes = sum(entry.file.size for entry in to_fetch) + sum(GROUPS[name].total_size for name in snapshots)
    done_bytes = 0
    for number, entry in enumerate(to_fetch, start=1):
        file = entry.file
        message = f"Downloading {file.path} ({_human(file.size)}, file {number} of {len(to_fetch)})"
        logger.info("%s from %s", message, file.repo_id)
        bars = None
        if progress is not None:
            progress(done_bytes / total_bytes, message)
            bars = _progress_bars(progress, message, done_bytes, file.size, total_bytes)
        with _download_errors(file.repo_id, file.path):
            hf_hub_download(
                file.repo_id,
                file.filename,
                local_dir=weights_dir / file.local_dir,
                # A file of the wrong size may still carry the Hub's "complete" record from an earlier download.
                force_download=entry.state == "wrong size",
                tqdm_class=bars,
            )
        local_size = (weights_dir / file.path).stat().st_size
        if file.size_is_exact and local_size != file.size:
            raise WeightsError(
                f"{file.path} has {local_size} bytes after downloading, {file.size} expected: the file on the Hub "
                "has changed. Please report this; the expected sizes live in animate/weights.py."
            )
        done_bytes += file.size
    for name in snapshots:  # whole repositories: huggingface_hub skips the files already complete in the folder
        group = GROUPS[name]
        repo_id, local_dir = group.files[0].repo_id, group.files[0].local_dir
        message = f"Downloading {repo_id} into {local_dir}/ ({_human(group.total_size)})"
        logger.info(message)
        bars = None
        if progress is not None:
            progress(done_bytes / total_bytes, message)
            bars = _progress_bars(progress, message, done_bytes, group.total_size, total_bytes)
        with _download_errors(repo_id, local_dir):
            snapshot_download(repo_id, local_dir=weights_dir / local_dir, tqdm_class=bars)
        lacking = [entry.file.path for entry in status(weights_dir, [name]) if not entry.usable]
        if lacking:
            raise WeightsError(
                f"{repo_id} was downloaded but {', '.join(lacking[:3])} is still missing: the repository has "
                "changed. Please report this; the files this app expects live in animate/weights.py."
            )
        done_bytes += group.total_size
    if progress is not None:
        progress(1.0, f"All files of {', '.join(names)} are present")
    return [weights_dir / entry.file.path for entry in status(weights_dir, names)]


@contextlib.contextmanager
def _download_errors(repo_id: str, what: str):
    """huggingface_hub's errors as WeightsErrors that say what to do."""
    try:
        yield
    # huggingface_hub raises LocalEntryNotFoundError when it cannot reach the Hub at all, and its HTTP client's
    # TransportError when a connection drops mid-file and its own retries have run out.
    except (LocalEntryNotFoundError, httpx2.TransportError) as error:
        raise WeightsError(
            f"Could not download {what} from {repo_id}: the Hugging Face Hub cannot be reached "
            f"({_cause(error)}). Check the internet connection (or HF_ENDPOINT) and run the download again; "
            "files already downloaded are kept."
        ) from error
    except HfHubHTTPError as error:
        raise WeightsError(
            f"The Hub refused {repo_id} ({what}): {_cause(error)}. If the repository needs a login, set HF_TOKEN."
        ) from error
    except OSError as error:  # a full disk, or a transfer that ended short
        raise WeightsError(
            f"Downloading {what} failed: {error}. Run the download again; files already downloaded are kept."
        ) from error


def _progress_bars(
    progress: Callable[[float, str], None], message: str, done_bytes: int, size: int, total_bytes: int
) -> type[hub_tqdm]:
    """A progress-bar class for huggingface_hub that also reports the overall fraction to `progress` as bytes arrive.

    Each bar counts for itself, even when bars are switched off (a Xet download may open two, one for the network and
    one for the disk), and the download's progress (of `size` bytes) is the furthest any of them got.
    """
    furthest = 0

    class ProgressBar(hub_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.bytes_seen = kwargs.get("initial") or 0

        def update(self, n: float | None = 1) -> bool | None:
            nonlocal furthest
            self.bytes_seen += n or 0
            if self.bytes_seen > furthest:
                furthest = min(int(self.bytes_seen), size)
                progress((done_bytes + furthest) / total_bytes, message)
            return super().update(n)

    return ProgressBar


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _human(size: int) -> str:
    for unit, scale, decimals in (("GB", 1e9, 2), ("MB", 1e6, 1), ("kB", 1e3, 1)):
        if size >= scale:
            return f"{size / scale:.{decimals}f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "released", "musepose", "wan-animate", "builtin", "trained" or "custom"
    path: Path
    description: str
    missing: str = ""  # empty when the model is complete; otherwise what is missing, in a sentence

    @property
    def usable(self) -> bool:
        return not self.missing


BUILTIN_DESCRIPTION = (
    "The built-in small model (10M parameters, 128 px): trained here on procedurally drawn puppet characters only, "
    "so it runs offline on a CPU in seconds. Expect a blurry figure in the pose and colours you ask for: it shows "
    "the app working, not Animate Anyone's quality, and real photos look worse than puppets. Keep it at its default "
    "1 step: more steps add speckled noise"
)


def list_models(weights_dir: Path = WEIGHTS_DIR, include_incomplete: bool = False) -> list[ModelEntry]:
    """The models the app can offer: the released Animate Anyone weights, MusePose, Wan2.2-Animate, the built-in
    model, every model trained here and every saved pipeline under weights/custom/, in that order. Incomplete ones
    are left out unless `include_incomplete`, and then say in `missing` what they lack."""
    entries = [
        ModelEntry(
            "animate-anyone",
            "released",
            weights_dir,
            "Animate Anyone, the released weights (Moore-AnimateAnyone), SD 1.5 sized: a GPU is recommended",
            _missing_files(weights_dir, ["animate_anyone", "sd"]),
        ),
        ModelEntry(
            "musepose",
            "musepose",
            weights_dir / "MusePose",
            "MusePose, released weights of the same architecture (TMElyralab), SD 1.5 sized: a GPU is recommended",
            _missing_files(weights_dir, ["musepose", "sd"]),
        ),
        ModelEntry(
            "wan-animate",
            "wan-animate",
            weights_dir / WAN_DIR,
            "Wan2.2-Animate-14B (Wan-AI), the second engine: animate the character in a new video, or replace the "
            "driving video's person with it. 14B parameters: a GPU with 24 GB or more (offloading: see README)",
            _missing_files(weights_dir, ["wan_animate"]),
        ),
        _pipeline_folder("tiny", "builtin", weights_dir / "tiny", BUILTIN_DESCRIPTION),
    ]
    trained_dir = weights_dir / "trained"
    if trained_dir.is_dir():
        for folder in sorted(path for path in trained_dir.iterdir() if path.is_dir()):
            description = f"Trained in this app (weights/trained/{folder.name})"
            entries.append(_pipeline_folder(f"trained/{folder.name}", "trained", folder, description))
    custom_dir = weights_dir / "custom"  # saved pipelines from elsewhere, e.g. python -m animate.engines.wan_tiny
    if custom_dir.is_dir():
        for folder in sorted(path for path in custom_dir.iterdir() if path.is_dir()):
            index = folder / "model_index.json"
            wan = index.is_file() and '"WanAnimatePipeline"' in index.read_text()
            description = f"{'A Wan-Animate' if wan else 'An Animate Anyone'} pipeline in weights/custom/{folder.name}"
            entries.append(_pipeline_folder(f"custom/{folder.name}", "wan-animate" if wan else "custom", folder,
                                            description))  # fmt: skip
    return [entry for entry in entries if include_incomplete or entry.usable]


def _missing_files(weights_dir: Path, groups: list[str]) -> str:
    entries = status(weights_dir, groups)
    lacking = [entry for entry in entries if not entry.usable]
    if not lacking:
        return ""
    size = _to_download(entries)
    names = ", ".join(entry.file.path for entry in lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    only = " ".join(sorted({entry.group for entry in lacking}))
    return (
        f"{len(lacking)} file(s) missing or incomplete ({_human(size)}): {names}. "
        f"Download them with `python -m animate.weights download --only {only}` or the download button."
    )


def _to_download(entries: list[FileStatus]) -> int:
    """Bytes still to fetch for these status entries. A snapshot group counts the files not named yet too (shards
    listed by an index that is not downloaded yet): its whole size less what is there."""
    size = sum(entry.file.size for entry in entries if not entry.usable and not GROUPS[entry.group].snapshot)
    for name in {entry.group for entry in entries if not entry.usable and GROUPS[entry.group].snapshot}:
        mine = [entry for entry in entries if entry.group == name]
        present = sum(entry.file.size for entry in mine if entry.usable)
        lacking = sum(entry.file.size for entry in mine if not entry.usable)
        size += max(GROUPS[name].total_size - present, lacking)
    return size


def _pipeline_folder(name: str, kind: str, folder: Path, description: str) -> ModelEntry:
    missing = "" if (folder / "model_index.json").is_file() else f"{folder} has no model_index.json."
    return ModelEntry(name, kind, folder, description, missing)


def _print_status(weights_dir: Path) -> None:
    print(f"Weights folder: {weights_dir}\n")
    entries = status(weights_dir)
    for name, group in GROUPS.items():
        mine = [entry for entry in entries if entry.group == name]
        lacking = _to_download(mine)
        summary = f"{sum(entry.usable for entry in mine)} of {len(mine)} present"
        if lacking:
            summary += f", {_human(lacking)} to download"
        print(f"{name}: {group.purpose}  [{summary}]")
        for entry in mine:
            size = _human(entry.file.size) if entry.file.size_is_exact else f"~{_human(entry.file.size)}"
            state = entry.state
            if state == "wrong size":
                state += f" ({entry.local_size} bytes, expected {entry.file.size})"
            print(f"  {state:<10}  {size:>9}  {entry.file.path:<50}  {entry.file.repo_id}")
        print()
    print("Models:")
    for model in list_models(weights_dir, include_incomplete=True):
        print(f"  {model.name:<16} {'ready' if model.usable else 'incomplete: ' + model.missing}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animate.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="default: %(default)s")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="list expected files: present, missing, and their sizes")
    fetch = commands.add_parser("download", help="fetch missing files from the Hugging Face Hub")
    defaults = " ".join(name for name, group in GROUPS.items() if group.default)
    fetch.add_argument(
        "--only", nargs="+", choices=list(GROUPS), metavar="GROUP", help=f"{', '.join(GROUPS)} (default: {defaults})"
    )
    args = parser.parse_args(argv)

    if args.command == "status":
        _print_status(args.weights_dir)
        return 0
    printed: set[str] = set()

    def print_new_messages(fraction: float, message: str) -> None:
        if message not in printed:
            printed.add(message)
            print(message, flush=True)

    try:
        paths = download(args.only, args.weights_dir, progress=print_new_messages)
    except WeightsError as error:
        print(f"error: {error}")
        return 1
    print(f"Done: {len(paths)} files present under {args.weights_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
