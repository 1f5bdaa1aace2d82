"""edgetune export stage: merge the LoRA adapter into the full-precision base, convert it to GGUF with llama.cpp's own
converter, quantize, verify every file against the trained model and the task, and bundle the chosen quant.

    python -m export --run default            # what `make export` runs
    python -m export --help                   # every option

The stage function is ``export.bundle.run(config) -> Path``; its config is ``export.config.ExportConfig``.
"""


class ExportError(RuntimeError):
    """The export cannot go on; the message says what is wrong and how to fix it."""
