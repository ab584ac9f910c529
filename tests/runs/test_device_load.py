"""Reading a device's load: CPU and RAM from /proc, a GPU through NVML where there is one."""

import os
import sys

import pytest

from resnet_tui.runs.device_load import GIB, CpuLoad, DeviceLoad, GpuLoad, _nvml, load_reader

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_cpu_load_reads_the_machine_and_the_process_share():
    reader = load_reader("cpu", os.getpid())
    assert isinstance(reader, CpuLoad)
    sum(i * i for i in range(2_000_000))  # some CPU time for this process between readings
    load = reader.sample()
    cores = os.cpu_count()
    assert 0 <= load.utilisation <= 100
    assert 0 < load.process_utilisation <= 100 * cores
    assert 0 < load.memory_used < load.memory_total
    assert 0 < load.process_memory < load.memory_total
    assert load.device == f"CPU ({cores} cores)"


@linux_only
def test_a_process_that_is_gone_leaves_only_the_machine_figures():
    gone = 2**22 + 12345  # above the kernel's default pid_max
    load = CpuLoad(gone).sample()
    assert load.process_memory is None and load.process_utilisation is None
    assert load.memory_total > 0


@linux_only
def test_a_gpu_without_nvml_falls_back_to_the_cpu():
    if _nvml() is not None:
        pytest.skip("this machine has NVML; the fallback is not reachable")
    assert isinstance(load_reader("cuda:0", os.getpid()), CpuLoad)


@pytest.mark.skipif(_nvml() is None, reason="needs an NVIDIA GPU and its driver")
def test_a_gpu_is_read_through_nvml():
    reader = load_reader("cuda:0", None)
    assert isinstance(reader, GpuLoad)
    load = reader.sample()
    assert 0 <= load.utilisation <= 100 and load.memory_total > 0


def test_a_reading_is_one_line_with_what_is_known():
    gpu = DeviceLoad("GPU 0", 87.0, int(12.3 * GIB), int(79.6 * GIB), temperature_c=61, power_w=310)
    assert gpu.describe() == "GPU 0 87% · memory 12.3/79.6 GiB · 61 °C · 310 W"
    cpu = DeviceLoad("CPU (2 cores)", None, GIB, 4 * GIB, process_memory=GIB // 2)
    assert cpu.describe() == "CPU (2 cores) · memory 1.0/4.0 GiB (engine 512 MiB)"
