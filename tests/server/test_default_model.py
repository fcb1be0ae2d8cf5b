"""With no model given, `serve`, `run` and the evaluations load the embedded KAME-tiny."""

from __future__ import annotations

import pytest

from kamevoice.cli import main
from kamevoice.tiny.defaults import tiny_checkpoint


@pytest.fixture
def no_model_configured(monkeypatch):
    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    monkeypatch.delenv("KAMEVOICE_CONFIG", raising=False)


@pytest.fixture
def loaded(monkeypatch):
    """What `load_frontend` was asked for; each call stops the command before it does more."""
    sources: list[str] = []

    def record(source, **kwargs):
        sources.append(str(source))
        raise SystemExit(0)

    monkeypatch.setattr("kamevoice.frontend.loading.load_frontend", record)
    return sources


@pytest.mark.parametrize(
    "argv", [["serve"], ["serve", "--port", "0", "--max-sessions", "2"], ["run", "q.wav"]]
)
def test_no_checkpoint_means_the_embedded_tiny_model(
    argv, no_model_configured, loaded, tmp_path, monkeypatch
):
    import numpy as np
    import soundfile as sf

    monkeypatch.chdir(tmp_path)
    sf.write("q.wav", np.zeros(8000, dtype=np.float32), 16000)
    with pytest.raises(SystemExit):
        main(argv)
    assert loaded == [str(tiny_checkpoint())]


def test_serve_uses_the_configured_checkpoint(no_model_configured, loaded, monkeypatch, tmp_path):
    """A checkpoint from the environment is what `serve` loads (flags win over it)."""
    from kamevoice.startup import settings_from_args

    monkeypatch.setenv("KAMEVOICE_FRONTEND__CHECKPOINT", str(tmp_path / "from-env"))
    with pytest.raises(SystemExit):
        main(["serve"])
    with pytest.raises(SystemExit):
        main(["serve", "--checkpoint", str(tmp_path / "from-flag")])
    assert loaded == [str(tmp_path / "from-env"), str(tmp_path / "from-flag")]
    settings = settings_from_args(
        {"host": "0.0.0.0", "port": 9, "max_sessions": 3, "token": "t", "log_dir": None}
    )
    assert (settings.server.host, settings.server.port, settings.server.max_sessions) == ("0.0.0.0", 9, 3)
    assert settings.server.token.get_secret_value() == "t"


def test_a_missing_embedded_model_is_named_with_the_way_out(
    no_model_configured, tmp_path, monkeypatch, capsys
):
    import kamevoice.tiny.defaults as assets

    monkeypatch.setattr(assets, "TINY_CHECKPOINT", tmp_path / "gone")
    assert main(["run", str(tmp_path / "q.wav")]) == 1
    err = capsys.readouterr().err
    assert "embedded KAME-tiny checkpoint is missing" in err and "kamevoice tiny build" in err


def test_tiny_back_end_listens_with_whisper_finals_when_left_on_auto():
    from kamevoice.backend.stt import whisper_available
    from kamevoice.config import Settings
    from kamevoice.tiny.defaults import tiny_back_end, tiny_knowledge_base
    from kamevoice.tiny.knowledge import NO_MATCH_REPLY

    auto = tiny_back_end(Settings())
    assert str(auto.llm.knowledge.path) == str(tiny_knowledge_base())
    assert auto.llm.knowledge.fallback_reply == NO_MATCH_REPLY
    if whisper_available(auto.stt):
        assert (auto.stt.provider, auto.stt.whisper.partials) == ("whisper", False)
    base = Settings()
    chosen = base.model_copy(update={"stt": base.stt.model_copy(update={"provider": "paired"})})
    kept = tiny_back_end(chosen)
    assert (kept.stt.provider, kept.stt.whisper.partials) == ("paired", True)  # a choice is kept
    assert Settings().stt.provider == "auto"  # the caller's settings are not changed


def test_the_configured_llm_provider_is_kept_with_the_embedded_model():
    """An LLM chosen in the settings answers; the embedded default only brings its catalogue."""
    from kamevoice.config import Settings
    from kamevoice.startup import resolve
    from kamevoice.tiny.defaults import tiny_knowledge_base

    chosen = resolve(Settings(llm={"provider": "openai"}))
    assert chosen.llm.provider == "openai"
    default = resolve(Settings())
    assert (default.llm.provider, str(default.llm.knowledge.path)) == (
        "knowledge",
        str(tiny_knowledge_base()),
    )


def test_embedded_tiny_runs_on_one_torch_thread_unless_told():
    from kamevoice.config import Settings
    from kamevoice.frontend.device import apply_cpu_threads
    from kamevoice.tiny.defaults import embedded_defaults, tiny_frontend

    tiny = embedded_defaults(Settings())
    assert tiny.frontend.cpu_threads == 1
    assert tiny.frontend.checkpoint == str(tiny_checkpoint())
    given = embedded_defaults(Settings(frontend={"checkpoint": "some/checkpoint"}))
    assert given.frontend.cpu_threads == 0  # another model: torch's default
    base = Settings()
    chosen = base.model_copy(update={"frontend": base.frontend.model_copy(update={"cpu_threads": 2})})
    assert tiny_frontend(chosen).frontend.cpu_threads == 2
    import torch

    before = torch.get_num_threads()
    try:
        apply_cpu_threads(1)
        assert torch.get_num_threads() == 1
        apply_cpu_threads(0)  # 0 leaves it as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
