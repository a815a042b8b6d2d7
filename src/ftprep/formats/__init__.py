"""Input and output formats: ``readers`` (any container and record shape -> Dataset + rejects),
``records`` (one record -> canonical messages), ``writers`` (Dataset -> trainer files)."""
