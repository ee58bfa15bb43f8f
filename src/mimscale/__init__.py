"""mimscale: masked-image-modeling (SimMIM) data-scaling studies."""

# The one place the version is set (pyproject.toml reads it). Raise it whenever a file format changes (run
# directory, checkpoint, config schema, results or analysis JSON) and say what changed in CHANGELOG.md.
__version__ = "0.4.0"
