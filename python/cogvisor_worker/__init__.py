"""The cogvisor worker: runs a Cog model inside its Python environment, speaking the cogvisor protocol.

Standard library only. Run as ``python3 -m cogvisor_worker`` with the model directory as working directory.
"""

__all__: list[str] = []
