"""The Models tab: every model found in the weights folder and what it lacks, every expected weight file with its
state, and downloading the missing groups from the Hugging Face Hub."""

from __future__ import annotations

import gradio as gr

from animate.weights import GROUPS, download, list_models, status
from ui.common import PROGRESS, UI_ONLY, WEIGHTS_DIR, UserError, progress_callback, user_errors


def weights_table():
    """The models (ready or what they lack) and every expected weight file with its state."""
    models = [
        f"- **{model.name}** ({model.kind}): {model.description}. "
        + ("**Ready.**" if model.usable else f"Not ready: {model.missing}")
        for model in list_models(WEIGHTS_DIR, include_incomplete=True)
    ]
    files = [
        [entry.group, entry.file.path, entry.state, _size(entry.file.size), entry.file.repo_id]
        for entry in status(WEIGHTS_DIR)
    ]
    return "\n".join(models), files


@user_errors
def download_weights(groups: list[str], progress=PROGRESS) -> str:
    if not groups:
        raise UserError("Tick at least one group of files to download.")
    paths = download(groups, WEIGHTS_DIR, progress=progress_callback(progress))
    return f"All {len(paths)} files of {', '.join(groups)} are in {WEIGHTS_DIR}."


def _size(size: int) -> str:
    if size >= 1e9:
        return f"{size / 1e9:.2f} GB"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{max(size, 1) / 1e3:.1f} kB"


def build(demo: gr.Blocks) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            models_text = gr.Markdown(label="Models")
            groups = gr.CheckboxGroup(
                [(f"{name}: {group.purpose}", name) for name, group in GROUPS.items()],
                value=[name for name, group in GROUPS.items() if group.default],
                label="Download from the Hugging Face Hub",
            )
            with gr.Row():
                download_button = gr.Button("Download missing files", variant="primary")
                check_button = gr.Button("Check again")
            download_status = gr.Markdown(label="Download status", min_height=40)
        with gr.Column(scale=6):
            files = gr.Dataframe(
                headers=["group", "file", "state", "size", "source"],
                label="Files in the weights folder",
                column_widths=["14%", "38%", "11%", "11%", "26%"],
                interactive=False,
                wrap=True,
            )

    downloading = download_button.click(
        download_weights,
        groups,
        download_status,
        api_name="download_weights",
        concurrency_id="download",
        concurrency_limit=1,
    )
    check_button.click(weights_table, None, [models_text, files], api_name="weights_status")
    # After a download, finished or not: what is on disk now (an interrupted download keeps its finished files).
    downloading.then(weights_table, None, [models_text, files], api_name="weights_after_download", **UI_ONLY)
    demo.load(weights_table, None, [models_text, files], api_name="load_models", **UI_ONLY)
