"""Capture and analysis code. Run outputs go in captures/<run-id>/ and are not committed."""
