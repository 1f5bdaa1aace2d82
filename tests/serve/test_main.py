"""``python -m serve`` (serve/__main__.py): what it says and exits with before anything is served."""

from __future__ import annotations

from serve.__main__ import main


def test_a_missing_embedded_model_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("edgetune.embedded.MODELS_DIR", tmp_path / "no-models")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what serve would set, undone after the test
    monkeypatch.delenv("EDGETUNE_TOKEN", raising=False)
    assert main(["--run", "no-bundle", "--runs-dir", str(tmp_path), "--port", "0", "--log-level", "error"]) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert str(tmp_path / "no-models") in line and "run `make setup` to fetch" in line


def test_a_token_on_the_command_line_is_warned_about(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("edgetune.embedded.MODELS_DIR", tmp_path / "no-models")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert main(["--runs-dir", str(tmp_path), "--token", "s3cret", "--log-level", "error"]) == 1
    assert "warning: --token is visible to every user in ps" in capsys.readouterr().err
