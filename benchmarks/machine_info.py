"""What machine a benchmark ran on, in enough detail to compare runs.

The torch path's speed relative to spaCy's tagger moves ~3x between VMs
with the same platform string: the LSTM kernels (oneDNN) and
MKL's GEMMs pick their code by instruction set, spaCy's tagger runs on
blis/numpy. So the record names the CPU model, its vector ISA flags, the
ISA torch dispatches to, whether oneDNN/MKL are in use, the thread
settings of every library in the timing, the kernel set blis picked and
what one matrix product costs in each library.
"""
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict, Optional

# vector/matrix extensions that change which kernels oneDNN, MKL and blis run
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
)
# environment variables that cap an ISA or a thread pool
ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
    "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
    "OPENBLAS_CORETYPE", "BLIS_ARCH_TYPE",
)


def cpu_model_and_flags(cpuinfo: str = "/proc/cpuinfo") -> Dict[str, Any]:
    """CPU model name and the ISA flags of ``ISA_FLAGS`` it has (Linux; elsewhere
    the platform's processor string and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo, encoding="utf8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                if model and flags and key == "":
                    break
    except OSError:
        pass
    return {"cpu_model": model, "isa_flags": [flag for flag in ISA_FLAGS if flag in flags]}


def cpu_quota() -> Any:
    """The cgroup v2 CPU quota ("max" = none), or None where there is none to read."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf8") as f:
            return f.read().strip()
    except OSError:
        return None


def torch_info() -> Dict[str, Any]:
    """Torch's CPU dispatch (the ISA its kernels were picked for), oneDNN/MKL,
    and its thread pools, as seen by the process that runs the timing."""
    import torch

    from spacy_lstm_tagger.quantize import native_bf16

    return {
        "torch": torch.__version__,
        # what bfloat16 = "auto" (the shipped configs) decides here
        "native_bf16": native_bf16(torch.device("cpu")),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onednn_available": torch.backends.mkldnn.is_available(),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "mkl_available": torch.backends.mkl.is_available(),
        "openmp": torch.backends.openmp.is_available(),
    }


def blas_info() -> Dict[str, Any]:
    """What spaCy's tagger computes with: Thinc's ops, blis, numpy's BLAS."""
    import importlib.metadata as metadata

    import numpy
    from thinc.api import get_current_ops

    info: Dict[str, Any] = {"thinc_ops": type(get_current_ops()).__name__, "numpy": numpy.__version__}
    try:
        info["blis"] = metadata.version("blis")
    except metadata.PackageNotFoundError:
        info["blis"] = None
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no dict mode
        info["numpy_blas"] = None
    return info


def blis_config() -> Optional[str]:
    """The sub-configuration (kernel set) blis picked for this CPU, from its
    own debug line in a child process: e.g. 'skx', 'zen3', or 'generic' (no
    SIMD micro-kernels, several times slower) where it does not recognize
    the CPU, as on VMs that hide the CPU's family/model."""
    code = "import numpy, blis.py; a = numpy.ones((8, 8), dtype='f'); blis.py.gemm(a, a)"
    try:
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "BLIS_ARCH_DEBUG": "1"},
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"sub-configuration '([^']+)'", done.stderr + done.stdout)
    return found.group(1) if found else None


def gemm_gflops(seconds: float = 0.3) -> Dict[str, float]:
    """Single-thread float32 GFLOP/s of one (2048 x 256) x (256 x 256) matrix
    product by each library in the timing: blis (what spaCy's tagger runs its
    layers on under Thinc's default NumpyOps), numpy's BLAS (NumpyOps with
    use_blis=False) and torch (MKL). The ratio of the torch path to spaCy's
    tagger moves with these. Run with their thread pools at 1."""
    import numpy
    import torch

    a, b = numpy.random.rand(2048, 256).astype("f"), numpy.random.rand(256, 256).astype("f")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    products = {"numpy": lambda: a @ b, "torch": lambda: ta @ tb}
    try:
        import blis.py

        products = {"blis": lambda: blis.py.gemm(a, b), **products}
    except ImportError:
        pass
    flop = 2 * 2048 * 256 * 256
    result = {}
    try:
        for name, product in products.items():
            product()
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                product()
                n += 1
            result[name] = round(n * flop / (time.perf_counter() - start) / 1e9, 1)
    finally:
        torch.set_num_threads(threads)
    return result


def machine_info() -> Dict[str, Any]:
    """Everything above, plus the platform, Python and the relevant environment."""
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_quota": cpu_quota(),
        "python": platform.python_version(),
    }
    info.update(cpu_model_and_flags())
    info.update(torch_info())
    info.update(blas_info())
    info["blis_config"] = blis_config()
    info["gemm_gflops_1_thread"] = gemm_gflops()
    info["env"] = {name: os.environ[name] for name in ENV_VARS if name in os.environ}
    return info


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))
