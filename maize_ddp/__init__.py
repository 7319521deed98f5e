"""maize_ddp: distributed, memory-efficient sequence-to-expression training for plant genomes."""
__version__ = "0.1.0"


def __getattr__(name):
    # `from maize_ddp import Run` without importing torch for every submodule's import
    if name == "Run":
        from maize_ddp.run import Run

        return Run
    raise AttributeError(f"module 'maize_ddp' has no attribute {name!r}")
