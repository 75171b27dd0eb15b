"""st-azure: an stcore backend that keeps the repository in an Azure Blob Storage container."""

__version__ = "0.1.0"
