"""agora-stt-async: an asyncio SDK for Agora Real-Time STT."""

from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._version import __version__

__all__ = ["AgentStatus", "ApiGeneration", "LegacyTaskStatus", "__version__"]
