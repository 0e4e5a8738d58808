"""The run header: allocator settings as torch reads them, how graphs are seen."""

from __future__ import annotations

import pytest

from pytest_cgmem.reports.text import alloc_conf_text, header


@pytest.mark.parametrize(
    ("info", "text"),
    [
        ({"alloc_conf": "", "alloc_conf_source": ""}, "PYTORCH_CUDA_ALLOC_CONF=(unset)"),
        (
            {"alloc_conf": "a:1", "alloc_conf_source": "PYTORCH_ALLOC_CONF"},
            "PYTORCH_ALLOC_CONF=a:1",
        ),
        (
            {"alloc_conf": "", "alloc_conf_source": "PYTORCH_CUDA_ALLOC_CONF"},
            "PYTORCH_CUDA_ALLOC_CONF=(empty)",
        ),
        (
            {"alloc_conf": "b:2", "alloc_conf_source": "set at runtime"},
            "allocator settings b:2 (set at runtime)",
        ),
        (
            {"alloc_conf": "", "alloc_conf_source": "set at runtime"},
            "allocator settings (empty) (set at runtime)",
        ),
        ({"alloc_conf": "c:3"}, "PYTORCH_CUDA_ALLOC_CONF=c:3"),  # an older run file
        ({"alloc_conf": ""}, "PYTORCH_CUDA_ALLOC_CONF=(unset)"),
    ],
)
def test_alloc_conf_text(info: dict[str, str], text: str) -> None:
    assert alloc_conf_text(info) == text


def test_header_names_the_graph_mechanism_and_pool_source() -> None:
    lines = header(
        {
            "gpus": ["NVIDIA H200"],
            "driver": "580",
            "torch": "2.14.1",
            "cuda": "13.0",
            "allocator_backend": "native",
            "alloc_conf": "expandable_segments:True",
            "alloc_conf_source": "PYTORCH_CUDA_ALLOC_CONF",
            "graph_tracking": "global graph hooks + torch.accelerator.Graph method wrappers",
            "graph_pools": "memory_stats reserved_bytes_by_private_pools",
        }
    )
    assert lines[1].endswith("allocator native, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
    assert lines[2] == (
        "cgmem: CUDA graphs seen through global graph hooks + torch.accelerator.Graph method "
        "wrappers; graph pool bytes from memory_stats reserved_bytes_by_private_pools"
    )
    assert len(header({"torch": "2.11"})) == 2  # no graph line without the machine's figures
