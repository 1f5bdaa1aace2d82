"""The loss curve of a finished job (runs/RUN/openai_ft_loss.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LOSS_PLOT = "openai_ft_loss.png"


def plot_losses(path: Path, metrics: list[dict[str, Any]]) -> None:
    """Training/validation loss per step (matplotlib Agg), when there are metrics and matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        return
    if not metrics:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetune.rundir import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("train_loss", "valid_loss", "full_valid_loss"):
        points = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=key, marker="." if key != "train_loss" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("OpenAI fine-tune")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
