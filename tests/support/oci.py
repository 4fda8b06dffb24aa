"""The OCI image builder lives in the package (``make demo`` uses it too)."""

from worker.cli.demo.oci import Blob, Image, Index, layer, write_layout

__all__ = ["Blob", "Image", "Index", "layer", "write_layout"]
