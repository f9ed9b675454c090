"""The dashboard: read-only figures over the studies a caller may read."""
