"""Broken checkpoint files, made from a good one, with the message each must be refused with
(tests/test_checkpoint.py and tests/training/test_training.py feed them to every reader)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from genie.checkpoint import CHECKSUM_KEY, checksum_entry


class Payload:
    """Unpickled, it would run code: ``exec`` writes the file ``sentinel``."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('the payload ran')",))


def largest_weight(stored: dict) -> str:
    """The key of the largest floating-point tensor of a checkpoint's state_dict."""
    state = stored["state_dict"]
    return max(
        (k for k, v in state.items() if v.is_floating_point()), key=lambda k: state[k].numel()
    )


def flip_a_weight_byte(good: Path, out: Path) -> tuple[str, int]:
    """Copy ``good`` to ``out`` with one bit flipped inside the data of its largest weight tensor
    whose bytes occur once in the file (in the file's bytes: the zip holds tensors uncompressed,
    and torch checks no CRC). Returns the tensor's key and the flat index of the changed value."""
    state = torch.load(good, weights_only=True)["state_dict"]
    data = bytearray(good.read_bytes())
    for key in sorted(state, key=lambda k: -state[k].numel()):
        tensor = state[key].contiguous()
        if not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        start = data.find(raw)
        if start >= 0 and data.find(raw, start + 1) < 0:
            break
    else:
        raise AssertionError(f"no weight tensor of {good} has bytes found once in the file")
    index = tensor.numel() // 2
    data[start + index * tensor.element_size() + 1] ^= 0x04  # a mantissa bit: still finite
    out.write_bytes(bytes(data))
    return key, index


def make(case: str, good: Path, folder: Path) -> Path:
    """The broken file of ``case`` (a key of :data:`CASES`), made from checkpoint ``good``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{case}.ckpt"
    if case == "truncated":
        data = good.read_bytes()
        out.write_bytes(data[: len(data) // 2])
    elif case == "empty":
        out.write_bytes(b"")
    elif case == "text":
        out.write_text("epoch 3, val/loss 1.23\nthis is a log file, not a checkpoint\n")
    elif case == "random":
        out.write_bytes(random.Random(7).randbytes(4096))
    elif case == "another_project":
        torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, out)
    elif case == "flipped_byte":
        flip_a_weight_byte(good, out)
    elif case == "nan_weights":  # as a diverged run writes it: with a matching checksum
        stored = torch.load(good, weights_only=True)
        stored["state_dict"][largest_weight(stored)].view(-1)[3] = float("nan")
        stored[CHECKSUM_KEY] = checksum_entry(stored["state_dict"])
        torch.save(stored, out)
    elif case == "malicious":  # looks like ours, but unpickling it would run the payload
        stored = torch.load(good, weights_only=True)
        stored["hyper_parameters"]["payload"] = Payload(sentinel(folder))
        torch.save(stored, out)
    else:
        raise KeyError(case)
    return out


def sentinel(folder: Path) -> Path:
    """The file the malicious case's payload would write."""
    return folder / "PAYLOAD_RAN"


# case -> what its message must say
CASES = {
    "truncated": "is truncated or not a PyTorch checkpoint",
    "empty": r"is empty \(0 bytes",
    "text": "is truncated or not a PyTorch checkpoint",
    "random": "is truncated or not a PyTorch checkpoint",
    "another_project": "holds no Genie-Long config",
    "flipped_byte": "is corrupted: its weights do not match its checksum",
    "nan_weights": r"has non-finite weights: model\.\S+ holds NaN",
    "malicious": r"was not loaded: .*\((builtins\.)?exec\), so it may contain code",
}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), os.stat(p).st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
