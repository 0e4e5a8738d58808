"""Allocator behaviour per setting: resize pattern and graph pools (run once per PYTORCH_CUDA_ALLOC_CONF)."""
import os, time, torch
print("conf", os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), torch.cuda.get_allocator_backend())
G = 2**30
def stat():
    return torch.cuda.memory_allocated() // 2**20, torch.cuda.memory_reserved() // 2**20, torch.cuda.max_memory_reserved() // 2**20
for flush in (False, True):
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    buf = None; out = []
    for n in (1, 2, 4):
        if buf is not None:
            del buf
            if flush:
                torch.cuda.empty_cache()
        buf = torch.empty(n * G, dtype=torch.uint8, device="cuda")
        out.append(stat())
    print("resize flush=%s" % flush, out, "segments", len(torch.cuda.memory._snapshot()["segments"]))
    del buf
torch.cuda.empty_cache()
# retained view
buf = torch.empty(G, dtype=torch.uint8, device="cuda"); view = buf[:10]; del buf; torch.cuda.empty_cache()
buf = torch.empty(2 * G, dtype=torch.uint8, device="cuda"); print("retained view", stat()); del buf, view; torch.cuda.empty_cache()
# graph pool
lin = torch.nn.Linear(4096, 4096, device="cuda", dtype=torch.float16)
x = torch.randn(512, 4096, device="cuda", dtype=torch.float16)
s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(2): lin(x)
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    y = lin(x)
print("pool", g.pool())
snap = torch.cuda.memory._snapshot()
for seg in snap["segments"]:
    print(" seg", seg["segment_pool_id"], seg["total_size"], seg["allocated_size"], seg["segment_type"], seg.get("is_expandable"))
try:
    ps = torch.cuda.memory_snapshot(mempool_id=g.pool())
    print("by mempool", [(s["segment_pool_id"], s["total_size"]) for s in ps])
except Exception as e:
    print("mempool snapshot err", e)
g.replay(); torch.cuda.synchronize()
del g, y; torch.cuda.empty_cache()
print("after del", [(s["segment_pool_id"], s["total_size"]) for s in torch.cuda.memory._snapshot()["segments"]])
# torch.compile reduce-overhead hooks
calls = {"b": 0, "e": 0, "r": 0}
C = torch.cuda.CUDAGraph
ob, oe, orp = C.capture_begin, C.capture_end, C.replay
def cb(self, *a, **k): calls["b"] += 1; return ob(self, *a, **k)
def ce(self, *a, **k): calls["e"] += 1; return oe(self, *a, **k)
def rp(self, *a, **k): calls["r"] += 1; return orp(self, *a, **k)
C.capture_begin, C.capture_end, C.replay = cb, ce, rp
try:
    f = torch.compile(lambda t: (t @ t).relu() + 1, mode="reduce-overhead")
    t0 = time.time()
    for n in (8, 16, 8, 16, 8, 16):
        f(torch.randn(n, n, device="cuda"))
    print("compile calls", calls, time.time() - t0)
except Exception as e:
    print("compile err", repr(e)[:300])
finally:
    C.capture_begin, C.capture_end, C.replay = ob, oe, orp
