"""Enumerations shared by the SDK and the emulator: server states and API generations.

Members are spelled as on the wire, so a persisted record or a log line reads the same
as the API's own documentation. Stdlib only.
"""

from __future__ import annotations

import enum
from typing import Final


class AgentStatus(str, enum.Enum):
    """State of a v7 agent (spec §4.3).

    ``code`` is the numeric value the list endpoint's ``state`` filter takes.
    """

    IDLE = "IDLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    RECOVERING = "RECOVERING"
    FAILED = "FAILED"

    @property
    def code(self) -> int:
        """The digit the list endpoint's ``state`` filter uses for this status."""
        return _AGENT_STATUS_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> AgentStatus:
        """The status for a list-filter digit 0..6; ``ValueError`` otherwise."""
        for status, value in _AGENT_STATUS_CODES.items():
            if value == code:
                return status
        raise ValueError(f"agent state code must be 0..6, got {code!r}")

    @property
    def is_terminal(self) -> bool:
        """``True`` for STOPPED and FAILED: the agent will not run again."""
        return self in (AgentStatus.STOPPED, AgentStatus.FAILED)

    def __str__(self) -> str:
        return self.value


_AGENT_STATUS_CODES: Final = {
    AgentStatus.IDLE: 0,
    AgentStatus.STARTING: 1,
    AgentStatus.RUNNING: 2,
    AgentStatus.STOPPING: 3,
    AgentStatus.STOPPED: 4,
    AgentStatus.RECOVERING: 5,
    AgentStatus.FAILED: 6,
}


class LegacyTaskStatus(str, enum.Enum):
    """State of a legacy v5/v6 task (spec §5.3), plus RECONNECTING from the 2024 quickstart."""

    IDLE = "IDLE"
    PREPARING = "PREPARING"
    PREPARED = "PREPARED"
    STARTING = "STARTING"
    CREATED = "CREATED"
    STARTED = "STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    RECONNECTING = "RECONNECTING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILURE_STOP = "FAILURE_STOP"

    @property
    def is_running(self) -> bool:
        """Agora's samples treat STARTED and IN_PROGRESS as running (spec §5.3)."""
        return self in (LegacyTaskStatus.STARTED, LegacyTaskStatus.IN_PROGRESS)

    @property
    def is_terminal(self) -> bool:
        """``True`` for STOPPED and FAILURE_STOP."""
        return self in (LegacyTaskStatus.STOPPED, LegacyTaskStatus.FAILURE_STOP)

    def __str__(self) -> str:
        return self.value


class ApiGeneration(str, enum.Enum):
    """Which API a task runs on: the v7 agents API or the legacy builder-token API."""

    V7 = "v7"
    LEGACY = "legacy"

    def __str__(self) -> str:
        return self.value
