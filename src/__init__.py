"""Studybase: studies, samples and sample files for research teams."""
