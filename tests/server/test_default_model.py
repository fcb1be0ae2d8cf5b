"""With no model given, `serve` and `run` stop with NO_DEFAULT_MODEL: never a silently random model."""

from __future__ import annotations

import pytest

from kamevoice.cli import main
from kamevoice.commands import NO_DEFAULT_MODEL


@pytest.fixture
def no_model_configured(monkeypatch):
    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    monkeypatch.delenv("KAMEVOICE_CONFIG", raising=False)


@pytest.mark.parametrize(
    "argv", [["serve"], ["serve", "--port", "0", "--max-sessions", "2"], ["run", "question.wav"]]
)
def test_no_checkpoint_means_no_default_model_error(argv, no_model_configured, capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded although none was given")

    monkeypatch.setattr("kamevoice.frontend.loading.load_frontend", no_loading)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert NO_DEFAULT_MODEL in err


def test_serve_uses_the_configured_checkpoint(no_model_configured, monkeypatch, tmp_path):
    """A checkpoint from the environment is what `serve` loads (flags win over it)."""
    from kamevoice.server import serve

    loaded = []

    def fake_load(source, **kwargs):
        loaded.append(str(source))
        raise SystemExit(0)  # stop before serving

    monkeypatch.setenv("KAMEVOICE_FRONTEND__CHECKPOINT", str(tmp_path / "from-env"))
    monkeypatch.setattr("kamevoice.frontend.loading.load_frontend", fake_load)
    with pytest.raises(SystemExit):
        main(["serve"])
    with pytest.raises(SystemExit):
        main(["serve", "--checkpoint", str(tmp_path / "from-flag")])
    assert loaded == [str(tmp_path / "from-env"), str(tmp_path / "from-flag")]
    settings = serve.settings_from_args(
        type("A", (), {"host": "0.0.0.0", "port": 9, "max_sessions": 3, "token": "t", "log_dir": None})()
    )
    assert (settings.server.host, settings.server.port, settings.server.max_sessions) == ("0.0.0.0", 9, 3)
    assert settings.server.token.get_secret_value() == "t"
