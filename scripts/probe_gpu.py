"""One-off probe of the facts the plugin's design depends on (run on the GPU machine)."""
import gc, os, sys, time, inspect, subprocess, json

def t(fn, n=2000):
    fn()
    s = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - s) / n * 1e6

import torch, pytest, pluggy
print("versions", torch.__version__, torch.version.cuda, pytest.__version__, pluggy.__version__, sys.version)
for mod in ("pynvml", "cupy", "cuda.bindings.runtime", "cuda.bindings.driver", "pytest_benchmark", "xdist", "hypothesis", "matplotlib", "plotly", "jinja2"):
    try:
        m = __import__(mod, fromlist=["x"]); print("have", mod, getattr(m, "__version__", ""))
    except Exception as e:
        print("missing", mod, e)
print("backend", torch.cuda.get_allocator_backend(), "init?", torch.cuda.is_initialized())
torch.cuda.init()
x = torch.ones(1, device="cuda"); torch.cuda.synchronize()
d = 0
print("memory_stats us", t(lambda: torch.cuda.memory_stats(d)))
print("nested us", t(lambda: torch.cuda.memory_stats_as_nested_dict(d)))
print("_C us", t(lambda: torch._C._cuda_memoryStats(d)))
print("reset us", t(lambda: torch.cuda.reset_peak_memory_stats(d)))
print("sync us", t(lambda: torch.cuda.synchronize(d)))
print("empty us", t(lambda: torch.cuda.empty_cache()))
print("meminfo us", t(lambda: torch.cuda.mem_get_info(d)))
print("snapshot us", t(lambda: torch.cuda.memory._snapshot(), 200))
st = torch._C._cuda_memoryStats(d); print("nested keys", sorted(st.keys()))
props = torch.cuda.get_device_properties(d)
print("props", props.name, str(props.uuid), [a for a in dir(props) if "pci" in a], getattr(props, "pci_bus_id", None), getattr(props, "pci_device_id", None), getattr(props, "pci_domain_id", None))
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
print("nvml uuid", pynvml.nvmlDeviceGetUUID(h), pynvml.nvmlDeviceGetName(h), pynvml.nvmlSystemGetDriverVersion(), pynvml.nvmlDeviceGetPciInfo(h).busId)
procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
print("procs", [(p.pid, p.usedGpuMemory) for p in procs], "me", os.getpid())
print("nvml procs us", t(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h), 500))
try:
    print("v3?", [(p.pid, p.usedGpuMemory) for p in pynvml.nvmlDeviceGetComputeRunningProcesses_v3(h)])
except Exception as e:
    print("no v3", e)
# cuBLAS workspace accounting
a0 = torch.cuda.memory_allocated()
m = torch.randn(64, 64, device="cuda"); (m @ m); torch.cuda.synchronize()
a1 = torch.cuda.memory_allocated()
print("first matmul alloc growth", a1 - a0 - m.numel() * 4)
s = torch.cuda.Stream()
with torch.cuda.stream(s):
    m @ m
torch.cuda.synchronize()
a2 = torch.cuda.memory_allocated()
print("side-stream matmul growth", a2 - a1)
torch._C._cuda_clearCublasWorkspaces(); print("after clear", torch.cuda.memory_allocated() - a1)
lin = torch.nn.Linear(64, 64, device="cuda", dtype=torch.float16)
b0 = torch.cuda.memory_allocated(); lin(torch.randn(8, 64, device="cuda", dtype=torch.float16)); torch.cuda.synchronize()
print("fp16 linear growth", torch.cuda.memory_allocated() - b0)
# CUDAGraph
G = torch.cuda.CUDAGraph
print("CUDAGraph mro", G.__mro__, [k for k in G.__dict__])
for k in ("capture_begin", "capture_end", "replay", "pool", "reset"):
    f = G.__dict__.get(k)
    print(k, inspect.signature(f) if f else None)
print(inspect.getsource(torch.cuda.graphs.graph.__enter__))
try:
    import torch._inductor.cudagraph_trees as ct
    src = inspect.getsource(ct)
    print("cudagraph_trees uses CUDAGraph:", src.count("torch.cuda.CUDAGraph"), "capture_begin" in src, "graph_pool_handle" in src)
    for line in src.splitlines():
        if "torch.cuda.graph(" in line or ".replay()" in line or "CUDAGraph()" in line:
            print("  ct:", line.strip())
except Exception as e:
    print("ct err", e)
print("mempool", hasattr(torch.cuda, "MemPool"), hasattr(torch.cuda, "graph_pool_handle"))
print("snapshot sig", inspect.signature(torch.cuda.memory_snapshot))
print("cupy:")
try:
    import cupy
    f0 = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    buf = cupy.empty(256 * 2**20, dtype=cupy.uint8)
    f1 = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    print(" cupy 256MiB nvml", [(p.pid, p.usedGpuMemory) for p in f0], [(p.pid, p.usedGpuMemory) for p in f1])
    del buf; cupy.get_default_memory_pool().free_all_blocks()
except Exception as e:
    print("cupy err", e)
try:
    from cuda.bindings import runtime as rt
    err, ptr = rt.cudaMalloc(64 * 2**20); print(" cudaMalloc", err, ptr)
    print(" free", rt.cudaFree(ptr))
except Exception as e:
    print("rt err", e)
