"""Which model answers questions: one file, ``<data-dir>/assistant.toml``, or a model spec.

The file names the provider, the model, the endpoint and the *name* of the environment
variable holding the API key — never the key itself, so the file can be shown, diffed and
backed up. A model spec (``openai-compatible:http://localhost:11434/v1:qwen2.5-coder``,
``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``) says the same on one line, for
``steward eval assistant --model`` and ``steward assistant configure --model``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from steward.errors import StewardError

CONFIG_FILE: Final = "assistant.toml"
PROVIDERS: Final = ("openai-compatible", "openai", "anthropic")
#: How the model returns its query: an output tool (default), the provider's JSON-schema
#: mode, or JSON asked for in the prompt (for local models that cannot call tools).
OUTPUT_MODES: Final = ("tool", "native", "prompted")
#: API-key variables used when the file names none.
DEFAULT_KEY_ENV: Final = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

HOW_TO_CONFIGURE: Final = (
    "configure one with 'steward assistant configure --model SPEC [--api-key-env VAR]' on the "
    "server's data directory, e.g. --model "
    "openai-compatible:http://localhost:11434/v1:qwen2.5-coder (Ollama, vLLM, LM Studio), "
    "--model openai:gpt-4o-mini --api-key-env OPENAI_API_KEY, or --model "
    "anthropic:claude-sonnet-4-5 --api-key-env ANTHROPIC_API_KEY; or write "
    f"<data-dir>/{CONFIG_FILE} (see docs/assistant.md). 'steward query' works without a model"
)


class AssistantConfigError(StewardError):
    """The model configuration is missing or wrong; the message says how to fix it."""

    exit_code = 78


class AssistantNotConfigured(AssistantConfigError):
    """No model is configured: ``ask`` cannot work, ``query`` still does."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    provider: str
    model: str
    base_url: str | None = None
    #: Name of the environment variable with the API key (the key is never stored).
    api_key_env: str | None = None
    output: str = "tool"

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.model}{where}"

    def to_toml(self) -> str:
        lines = ["# Infra Assistant model (docs/assistant.md). The API key is read from the",
                 "# environment variable named by api_key_env; it is never stored here.",
                 f"provider = {_quote(self.provider)}", f"model = {_quote(self.model)}"]
        if self.base_url:
            lines.append(f"base_url = {_quote(self.base_url)}")
        if self.api_key_env:
            lines.append(f"api_key_env = {_quote(self.api_key_env)}")
        if self.output != "tool":
            lines.append(f"output = {_quote(self.output)}")
        return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_spec(spec: str, *, api_key_env: str | None = None, output: str = "tool"
               ) -> ModelConfig:
    """``provider:model`` or ``openai-compatible:BASE_URL:model`` as a :class:`ModelConfig`."""
    provider, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise AssistantConfigError(f"model spec {spec!r}: expected PROVIDER:MODEL or "
                                   f"openai-compatible:BASE_URL:MODEL; providers: "
                                   f"{', '.join(PROVIDERS)}")
    if provider == "openai-compatible":
        base_url, sep, model = rest.rpartition(":")
        # A numeric "model" is the URL's port: the model name is missing.
        if not sep or not base_url.startswith(("http://", "https://")) or not model \
                or model.startswith("//") or model.isdigit():
            raise AssistantConfigError(
                f"model spec {spec!r}: expected openai-compatible:BASE_URL:MODEL, e.g. "
                "openai-compatible:http://localhost:11434/v1:qwen2.5-coder")
        return _checked(ModelConfig(provider, model, base_url, api_key_env, output), spec)
    return _checked(ModelConfig(provider, rest, None, api_key_env, output), spec)


def _checked(config: ModelConfig, where: str) -> ModelConfig:
    if config.provider not in PROVIDERS:
        raise AssistantConfigError(f"{where}: unknown provider {config.provider!r}; valid: "
                                   f"{', '.join(PROVIDERS)}")
    if config.provider == "openai-compatible" and not config.base_url:
        raise AssistantConfigError(f"{where}: provider openai-compatible needs base_url "
                                   "(e.g. http://localhost:11434/v1)")
    if config.output not in OUTPUT_MODES:
        raise AssistantConfigError(f"{where}: output must be one of {', '.join(OUTPUT_MODES)}, "
                                   f"not {config.output!r}")
    if config.api_key_env is not None and not config.api_key_env.replace("_", "").isalnum():
        raise AssistantConfigError(f"{where}: api_key_env must name an environment variable "
                                   f"(letters, digits, _), not {config.api_key_env!r}")
    return config


def load_config(data_dir: Path) -> ModelConfig:
    """The data directory's model, or :class:`AssistantNotConfigured` saying how to add one."""
    path = data_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AssistantNotConfigured(f"no model is configured for the Infra Assistant "
                                     f"({path} does not exist): {HOW_TO_CONFIGURE}") from None
    except OSError as exc:
        raise AssistantConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssistantConfigError(f"{path}: not valid TOML: {exc}") from None
    known = {"provider", "model", "base_url", "api_key_env", "output"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise AssistantConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: "
                                   f"{', '.join(sorted(known))} (the API key itself is never "
                                   "stored: name its environment variable in api_key_env)")
    for key in known:
        if key in document and not isinstance(document[key], str):
            raise AssistantConfigError(f"{path}: {key} must be a string")
    if "provider" not in document or "model" not in document:
        raise AssistantConfigError(f"{path}: 'provider' and 'model' are required; "
                                   f"{HOW_TO_CONFIGURE}")
    return _checked(ModelConfig(document["provider"], document["model"],
                                document.get("base_url"), document.get("api_key_env"),
                                document.get("output", "tool")),
                    str(path))


def save_config(data_dir: Path, config: ModelConfig) -> Path:
    path = data_dir / CONFIG_FILE
    if not data_dir.is_dir():
        raise AssistantConfigError(f"{data_dir} is not a directory: pass the server's data "
                                   "directory with --data-dir (made by 'steward init')")
    try:
        path.write_text(config.to_toml(), encoding="utf-8")
    except OSError as exc:
        raise AssistantConfigError(f"cannot write {path}: {exc.strerror}") from None
    return path


def build_model(config: ModelConfig) -> Any:
    """The pydantic-ai model for a configuration; the key comes from the environment now."""
    env = config.api_key_env or DEFAULT_KEY_ENV.get(config.provider)
    key = os.environ.get(env) if env else None
    if config.provider in ("openai", "anthropic") and not key:
        raise AssistantConfigError(f"model {config.describe()}: set the API key in the "
                                   f"environment variable {env} (it is never stored in "
                                   f"{CONFIG_FILE})")
    if config.provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(config.model, provider=AnthropicProvider(api_key=key))
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if config.provider == "openai":
        return OpenAIChatModel(config.model, provider=OpenAIProvider(api_key=key))
    # Local servers (Ollama, vLLM, LM Studio) want some key; they ignore its value.
    return OpenAIChatModel(config.model, provider=OpenAIProvider(
        base_url=config.base_url, api_key=key or "not-needed"))


#: Where an embedding application (or a test) puts a ready pydantic-ai model
#: (``AppState.extras``); the REST route and the MCP ``ask`` tool both look there first.
MODEL_EXTRA: Final = "assistant_model"


def resolve_model(data_dir: Path, supplied: Any | None = None) -> tuple[Any, str]:
    """The model to answer with and its output mode: one the embedding application supplies
    (a test's scripted model), else the data directory's, read now (so configuring needs no
    restart); :class:`AssistantConfigError` says how to configure one."""
    if supplied is not None:
        return supplied, "tool"
    config = load_config(data_dir)
    return build_model(config), config.output
