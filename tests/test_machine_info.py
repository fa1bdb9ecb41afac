"""The benchmark's machine record names the CPU and its vector ISA."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from machine_info import cpu_model_and_flags, machine_info  # noqa: E402


def test_cpu_model_and_isa_flags_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n"
    )
    info = cpu_model_and_flags(str(cpuinfo))
    assert info == {"cpu_model": "AMD EPYC 9R14", "isa_flags": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]}


def test_machine_info_has_torch_dispatch_and_threads():
    import torch

    info = machine_info()
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch_threads"] == torch.get_num_threads()
    assert {"cpu_model", "isa_flags", "onednn_enabled", "mkl_available", "thinc_ops", "numpy_blas"} <= set(info)


def test_machine_info_names_blis_kernels_and_gemm_speeds():
    """Where blis runs its 'generic' kernels spaCy's tagger is several times
    slower: the record says which kernel set blis took
    and what one matrix product costs in each library."""
    import torch

    from machine_info import blis_config, gemm_gflops

    config = blis_config()
    assert config is None or (isinstance(config, str) and config)
    threads = torch.get_num_threads()
    speeds = gemm_gflops(seconds=0.02)
    assert {"numpy", "torch"} <= set(speeds) <= {"blis", "numpy", "torch"}
    assert all(isinstance(v, float) and v > 0 for v in speeds.values())
    assert torch.get_num_threads() == threads  # the probe restores torch's pool
