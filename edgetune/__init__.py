"""edgetune's shared core: the task spec and its output contract, typed configs, the run directory and the
embedded default model. Light on purpose: every stage (serve/ included) imports it."""

__version__ = "0.1.0"
