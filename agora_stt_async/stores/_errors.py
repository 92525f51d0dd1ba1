"""The errors of the stores package (re-exported from ``agora_stt_async.stores``)."""

from __future__ import annotations

from agora_stt_async._errors import SessionError

__all__ = ["StoreConflictError", "StoreError"]


class StoreError(SessionError):
    """The store could not keep a record: unreadable, closed by another party, or
    written by a newer version of this package."""


class StoreConflictError(StoreError):
    """An optimistic write found another version than expected.

    Someone else changed (or deleted) the record since it was read: reload it with
    ``get()`` and apply your change to the fresh copy.

    Attributes:
        key: the record's key.
        expected: the version the writer expected.
        actual: the version found, or ``None`` if the record does not exist.
    """

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        found = "no record" if actual is None else f"version {actual}"
        super().__init__(
            f"task record {key!r} changed concurrently: expected version {expected},"
            f" found {found}; reload it and apply the change again"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.expected, self.actual))
