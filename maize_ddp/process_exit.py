"""How a command's process ends: `sys.exit(main())` without the interpreter's last collection.

At exit Python finalizes every object it holds, collecting cycles among the hundreds of
thousands that torch, and torch._dynamo once an optimizer imports it, create at import: 0.4 to
1 s of CPU per process, paid by every rank and every DataLoader worker of every run, while the
OS frees that memory at once anyway. Frozen objects (gc.freeze) are left out of collections, so
freezing them at the very end keeps exit to the objects' own finalizers. Only a process's
entry point calls this: a notebook's interpreter goes on, and its garbage is collected as usual.
"""
from __future__ import annotations

import gc
import sys
from typing import NoReturn


def freeze_garbage_collection(*_) -> None:
    """Leave every object alive now out of all later collections (also a DataLoader worker_init_fn)."""
    gc.freeze()


def exit_process(code: int | None) -> NoReturn:
    """sys.exit(code), the outputs flushed first and the heap frozen (the module doc)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the process was started with that descriptor closed
                stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can reach it
            pass
    freeze_garbage_collection()
    sys.exit(code)
