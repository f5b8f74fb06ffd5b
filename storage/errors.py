"""Errors of the storage layer (it imports nothing from monitor/; monitor maps these to its own tree)."""


class StorageError(Exception):
    """The database cannot be reached or used; the message is one line naming the fix."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())
