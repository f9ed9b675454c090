"""Upload, parse, validate, import and download sample files."""
