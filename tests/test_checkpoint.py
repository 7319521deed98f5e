"""One checkpoint schema for best.pt and last.pt, numbered: older files load, newer ones are refused in one line."""
import pytest
import torch

from maize_ddp import checkpoint
from maize_ddp.checkpoint import CheckpointError
from maize_ddp.errors import Terminated


def test_every_checkpoint_carries_the_schema_and_older_ones_still_load(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "config": {"model": {"seq_len": 10, "num_targets": 1}}}
    checkpoint.save(tmp_path / "new.pt", state)
    assert checkpoint.load(tmp_path / "new.pt")["schema"] == checkpoint.SCHEMA
    torch.save(state, tmp_path / "before.pt")  # written before the schema had a number
    assert "schema" not in checkpoint.load(tmp_path / "before.pt")


@pytest.mark.parametrize("schema", [checkpoint.SCHEMA + 1, "2"])
def test_a_newer_schema_is_refused_in_one_line(tmp_path, schema):
    torch.save({"schema": schema, "model": {}, "config": {}}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future.pt: checkpoint schema .* written by a newer maize_ddp") as e:
        checkpoint.load(tmp_path / "future.pt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("signal_error", [KeyboardInterrupt, Terminated])
def test_a_signal_inside_the_writer_stops_as_that_signal_and_leaves_no_file(tmp_path, signal_error):
    """Ctrl-C or SIGTERM arriving inside torch.save's C++ writer can come back as a RuntimeError
    whose context is the signal's exception: it is the signal (exit 130 or 143), not a failed write."""
    def write(fh):
        fh.write(b"half")
        try:
            raise signal_error()
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 4 vs 64")

    target = tmp_path / "last.pt"
    with pytest.raises(signal_error):
        checkpoint.atomic_write(target, write)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="cannot write"):  # a RuntimeError of its own is still a failed write
        checkpoint.atomic_write(target, lambda fh: (_ for _ in ()).throw(RuntimeError("unexpected pos 4 vs 64")))
