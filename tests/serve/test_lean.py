"""serve/ must stay deployable on a Jetson without the training stack."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.serve.conftest import ROOT

FORBIDDEN = ("torch", "transformers", "peft", "trl", "bitsandbytes", "train", "export", "dspy", "litellm")


def test_server_and_client_import_without_training_stack(proto_stubs):
    code = (
        "import sys, json\n"
        "import serve.server, serve.client, serve.__main__\n"
        "from serve.server import EdgeServer\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)))\n" % (FORBIDDEN,)
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
