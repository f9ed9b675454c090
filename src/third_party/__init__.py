"""Integrations with outside services, each behind a small interface the modules call."""
