"""The model layer: one small async chat interface over every provider, with a call cache,
one retry layer, per-role concurrency limits, usage accounting and structured output."""

from chunky.models.accounting import GLOBAL_USAGE, UsageTracker
from chunky.models.base import ModelSpec, Provider, ProviderError
from chunky.models.cache import CallCache, default_cache
from chunky.models.model import Model, get_model
from chunky.models.registry import PROVIDERS, parse_spec
from chunky.models.retry import RetryPolicy
from chunky.models.types import ChatRequest, ChatResult, GenerateConfig, Message, Usage

__all__ = [
    "CallCache",
    "ChatRequest",
    "ChatResult",
    "GLOBAL_USAGE",
    "GenerateConfig",
    "Message",
    "Model",
    "ModelSpec",
    "PROVIDERS",
    "Provider",
    "ProviderError",
    "RetryPolicy",
    "Usage",
    "UsageTracker",
    "default_cache",
    "get_model",
    "parse_spec",
]
