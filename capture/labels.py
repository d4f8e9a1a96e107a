"""Stage labels opened and closed by forward hooks, so the model's source is never patched.

The labeler keeps a stack of open ``record_function`` ranges on the calling thread. Ranges
always close innermost-first, so the exported trace nests properly (Perfetto drops slices that
partially overlap). Hooks are registered only while a labeler is attached: with it detached the
model runs exactly as it would without stagetrace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn
from torch.autograd.profiler import record_function
from torch.utils.hooks import RemovableHandle

from analyze import vocabulary as vocab
from capture.models.base import ModelAdapter


class StageLabeler:
    """Labels vision encoding and every generation step of one adapter's model."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self._adapter = adapter
        self._stack: list[tuple[str, record_function]] = []
        self._handles: list[RemovableHandle] = []
        self.step = 0

    # -- ranges -----------------------------------------------------------------------------
    def open(self, name: str) -> None:
        """Open a labelled range inside whatever is open now."""
        rf = record_function(name)
        rf.__enter__()
        self._stack.append((name, rf))

    def close(self, name: str) -> None:
        """Close ``name`` and anything still open inside it; a no-op when it is not open."""
        if not self.is_open(name):
            return
        while self._stack:
            top, rf = self._stack.pop()
            rf.__exit__(None, None, None)
            if top == name:
                return

    def is_open(self, name: str) -> bool:
        return any(n == name for n, _ in self._stack)

    def close_all(self) -> None:
        while self._stack:
            self.close(self._stack[-1][0])

    @contextmanager
    def label(self, name: str) -> Iterator[None]:
        """A range around a block of the runner's own code (sample, load, preprocess, generate)."""
        self.open(name)
        try:
            yield
        finally:
            self.close(name)

    @contextmanager
    def generation(self) -> Iterator[None]:
        """``stage4:generate`` around one generate() call; steps count from 0 (the prefill)."""
        self.step = 0
        with self.label(vocab.GENERATE):
            yield

    # -- hooks ------------------------------------------------------------------------------
    def attach(self) -> None:
        """Register the forward hooks (idempotent)."""
        if self._handles:
            return
        parts = self._adapter.vision_parts()
        step = self._adapter.step_module()
        add = self._handles.append
        # Order matters where one module plays two roles: the vision range opens before a part
        # opens (pre-hooks) and closes after the part closes (post-hooks).
        for m in parts.enter:
            add(m.register_forward_pre_hook(self._open_vision))
        for part, m in parts.parts:
            name = vocab.VISION_PARTS[part]
            add(m.register_forward_pre_hook(_opener(self, name)))
            add(m.register_forward_hook(_closer(self, name)))
        add(parts.exit.register_forward_hook(self._close_vision))
        add(step.register_forward_pre_hook(self._open_step))
        add(step.register_forward_hook(self._close_step))

    def detach(self) -> None:
        """Remove every hook and close any range left open (e.g. by an exception in forward)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.close_all()

    def _open_vision(self, module: nn.Module, args: Any) -> None:
        if not self.is_open(vocab.VISION):
            self.open(vocab.VISION)

    def _close_vision(self, module: nn.Module, args: Any, output: Any) -> None:
        self.close(vocab.VISION)

    def _open_step(self, module: nn.Module, args: Any) -> None:
        self.open(vocab.step_label(self.step))

    def _close_step(self, module: nn.Module, args: Any, output: Any) -> None:
        self.close(vocab.step_label(self.step))
        self.step += 1


def _opener(labeler: StageLabeler, name: str) -> Callable[[nn.Module, Any], None]:
    def hook(module: nn.Module, args: Any) -> None:
        labeler.open(name)

    return hook


def _closer(labeler: StageLabeler, name: str) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        labeler.close(name)

    return hook
