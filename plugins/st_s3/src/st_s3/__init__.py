"""st-s3: the Amazon S3 (and S3-compatible) backend for stcore."""

__version__ = "0.1.0"
