"""Studies, members and roles, the sample schema, samples and the activity log."""
