"""Cog's server entry point, `python -m cog.server.http`: here it starts cogvisor (see `http`)."""
