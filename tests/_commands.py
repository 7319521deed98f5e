"""A command run by its main in the test's own process: the code path of `python -m MODULE ARGS`
without an interpreter's start-up (2-5 s with torch), for tests whose outcome does not depend on
which process runs the command (not a lock naming a process, a file size limit, a signal)."""
from __future__ import annotations

import contextlib
import importlib
import io
import signal
import subprocess


def in_process(module: str, *args) -> subprocess.CompletedProcess:
    """The exit code and the captured stdout and stderr, as subprocess.run would give them; the
    signal handlers a main installs are put back."""
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return subprocess.CompletedProcess([module, *map(str, args)], rc, out.getvalue(), err.getvalue())
