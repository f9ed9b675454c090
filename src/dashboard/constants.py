"""Windows and list lengths of the dashboard."""

# `?days=` of the time series: at least one day, at most a year.
MIN_DAYS = 1
MAX_DAYS = 365
SUMMARY_DEFAULT_DAYS = 30
STUDY_DEFAULT_DAYS = 84  # a study's series is per week: the 12 weeks up to the current one

RECENT_ACTIVITY_LIMIT = 20
TOP_STUDIES_LIMIT = 5
RECENT_UPLOADS_LIMIT = 10
