"""Errors of the dashboard: it has none of its own, since it only reads what the caller may read.
Its routes answer what signing in and the study's access answer: a study's figures are a 404 to a
non-member, exactly as the study itself is, so they reveal nothing the study route would not."""

from src.study.exceptions import IN_STUDY, TOKEN_ERRORS

SUMMARY_ERRORS = TOKEN_ERRORS
STUDY_DASHBOARD_ERRORS = IN_STUDY
