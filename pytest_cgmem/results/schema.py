"""The run file's JSON Schema, built from the record types and ``METRICS`` (pure).

``pytest_cgmem/run.schema.json`` is this schema, written out: a test checks that the
shipped file matches, and ``python -m pytest_cgmem.results.schema`` writes it anew after a
metric or a record field was added.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from importlib import resources
from typing import Any

from ..metrics import METRICS
from ..units import MAX_SIGNED_FIGURE
from .records import Details

_JSON_TYPES = {"bytes": "integer", "count": "integer", "ratio": "number"}
_DETAIL_DOCS = {
    "allocated_start": "allocated bytes at the region's start",
    "reserved_start": "reserved bytes at the region's start",
    "allocated_end": "allocated bytes at the region's end",
    "reserved_end": "reserved bytes at the region's end",
    "device_source": "where 'device' came from: nvml, cudaMemGetInfo or recorded; 'graphs' "
    "for a cgmem.graphs() log's or a capture_sweep's region, which knows only graph_pool, "
    "graphs and replays; 'n/a: ...' (why) where 'device' is unknown: the device held no memory "
    "of this process at the region's start, or CUDA started inside the region",
    "disturbed": "another process's device memory moved during the region",
    "ooms": "CUDA out-of-memory errors inside the region",
    "leak_confirmed": "the driver's figure grew with the leak",
    "gc_freed": "bytes the leak check's garbage collection freed",
}
_PY_TYPES = {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}


_BYTES_OR_NULL = {"type": ["integer", "null"], "minimum": 0}
GRAPH_FIGURES: dict[str, Any] = {
    "type": "object",
    "description": "a cgmem.graphs() log's or a capture_sweep's figures (docs/graphs.md)",
    "required": ["source", "captures", "replays", "pools", "sizes"],
    "properties": {
        "source": {"enum": ["graphs", "capture_sweep"]},
        "captures": {"type": "integer", "minimum": 0, "description": "captures made"},
        "replays": {"type": "integer", "minimum": 0, "description": "replays seen"},
        "pools": {
            "type": "array",
            "description": "each pool on each device captured into, with the bytes it held "
            "when the log closed or the sweep ended (null: not measured or unavailable)",
            "items": {
                "type": "object",
                "required": ["device", "pool", "bytes"],
                "properties": {
                    "device": {"type": ["integer", "null"]},
                    "pool": {"type": "array", "items": {"type": "integer"}},
                    "bytes": _BYTES_OR_NULL,
                },
            },
        },
        "sizes": {
            "type": "array",
            "description": "per capture size (a sweep's size, a log's capture label), in "
            "capture order: the bytes its captures added to the pool (allocator) and the "
            "device memory they took (driver), null where unknown",
            "items": {
                "type": "object",
                "required": ["size", "bytes", "driver", "captures"],
                "properties": {
                    "size": {"type": ["integer", "string"]},
                    "bytes": _BYTES_OR_NULL,
                    "driver": {"type": ["integer", "null"]},
                    "captures": {"type": "integer", "minimum": 1},
                },
            },
        },
        "mechanism": {"type": ["string", "null"], "description": "a log's: how graphs were seen"},
        "pools_unavailable": {
            "type": ["string", "null"],
            "description": "a log's: why pool bytes could not be read",
        },
        "driver_total": {
            "type": ["integer", "null"],
            "description": "a sweep's: device memory the whole sweep took (cudaMemGetInfo)",
        },
    },
    "if": {"properties": {"source": {"const": "capture_sweep"}}},
    "then": {
        "properties": {
            "sizes": {
                "items": {
                    "properties": {
                        "size": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "a sweep's sizes are whole numbers >= 1 (a log's "
                            "are its labels: any whole number or string)",
                        }
                    }
                }
            }
        }
    },
}


def device_schema() -> dict[str, Any]:
    """A region's figures on one device: every metric (null where unknown), then details."""
    properties: dict[str, Any] = {
        "index": {
            "type": "integer",
            "minimum": 0,
            "description": "CUDA device index in the measuring process",
        }
    }
    for metric in METRICS.values():
        properties[metric.name] = {
            "type": [_JSON_TYPES[metric.kind], "null"],
            "description": metric.doc,
        }
        if metric.signed:
            properties[metric.name].update(minimum=-MAX_SIGNED_FIGURE, maximum=MAX_SIGNED_FIGURE)
        else:
            properties[metric.name]["minimum"] = 0
    for field in fields(Details):
        properties[field.name] = {
            "type": _PY_TYPES[str(field.type)],
            "description": _DETAIL_DOCS[field.name],
        }
    return {
        "type": "object",
        "required": ["index", *METRICS],
        "properties": properties,
        "additionalProperties": True,
    }


def build() -> dict[str, Any]:
    """The whole run-file schema."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/pytest-cgmem/pytest-cgmem/run.schema.json",
        "title": "pytest-cgmem run file (schema pytest-cgmem/1)",
        "description": "Written by --cgmem-json, --cgmem-save-baseline and cgmem merge; documented "
        "in docs/json.md",
        "type": "object",
        "required": ["schema", "created", "machine", "commit", "settings", "summary", "tests"],
        "properties": {
            "schema": {"const": "pytest-cgmem/1"},
            "created": {"type": "string", "description": "UTC time, ISO 8601"},
            "machine": {
                "type": "object",
                "required": [
                    "hostname",
                    "python",
                    "platform",
                    "gpus",
                    "driver",
                    "torch",
                    "cuda",
                    "allocator_backend",
                    "alloc_conf",
                ],
                "properties": {
                    "hostname": {"type": "string"},
                    "python": {"type": "string"},
                    "platform": {"type": "string"},
                    "gpus": {"type": ["array", "null"], "items": {"type": "string"}},
                    "driver": {"type": ["string", "null"]},
                    "torch": {"type": ["string", "null"]},
                    "cuda": {"type": ["string", "null"]},
                    "allocator_backend": {"type": ["string", "null"]},
                    "alloc_conf": {
                        "type": ["string", "null"],
                        "description": "PYTORCH_CUDA_ALLOC_CONF, else (torch 2.10+, or "
                        "ROCm) PYTORCH_HIP_ALLOC_CONF, else (torch 2.10+) PYTORCH_ALLOC_CONF, "
                        "in the measuring process ('' when none is set); null when nothing "
                        "was measured",
                    },
                    "alloc_conf_source": {
                        "type": ["string", "null"],
                        "description": "where alloc_conf came from: the variable's name, 'set "
                        "at runtime', or ''",
                    },
                    "graph_tracking": {
                        "type": ["string", "null"],
                        "description": "how CUDA graphs were seen; null for a CPU build",
                    },
                    "graph_pools": {
                        "type": ["string", "null"],
                        "description": "where graph pool bytes come from; null for a CPU build",
                    },
                    "nvml": {"type": "boolean"},
                },
            },
            "commit": {
                "type": ["object", "null"],
                "required": ["sha", "dirty"],
                "properties": {"sha": {"type": "string"}, "dirty": {"type": "boolean"}},
            },
            "complete": {
                "type": "boolean",
                "description": "true: the run ended on its own and nothing it measured was lost; "
                "false: it was interrupted, killed, stopped early or lost a worker "
                "(incomplete_reason says why). Files written before pytest-cgmem journaled "
                "runs have no such key.",
            },
            "incomplete_reason": {
                "type": ["string", "null"],
                "description": "why the run is incomplete, as far as is known; null when complete",
            },
            "workers_lost": {
                "type": "array",
                "description": "pytest-xdist workers that died during the run",
                "items": {
                    "type": "object",
                    "required": ["worker", "when", "test", "error"],
                    "properties": {
                        "worker": {"type": "string", "description": "worker id (gw0...)"},
                        "when": {"type": "string", "description": "UTC time, ISO 8601"},
                        "test": {
                            "type": ["string", "null"],
                            "description": "the test it was running, whose figures are lost",
                        },
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
            "journal": {
                "type": "object",
                "description": "only while a run is under way (or was killed): the journal "
                "file next to this one holding each finished test's record",
                "required": ["file", "run"],
                "properties": {
                    "file": {
                        "type": "string",
                        "pattern": "^(?!\\.\\.?$)[^/\\\\\\u0000]+$",
                        "description": "the journal's name, in this file's folder: not '.' "
                        "or '..', no slash",
                    },
                    "run": {"type": "string"},
                },
            },
            "settings": {"type": "object"},
            "summary": {
                "type": "object",
                "required": ["tests", "regions", "violations", "failed"],
                "properties": {
                    "tests": {"type": "integer", "minimum": 0},
                    "regions": {"type": "integer", "minimum": 0},
                    "violations": {"type": "integer", "minimum": 0},
                    "failed": {"type": "integer", "minimum": 0},
                },
            },
            "tests": {"type": "array", "items": {"$ref": "#/$defs/test"}},
            "merged_from": {"type": "array", "items": {"type": "string"}},
            "ranks": {
                "type": "object",
                "description": "a torchrun job's run file, written by rank 0: the ranks "
                "whose records it holds and those it waited for in vain",
                "required": ["world_size", "gathered", "missing"],
                "properties": {
                    "world_size": {"type": "integer", "minimum": 1},
                    "gathered": {"type": "array", "items": {"type": "integer"}},
                    "missing": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
        "$defs": {
            "test": {
                "type": "object",
                "required": [
                    "nodeid",
                    "outcome",
                    "budget",
                    "tolerance",
                    "checked",
                    "violations",
                    "baseline",
                    "regions",
                    "worker",
                    "cuda_visible_devices",
                ],
                "properties": {
                    "nodeid": {"type": "string"},
                    "outcome": {"enum": ["passed", "failed", "skipped", "xfailed", "xpassed"]},
                    "worker": {
                        "type": ["string", "null"],
                        "description": "pytest-xdist worker id (gw0...) or null",
                    },
                    "cuda_visible_devices": {"type": ["string", "null"]},
                    "budget": {
                        "type": "object",
                        "propertyNames": {"enum": list(METRICS)},
                        "additionalProperties": {"type": "number", "minimum": 0},
                        "description": "metric -> limit (bytes, counts or a ratio)",
                    },
                    "tolerance": {
                        "type": ["object", "null"],
                        "properties": {
                            "rel": {"type": "number", "minimum": 0},
                            "abs": {"type": "integer", "minimum": 0},
                        },
                        "additionalProperties": False,
                        "description": "the mark's tolerance=: relative and/or absolute part",
                    },
                    "checked": {
                        "type": "array",
                        "items": {"type": ["string", "null"]},
                        "description": "labels of the regions held against the budget",
                    },
                    "violations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["metric", "limit", "actual", "where", "label", "message"],
                            "properties": {
                                "metric": {"enum": list(METRICS)},
                                "limit": {"type": "number"},
                                "actual": {"type": "number"},
                                "where": {"type": "string"},
                                "label": {"type": ["string", "null"]},
                                "rank": {
                                    "type": "integer",
                                    "description": "the distributed rank whose figure it "
                                    "is (absent outside distributed runs)",
                                },
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "baseline": {
                        "type": ["object", "null"],
                        "required": ["compared", "regressions", "improvements", "new"],
                        "properties": {
                            "compared": {"type": "integer", "minimum": 0},
                            "regressions": {
                                "type": "array",
                                "items": {"$ref": "#/$defs/change"},
                            },
                            "improvements": {
                                "type": "array",
                                "items": {"$ref": "#/$defs/change"},
                            },
                            "new": {"type": "array", "items": {"type": "string"}},
                            "sizes": {
                                "type": "array",
                                "description": "capture sizes of a graph region that vanished "
                                "since the baseline or appeared in this run (reported, not "
                                "a regression); absent in files of earlier versions",
                                "items": {"$ref": "#/$defs/size_change"},
                            },
                        },
                    },
                    "regions": {"type": "array", "items": {"$ref": "#/$defs/region"}},
                    "judged": {
                        "type": "boolean",
                        "description": "false: its figures are kept, not judged (a test "
                        "opted out with cgmem_off, figures recorded in a setup that "
                        "skipped), and no baseline holds them; absent (or true) where they "
                        "were judged",
                    },
                },
                "additionalProperties": True,
            },
            "region": {
                "type": "object",
                "required": ["label", "seconds", "error", "devices", "extra"],
                "properties": {
                    "label": {
                        "type": ["string", "null"],
                        "description": "'call' for the marked test's "
                        "call phase, else the "
                        "cgmem.measure() label; 'rankN' or "
                        "'rankN/<label>' for a distributed rank's",
                    },
                    "seconds": {"type": "number", "minimum": 0},
                    "error": {
                        "type": ["string", "null"],
                        "description": "the exception that ended the region, one line",
                    },
                    "devices": {"type": "array", "items": {"$ref": "#/$defs/device"}},
                    "extra": {
                        "type": "object",
                        "description": "region details such as graph "
                        "captures in short; 'recorded' "
                        "lists the figures given to "
                        "cgmem_record; 'rank' (and for "
                        "cgmem.distributed 'world_size', "
                        "'backend', 'launcher', "
                        "'unmeasured') a distributed rank's",
                        "properties": {
                            "recorded": {
                                "type": "array",
                                "items": {"enum": list(METRICS)},
                            },
                            "lines": {"type": "array", "items": {"type": "string"}},
                            "graph_figures": {"$ref": "#/$defs/graph_figures"},
                        },
                    },
                },
                "additionalProperties": True,
            },
            "graph_figures": GRAPH_FIGURES,
            "size_change": {
                "type": "object",
                "required": ["label", "size", "change", "bytes", "message"],
                "properties": {
                    "label": {"type": "string", "description": "the region's key"},
                    "size": {"type": ["integer", "string"]},
                    "change": {"enum": ["vanished", "appeared"]},
                    "bytes": {
                        "type": ["integer", "null"],
                        "description": "the size's bytes where it was (the baseline's for "
                        "a vanished size, this run's for one that appeared)",
                    },
                    "message": {"type": "string"},
                },
            },
            "change": {
                "type": "object",
                "required": ["metric", "label", "device", "baseline", "value", "change", "message"],
                "properties": {
                    "metric": {"enum": list(METRICS)},
                    "label": {"type": ["string", "null"]},
                    "device": {"type": "integer"},
                    "baseline": {"type": "number"},
                    "value": {"type": "number"},
                    "change": {"type": "number"},
                    "message": {"type": "string"},
                },
            },
        },
    }
    schema["$defs"]["device"] = device_schema()
    return schema


def shipped() -> dict[str, Any]:
    """The schema file shipped in the package (``run.schema.json``)."""
    text = resources.files("pytest_cgmem").joinpath("run.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def dumps() -> str:
    return json.dumps(build(), indent=1) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps())
