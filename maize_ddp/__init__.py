"""maize_ddp: distributed, memory-efficient sequence-to-expression training for plant genomes."""
__version__ = "0.1.0"
