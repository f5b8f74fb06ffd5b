"""incident-monitor: early warning of hijacked brokerage accounts from Japanese social media."""

__version__ = "0.1.0"
