"""The `musegpt` command line: thin wrappers over the Python API."""
