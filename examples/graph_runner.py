"""A small vLLM-style model runner in pure torch, used by the CUDA graph examples.

It captures a 2-layer MLP at a list of batch sizes into one shared graph pool (largest
first, as vLLM does), pads each runtime batch up to the nearest captured size and replays,
and runs eagerly when no captured size holds the batch. Each ``bugs`` flag re-creates one
upstream bug so that an example can show the plugin catching it:

- ``"estimate"``: graph memory is estimated from the static output buffers only, the way
  a KV-cache sizing that forgot graph memory would (vLLM PRs 38284, 30515).
- ``"encoder_pool"``: ``clear()`` forgets the encoder graphs and their separate pool
  (vLLM PR 41714).
- ``"off_stride"``: capture sizes come from ``range(stride, max_num_batched_tokens + 1,
  stride)``, so an off-stride maximum is never captured (vLLM PR 40734).
- ``"capping"``: requested sizes above ``max_capture_size`` are dropped silently instead of
  raising (vLLM PR 38270).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RunnerConfig:
    hidden: int = 1024
    intermediate: int = 4096
    max_num_batched_tokens: int = 256
    stride: int = 8
    max_capture_size: int = 512
    requested_sizes: tuple[int, ...] | None = None  # None: derived from the stride
    encoder: bool = False
    bugs: frozenset[str] = field(default_factory=frozenset)

    def capture_sizes(self) -> list[int]:
        """The sizes this configuration captures (pure: usable in CPU config tests)."""
        if self.requested_sizes is not None:
            sizes = sorted(set(self.requested_sizes))
            if "capping" in self.bugs:
                # the bug: sizes above the limit vanish without a word
                return [s for s in sizes if s <= self.max_capture_size]
            # the fix: an explicit request raises the limit (or the engine would raise)
            return sizes
        sizes = [1, 2, 4, *range(self.stride, self.max_num_batched_tokens + 1, self.stride)]
        if "off_stride" not in self.bugs and sizes[-1] != self.max_num_batched_tokens:
            sizes.append(self.max_num_batched_tokens)  # the fix: always capture the maximum
        return sorted({s for s in sizes if s <= self.max_num_batched_tokens})


class GraphRunner:
    """Captures an MLP decoder (and optionally an encoder) at every capture size."""

    def __init__(self, config: RunnerConfig, device: str = "cuda") -> None:
        self.config = config
        self.device = torch.device(device)
        dtype = torch.float16
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(config.hidden, config.intermediate),
            torch.nn.GELU(),
            torch.nn.Linear(config.intermediate, config.hidden),
        ).to(self.device, dtype)
        self.encoder = (
            torch.nn.Linear(config.hidden, config.hidden).to(self.device, dtype)
            if config.encoder
            else None
        )
        self.dtype = dtype
        self.capture_sizes = config.capture_sizes()
        self.capturing_size: int | None = None
        self.stream = torch.cuda.Stream(self.device)
        self.pool: Any = None
        self.encoder_pool: Any = None
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.encoder_graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.static_in: dict[int, torch.Tensor] = {}
        self.static_out: dict[int, torch.Tensor] = {}
        self.encoder_in: dict[int, torch.Tensor] = {}
        self.encoder_out: dict[int, torch.Tensor] = {}

    # ---------------------------------------------------------------- capture
    def _buffer(self, size: int) -> torch.Tensor:
        return torch.zeros(size, self.config.hidden, device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def _warm_up(
        self, module: torch.nn.Module, sizes: Iterable[int], inputs: dict[int, torch.Tensor]
    ) -> None:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):  # on the capture stream: cuBLAS workspace too
            for size in sorted(sizes, reverse=True):
                inputs[size] = self._buffer(size)
                for _ in range(2):
                    module(inputs[size])
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    @torch.no_grad()
    def _capture_all(
        self,
        module: torch.nn.Module,
        sizes: Iterable[int],
        pool: Any,
        graphs: dict[int, torch.cuda.CUDAGraph],
        inputs: dict[int, torch.Tensor],
        outputs: dict[int, torch.Tensor],
        warm: bool = True,
    ) -> None:
        order = sorted(sizes, reverse=True)  # largest first: smaller graphs reuse the pool
        if warm:
            self._warm_up(module, order, inputs)
        for size in order:
            self.capturing_size = size
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=self.stream):
                outputs[size] = module(inputs[size])
            graphs[size] = graph
        self.capturing_size = None

    def capture(self) -> None:
        self.pool = torch.cuda.graph_pool_handle()
        self._capture_all(
            self.model, self.capture_sizes, self.pool, self.graphs, self.static_in, self.static_out
        )
        if self.encoder is not None:
            self.encoder_pool = torch.cuda.graph_pool_handle()  # a separate pool
            self._capture_all(
                self.encoder,
                self.capture_sizes[-2:],
                self.encoder_pool,
                self.encoder_graphs,
                self.encoder_in,
                self.encoder_out,
            )

    # ---------------------------------------------------------------- run
    def padded_size(self, batch: int) -> int | None:
        fitting = [s for s in self.graphs if s >= batch]
        return min(fitting) if fitting else None

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        size = self.padded_size(batch)
        if size is None:
            return self.model(x)  # no graph holds this batch: eager fallback
        self.static_in[size][:batch].copy_(x)
        self.graphs[size].replay()
        return self.static_out[size][:batch]

    # ---------------------------------------------------------------- memory
    def estimate_graph_memory(self) -> int:
        """Bytes the graphs will hold, for sizing the KV cache before capturing."""
        if "estimate" in self.config.bugs:
            # the static output buffers only: intermediates and the pool are forgotten
            itemsize = torch.finfo(self.dtype).bits // 8
            return sum(s * self.config.hidden * itemsize for s in self.capture_sizes)
        # profile: capture the same sizes into a throwaway pool and measure what it holds
        graphs: dict[int, torch.cuda.CUDAGraph] = {}
        inputs: dict[int, torch.Tensor] = {}
        outputs: dict[int, torch.Tensor] = {}
        self._warm_up(self.model, self.capture_sizes, inputs)
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved(self.device)
        pool = torch.cuda.graph_pool_handle()
        self._capture_all(self.model, self.capture_sizes, pool, graphs, inputs, outputs, False)
        held = torch.cuda.memory_reserved(self.device) - before
        del graphs, inputs, outputs
        torch.cuda.empty_cache()
        return held

    def clear(self) -> None:
        """Drop every graph and its buffers so their pools can be released."""
        self.graphs.clear()
        self.static_in.clear()
        self.static_out.clear()
        self.pool = None
        if "encoder_pool" not in self.config.bugs:
            self.encoder_graphs.clear()
            self.encoder_in.clear()
            self.encoder_out.clear()
            self.encoder_pool = None
        torch.cuda.empty_cache()
