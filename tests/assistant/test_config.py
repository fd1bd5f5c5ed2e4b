"""The model configuration: one file naming provider, model, endpoint and key *variable*."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward.assistant.config import (
    CONFIG_FILE,
    AssistantConfigError,
    AssistantNotConfigured,
    ModelConfig,
    build_model,
    load_config,
    parse_spec,
    save_config,
)
from steward.cli.main import run


def test_specs() -> None:
    assert parse_spec("openai-compatible:http://localhost:11434/v1:qwen2.5-coder") == \
        ModelConfig("openai-compatible", "qwen2.5-coder", "http://localhost:11434/v1")
    assert parse_spec("openai:gpt-4o-mini", api_key_env="MY_KEY") == \
        ModelConfig("openai", "gpt-4o-mini", None, "MY_KEY")
    assert parse_spec("anthropic:claude-sonnet-4-5").provider == "anthropic"
    for bad, words in (("gpt-4o", "expected PROVIDER:MODEL"),
                       ("ollama:qwen", "unknown provider 'ollama'"),
                       ("openai-compatible:qwen", "expected openai-compatible:BASE_URL:MODEL"),
                       ("openai-compatible:http://host:8000", "BASE_URL:MODEL")):
        with pytest.raises(AssistantConfigError, match=words):
            parse_spec(bad)
    with pytest.raises(AssistantConfigError, match="api_key_env must name"):
        parse_spec("openai:gpt-4o", api_key_env="sk-not a variable")


@given(st.sampled_from(["openai-compatible", "openai", "anthropic"]),
       st.sampled_from(["tool", "native", "prompted"]),
       st.text("abcdefghijklmnopqrstuvwxyz0123456789.-:/\"\\", min_size=1, max_size=30),
       st.one_of(st.none(), st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True)))
def test_file_round_trip(provider: str, output: str, model: str, key_env: str | None
                         ) -> None:
    import tempfile

    config = ModelConfig(provider, model, "http://127.0.0.1:8000/v1"
                         if provider == "openai-compatible" else None, key_env, output)
    with tempfile.TemporaryDirectory() as tmp:
        save_config(Path(tmp), config)
        assert load_config(Path(tmp)) == config


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(AssistantNotConfigured) as caught:
        load_config(tmp_path)
    assert "steward assistant configure --model" in str(caught.value)
    assert "'steward query' works without a model" in str(caught.value)
    path = tmp_path / CONFIG_FILE
    path.write_text('provider = "openai"\nmodel = "gpt-4o"\napi_key = "sk-123"\n')
    with pytest.raises(AssistantConfigError, match=r"unknown key.*api_key.*never stored"):
        load_config(tmp_path)
    path.write_text('provider = "openai"\n')
    with pytest.raises(AssistantConfigError, match="'provider' and 'model' are required"):
        load_config(tmp_path)
    path.write_text('provider = "openai\n')
    with pytest.raises(AssistantConfigError, match="not valid TOML"):
        load_config(tmp_path)
    path.write_text('provider = "openai"\nmodel = "m"\noutput = "json"\n')
    with pytest.raises(AssistantConfigError, match="output must be one of tool, native, prompt"):
        load_config(tmp_path)
    path.write_text('provider = "openai-compatible"\nmodel = "m"\n')
    with pytest.raises(AssistantConfigError, match="needs base_url"):
        load_config(tmp_path)


def test_keys_come_from_the_environment_only(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.openai import OpenAIChatModel

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AssistantConfigError, match="environment variable OPENAI_API_KEY"):
        build_model(parse_spec("openai:gpt-4o-mini"))
    monkeypatch.setenv("STEWARD_TEST_KEY", "sk-test-value")
    assert isinstance(build_model(parse_spec("openai:gpt-4o-mini",
                                             api_key_env="STEWARD_TEST_KEY")), OpenAIChatModel)
    assert isinstance(build_model(parse_spec("anthropic:claude-sonnet-4-5",
                                             api_key_env="STEWARD_TEST_KEY")), AnthropicModel)
    local = build_model(parse_spec("openai-compatible:http://127.0.0.1:11434/v1:qwen2.5-coder"))
    assert isinstance(local, OpenAIChatModel)
    assert local.model_name == "qwen2.5-coder"
    # The CLI writes the variable's name, never a key.
    assert run(["assistant", "configure", "--data-dir", str(tmp_path), "--model",
                "openai:gpt-4o-mini", "--api-key-env", "STEWARD_TEST_KEY"]) == 0
    text = (tmp_path / CONFIG_FILE).read_text()
    assert 'api_key_env = "STEWARD_TEST_KEY"' in text
    assert "sk-test-value" not in text
    assert run(["assistant", "configure", "--data-dir", str(tmp_path), "--model", "x"]) != 0
    assert run(["assistant", "configure", "--data-dir", str(tmp_path / "none"), "--model",
                "openai:gpt-4o"]) != 0
