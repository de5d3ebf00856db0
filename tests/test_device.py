"""Device and precision selection: the rules, and the messages a user sees for a wrong choice.

Where a rule depends on hardware this machine may lack, the test pretends the hardware is there by replacing torch's
own availability query (the environment), never our code.
"""

import pytest
import torch

from animate.device import select_device, select_dtype

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_cuda_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_falls_back_to_cpu(no_gpu):
    assert select_device() == CPU


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == MPS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == CUDA


def test_explicit_devices_are_validated(no_gpu):
    assert select_device("cpu") == CPU
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available"):
        select_device("mps")


def test_cuda_index_must_exist(two_cuda_gpus):
    assert select_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="has 2 CUDA GPU"):
        select_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:x", "", "xla", "meta"])
def test_unknown_device_names_are_rejected(name):
    with pytest.raises(ValueError, match="Use auto, cpu, cuda, cuda:N or mps"):
        select_device(name)


def test_auto_precision_is_fp16_on_cuda_only():
    assert select_dtype(CUDA) == torch.float16
    assert select_dtype(CPU) == torch.float32
    assert select_dtype(MPS) == torch.float32


def test_explicit_precisions():
    assert select_dtype(CPU, "fp32") == torch.float32
    assert select_dtype(CPU, "bf16") == torch.bfloat16
    assert select_dtype(CUDA, "fp16") == torch.float16
    assert select_dtype(MPS, "fp16") == torch.float16


def test_fp16_on_cpu_is_rejected_with_alternatives():
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU.*Use fp32, or bf16"):
        select_dtype(CPU, "fp16")


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="Use auto, fp32, fp16, bf16"):
        select_dtype(CPU, "float16")


def test_bf16_needs_an_ampere_or_newer_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.raises(ValueError, match="Tesla T4 has no native bf16 support.*Use fp16"):
        select_dtype(CUDA, "bf16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert select_dtype(CUDA, "bf16") == torch.bfloat16


@pytest.mark.gpu
def test_real_cuda_device():
    device = select_device()
    assert device.type == "cuda"
    torch.ones(2, device=device, dtype=select_dtype(device))
