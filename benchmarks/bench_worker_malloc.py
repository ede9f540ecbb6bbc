"""Worker malloc settings: ``ridge.fit_ridge_chunk`` in fresh processes under glibc malloc settings, alternated.

``python benchmarks/bench_worker_malloc.py make`` writes one model's factors and 4096 voxels to
``/tmp/mp/factors.pkl`` (~470 MB); ``python benchmarks/bench_worker_malloc.py run N`` then times two
2048-voxel chunks twice in a fresh single-threaded process per setting, N rounds, and writes
``/tmp/mp/probe.json``. The settings: glibc's defaults, Dask's nanny (``MALLOC_TRIM_THRESHOLD_``),
neurotask's workers (plus ``MALLOC_MMAP_THRESHOLD_``, ``neurotask.cluster.local.WORKER_MALLOC``).
"""
import json, os, pickle, resource, subprocess, sys, time
import numpy as np

FACT = "/tmp/mp/factors.pkl"
os.makedirs(os.path.dirname(FACT), exist_ok=True)

def make():
    from neurotask.encoding.ridge import make_ridge_factors
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 2048), dtype=np.float32)
    f = make_ridge_factors(x[:4000], x[4000:], np.arange(6) * 800, alphas=np.logspace(-2, 5, 10))
    y = rng.standard_normal((5000, 4096), dtype=np.float32)
    pickle.dump((f, y), open(FACT, "wb"), protocol=5)

def child(reps):
    from threadpoolctl import threadpool_limits
    from neurotask.encoding.ridge import fit_ridge_chunk
    f, y = pickle.load(open(FACT, "rb"))
    alphas = np.logspace(-2, 5, 10)
    times = []
    with threadpool_limits(1):
        for _ in range(reps):
            for part in (slice(0, 2048), slice(2048, 4096)):
                t = time.perf_counter(); fit_ridge_chunk(f, y[:4000, part], y[4000:, part], alphas)
                times.append(time.perf_counter() - t)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"times": times, "maxrss_mb": ru.ru_maxrss / 1024, "minflt": ru.ru_minflt, "stime": ru.ru_stime}))

if __name__ == "__main__":
    if sys.argv[1] == "make":
        make()
    elif sys.argv[1] == "child":
        child(int(sys.argv[2]))
    else:
        envs = {"glibc default": {}, "dask (TRIM=65536)": {"MALLOC_TRIM_THRESHOLD_": "65536"},
                "TRIM=65536 + MMAP=32MiB": {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": str(32 << 20)},
                "TRIM=64MiB": {"MALLOC_TRIM_THRESHOLD_": str(64 << 20)}}
        out = {k: [] for k in envs}
        for r in range(int(sys.argv[2])):
            for name, extra in envs.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
                env.update(extra, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
                res = json.loads(subprocess.run([sys.executable, __file__, "child", "2"], env=env, capture_output=True, text=True, check=True).stdout)
                res["load"] = os.getloadavg()[0]
                out[name].append(res)
                print(name, [round(t, 2) for t in res["times"]], round(res["maxrss_mb"]), res["minflt"], round(res["stime"], 1), "load", round(res["load"], 1), flush=True)
        json.dump(out, open("/tmp/mp/probe.json", "w"), indent=1)
