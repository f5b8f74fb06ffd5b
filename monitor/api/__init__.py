"""The read-only HTTP API and dashboard (`incident-monitor serve`): FastAPI app in :mod:`monitor.api.app`,
settings in :mod:`monitor.api.config` (importable without the ``api`` extra)."""
