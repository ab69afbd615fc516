"""Fails while the module is imported, before any Predictor exists."""

raise ImportError("import_error model: this module refuses to load")
