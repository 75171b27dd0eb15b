"""st-gcs: the Google Cloud Storage backend for stcore."""

__version__ = "0.1.0"
