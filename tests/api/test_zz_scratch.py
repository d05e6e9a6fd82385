import time
from tests.api.test_rerank_api import *  # noqa

def test_probe_partial(server, tenant):
    client = tenant("acme")
    out = open("/tmp/scratch/probe.txt", "w")
    for delay, timeout, depth in [(0.25, 1.5, 48), (0.3, 0.5, 48), (1.0, 0.5, 8), (0.6, 0.5, 16), (0.3, 0.5, 48)]:
        with swapped_backend(server, lambda real: FaultyBackend(real, delay_s=delay)) as slow:
            t = time.monotonic()
            try:
                reply = client.search(COLLECTION, QUERY, top_k=50, rerank="fixed", rerank_depth=depth, timeout=timeout)
                d = reply.rerank
                print(delay, timeout, round(time.monotonic() - t, 3), d.depth_chosen, d.depth_scored, d.partial, d.degraded, d.reason, d.degraded_reason, "pred", d.predicted_ms, "actual", d.actual_ms, reply.timings, slow.batch_sizes, file=out)
            except grpc.RpcError as e:
                print(delay, timeout, round(time.monotonic() - t, 3), "ERROR", e.code(), e.details(), slow.batch_sizes, file=out)
            time.sleep(delay + 0.2)
        out.flush()
