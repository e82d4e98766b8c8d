"""Child process of ``converters.torch_train``: one PyTorch model, a few training steps, peak RSS.

Run as ``python -m converters._torch_train_child RESULT.json`` (by
:func:`graph_analysis.runtime._child_process.run_json_child`) with a JSON request on stdin. The source module is
imported (and its imports resident) before the baseline is taken; the model is built, trained for
``steps`` steps (forward, the requested loss, backward, optimizer step,
``zero_grad(set_to_none=True)``) and each step's peak resident growth over the baseline is
reported: the kernel's peak counter is reset before every step, so that the first step (which
creates the optimizer state after backward has freed the activations) and the later ones (which
hold the state through backward) are measured apart. Runs user code: only for sources the user
named.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from converters._common import TORCH_DTYPES, import_user_code
from graph_analysis.dtypes import DataType
from graph_analysis.runtime._in_child import (
    peak_rss_bytes,
    read_request,
    reset_peak_rss,
    rss_bytes,
    write_result,
)


def _first_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        values = list(out.values())
    elif isinstance(out, (list, tuple)):
        values = list(out)
    elif hasattr(out, "to_tuple"):
        values = list(out.to_tuple())
    else:
        raise TypeError(f"cannot find a tensor in the model's output ({type(out).__name__})")
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    for value in values:
        try:
            return _first_tensor(value)
        except TypeError:
            continue
    raise TypeError("the model's output has no floating-point tensor")


def main() -> None:
    request = read_request()
    import torch

    torch.set_num_threads(int(request.get("threads") or 1))
    location, _, attr = request["source"].rpartition(":")
    factory = import_user_code(location, attr, request["source"])
    builds = callable(factory) and not isinstance(factory, torch.nn.Module)
    if builds:
        # Build once on the meta device (no storage) so that imports the factory triggers lazily
        # (transformers loads its modeling modules on first use) happen before the baseline.
        try:
            with torch.device("meta"):
                factory()
        except Exception:
            pass
    _warm_up(torch, request["optimizer"])
    baseline = rss_bytes()
    reset = reset_peak_rss()

    torch.manual_seed(0)
    model = factory() if builds else factory
    precision = request["precision"]
    if precision == "fp16":
        model = model.half()
    elif precision == "bf16":
        model = model.bfloat16()
    model.train()
    after_model = rss_bytes()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    num_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    feeds: dict[str, Any] = {}
    for spec in request["inputs"]:
        dtype = getattr(torch, TORCH_DTYPES[DataType(spec["elem_type"]).name])
        shape = tuple(spec["dims"])
        if dtype.is_floating_point:
            value = torch.randn(shape, dtype=torch.float32).to(dtype)
            if precision in ("fp16", "bf16"):
                value = value.to(model_dtype(model))
        elif dtype == torch.bool:
            value = torch.ones(shape, dtype=dtype)
        else:
            value = torch.ones(shape, dtype=dtype)
        feeds[spec["name"]] = value
    params = [p for p in model.parameters() if p.requires_grad]
    loss_kind = str(request.get("loss") or "mse")
    target: Any = None
    optimizer = _optimizer(torch, request["optimizer"], params)

    by_name = _by_name(model, feeds)
    step_peaks: list[int] = []
    step_seconds: list[float] = []
    for _ in range(int(request["steps"])):
        t0 = time.perf_counter()
        context = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "mixed"
            else torch.autocast("cpu", enabled=False)
        )
        reset_peak_rss()
        with context:
            out = model(**feeds) if by_name else model(*feeds.values())
            first = _first_tensor(out)
            if target is None:  # made in the first step, then held like a batch of labels
                target = _target(torch, loss_kind, first)
            loss = _loss(torch, loss_kind, first, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del out, first, loss
        step_seconds.append(time.perf_counter() - t0)
        step_peaks.append(peak_rss_bytes())
    result = {
        "baseline_rss_bytes": baseline,
        "hwm_reset": reset,
        "model_rss_bytes": after_model,
        "step_peak_bytes": step_peaks,
        "loss": loss_kind,
        "step_seconds": step_seconds,
        "param_bytes": param_bytes,
        "num_parameters": num_params,
        "trainable_parameters": trainable,
        "torch_version": torch.__version__,
    }
    write_result(result)


def _by_name(model: Any, feeds: dict[str, Any]) -> bool:
    signature = inspect.signature(model.forward)
    return all(k in signature.parameters for k in feeds)


def _class_layout(out: Any) -> tuple[Any, tuple[int, ...]]:
    """Logits as cross-entropy reads them, and the shape of the class-index targets.

    Rank 2 and 3 outputs (``[batch, classes]``, ``[batch, tokens, vocabulary]``) carry the classes
    in the last dim and are flattened to ``[N, classes]``; higher ranks follow PyTorch's
    ``[batch, classes, d1, ...]`` convention.
    """
    if out.dim() in (2, 3):
        logits = out.reshape(-1, out.shape[-1])
        return logits, (logits.shape[0],)
    if out.dim() >= 4:
        return out, (out.shape[0], *out.shape[2:])
    return out.reshape(1, -1), (1,)


def _target(torch: Any, kind: str, out: Any) -> Any:
    """The target the loss compares with, made once before the steps (like a batch of labels)."""
    if kind == "cross_entropy":
        _, shape = _class_layout(out)
        return torch.zeros(shape, dtype=torch.int64)
    if kind == "mse":
        return torch.randn(out.shape, dtype=torch.float32).to(out.dtype)
    return None


def _loss(torch: Any, kind: str, out: Any, target: Any) -> Any:
    """The loss of one step: cross-entropy over the class dim, mean-square error, or a plain sum.

    ``sum`` stands for a custom loss with negligible intermediates: backward still materialises
    the output's gradient.
    """
    functional = torch.nn.functional

    if kind == "cross_entropy":
        logits, _ = _class_layout(out)
        return functional.cross_entropy(logits.float(), target)
    if kind == "mse":
        return functional.mse_loss(out, target)
    return out.float().sum()


def _optimizer(torch: Any, name: str, params: list[Any]) -> Any:
    lr = 1e-3
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)


def _warm_up(torch: Any, optimizer_name: str) -> None:
    """One training step of a 2x2 Linear and a 1-channel conv, each loss, before the baseline.

    PyTorch initialises lazily on the first backward and optimizer step (the autograd engine's
    thread, and about 80 MiB of imports such as ``torch._dynamo`` on the first ``step``): costs
    of the process, not of the model, that the measurement leaves out.
    """
    layers = torch.nn.Sequential(
        torch.nn.Conv2d(1, 1, 1), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    optimizer = _optimizer(torch, optimizer_name, list(layers.parameters()))
    out = layers(torch.ones(1, 1, 2, 2))
    for kind in ("cross_entropy", "mse", "sum"):
        _loss(torch, kind, out, _target(torch, kind, out)).backward(retain_graph=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def model_dtype(model: Any) -> Any:
    """The dtype of the model's first parameter."""
    return next(model.parameters()).dtype


if __name__ == "__main__":
    main()
