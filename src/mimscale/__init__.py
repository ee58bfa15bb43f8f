"""mimscale: masked-image-modeling (SimMIM) data-scaling studies."""

__version__ = "0.1.0"
