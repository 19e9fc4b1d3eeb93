"""lesion-studio: paint, sample and synthesize lesions in medical images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lesion-studio")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
