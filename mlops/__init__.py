"""mlops: GitOps MLOps. The repository is the platform's state; this package validates and applies it."""

__version__ = "0.1.0"
