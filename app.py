"""Animate Anyone in the browser: `python app.py`, then open the address it prints.

This file assembles the tabs, each a module of `ui/`: Animate (character image + driving video -> preview the
skeleton -> animate), Models (what is in weights/ and downloading the rest) and Training (videos -> dataset -> stage 1
and 2 as background processes -> a new model in the list). The work itself is done by `pose` and `animate`.

Importing it loads no weights and starts no server. Settings come from the environment (see ui/common.py and the
README: folders, queue length, and the limits of one job) and Gradio's own variables (GRADIO_SERVER_NAME,
GRADIO_SERVER_PORT, ...).
"""

from __future__ import annotations

import logging

import gradio as gr

from ui import animate_tab, models_tab, training_tab
from ui.common import KEEP_HOURS, LIMITS, MAX_QUEUE, jobs, loaded_model  # noqa: F401 - loaded_model: for tests


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Animate Anyone", delete_cache=(3600, int(KEEP_HOURS * 3600))) as demo:
        gr.Markdown(
            "# Animate Anyone\nAnimate a character image with the motion of a driving video: upload both, "
            "check the skeleton, then animate."
        )
        with gr.Tabs():
            with gr.Tab("Animate", id="animate") as tab:
                animate_tab.build(demo, tab)
            with gr.Tab("Models", id="models"):
                models_tab.build(demo)
            with gr.Tab("Training", id="training"):
                training_tab.build(demo)
    return demo


demo = build_demo()


def launch(**options) -> tuple:
    """Starts the server: a bounded queue, and Gradio's own upload limit. `options` go to `Blocks.launch`; host and
    port come from GRADIO_SERVER_NAME and GRADIO_SERVER_PORT unless given."""
    jobs.clean_up()
    queued = demo.queue(max_size=MAX_QUEUE + 16, default_concurrency_limit=2)  # room for the quick listeners
    return queued.launch(max_file_size=f"{LIMITS.max_upload_mb:g}mb", **options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    launch()
