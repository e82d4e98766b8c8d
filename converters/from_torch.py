"""PyTorch to ONNX: Python code, TorchScript archives, torch.export programs and HF folders.

Runs inside the converter child process (``converters._child``); torch is imported inside the
functions. Export uses ``torch.onnx.export(dynamo=True, optimize=False)``: the optimizer merges
tensors with identical content (a fresh LayerNorm's weights) and folds BatchNorm into Conv, which
changes parameter counts. When the dynamo exporter fails, the TorchScript exporter runs with
``do_constant_folding=False`` (constant folding writes a tied embedding a second time, transposed).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters._child import report_progress
from converters._common import (
    TORCH_DTYPES,
    FrameworkTensorData,
    InputSpec,
    bindings_from_json,
    dynamic_axes_for,
    first_line,
    import_user_code,
)
from converters._onnx_io import finish_export
from graph_analysis.bindings import Bindings
from graph_analysis.errors import ConversionError, ShapeBindingError, SourceError
from graph_analysis.framework import (
    FrameworkTotals,
    TensorKind,
)

__all__ = ["convert_torch"]

_DEFAULT_SEQUENCE = 8
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


# ---------------------------------------------------------------------------------------------
# Loading


def _build_from_code(location: str, attr: str, source: str) -> Any:
    import torch

    obj = import_user_code(location, attr, source)
    if isinstance(obj, torch.nn.Module):  # a module-level instance: use it as it is
        return obj
    if not callable(obj):
        raise SourceError(source, f"{attr} is a {type(obj).__name__}, not a model class or factory")
    try:
        model = obj()
    except Exception as e:
        raise SourceError(source, f"calling {attr}() failed: {first_line(e)}") from e
    if not isinstance(model, torch.nn.Module):
        raise SourceError(
            source, f"{attr}() returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _load_state_dict(model: Any, weights: str, source: str) -> None:
    import torch

    try:
        # weights_only: a checkpoint is a pickle; never run code from it.
        loaded = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SourceError(
            weights, f"not a readable weights-only checkpoint: {first_line(e)}"
        ) from e
    state = loaded
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise SourceError(weights, "the checkpoint holds no state_dict of tensors")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise SourceError(weights, f"the checkpoint does not fit {source}: {first_line(e)}") from e


def _load_hf_folder(folder: str, source: str, notes: list[str]) -> Any:
    try:
        import transformers
    except ImportError as e:
        raise SourceError(
            source, "Hugging Face folders need transformers: pip install 'modelsize[torch]'"
        ) from e
    try:
        # trust_remote_code stays False: a folder's own modelling code is never run.
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise SourceError(source, f"config.json cannot be read: {first_line(e)}") from e
    if hasattr(config, "use_cache"):
        config.use_cache = False  # no past_key_values outputs in the exported graph
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModel
        notes.append(f"architecture {arch!r} unknown to transformers; using AutoModel")
    has_weights = any((Path(folder) / f).exists() for f in _HF_WEIGHT_FILES)
    try:
        if has_weights:
            model = cls.from_pretrained(folder, config=config, local_files_only=True)
        else:
            notes.append(
                "the folder has no weights: parameters randomly initialised from config.json"
            )
            model = cls.from_config(config) if cls is transformers.AutoModel else cls(config)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise SourceError(source, f"cannot build the model: {first_line(e)}") from e
    return model


def _to_numpy(tensor: Any) -> Any:
    import torch

    values = tensor.detach().cpu().contiguous()
    if values.dtype == torch.bfloat16:  # numpy has no bfloat16; match by the raw bits
        return values.view(torch.int16).numpy().view("u2")
    if values.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return values.view(torch.uint8).numpy()
    return values.numpy()


def _module_types(model: Any) -> dict[str, str]:
    types: dict[str, str] = {}
    for name, module in model.named_modules():
        types[name] = str(getattr(module, "original_name", None) or type(module).__name__)
    return types


def _collect_tensors(model: Any) -> tuple[list[FrameworkTensorData], FrameworkTotals]:
    """Unique parameters (tied once, with every alias) and buffers, as torch defines them."""
    modules = _module_types(model)
    by_id: dict[int, FrameworkTensorData] = {}
    ordered: list[FrameworkTensorData] = []

    def owner(name: str) -> str:
        return modules.get(name.rpartition(".")[0], "")

    for kind, named in (
        (TensorKind.PARAMETER, model.named_parameters(remove_duplicate=False)),
        (TensorKind.BUFFER, model.named_buffers(remove_duplicate=False)),
    ):
        for name, tensor in named:
            if tensor is None:
                continue
            known = by_id.get(id(tensor))
            if known is not None:
                known.aliases = (*known.aliases, name)
                continue
            data = FrameworkTensorData(
                name=name,
                kind=kind,
                trainable=bool(kind is TensorKind.PARAMETER and tensor.requires_grad),
                values=_to_numpy(tensor),
                module=owner(name),
                layer_hint=name.rpartition(".")[0],
            )
            by_id[id(tensor)] = data
            ordered.append(data)
    params = [t for t in ordered if t.kind is TensorKind.PARAMETER]
    total = sum(t.num_elements for t in params)
    trainable = sum(t.num_elements for t in params if t.trainable)
    buffers = sum(t.num_elements for t in ordered if t.kind is TensorKind.BUFFER)
    return ordered, FrameworkTotals(total, trainable, total - trainable, buffers)


# ---------------------------------------------------------------------------------------------
# Inputs


def _forward_names(model: Any) -> list[str]:
    schema = getattr(getattr(model, "forward", None), "schema", None)
    if schema is not None:  # a TorchScript method: its schema names the inputs (after self)
        return [a.name for a in schema.arguments[1:]]
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _guess_first_input(model: Any) -> tuple[tuple[int, ...], str, str]:
    """An input shape from the first layer holding parameters: (dims, dtype, how it was chosen)."""
    for name, module in model.named_modules():
        kind = str(getattr(module, "original_name", None) or type(module).__name__)
        weight = getattr(module, "weight", None)
        if weight is None or not hasattr(weight, "shape"):
            continue
        if kind == "Linear":
            return (1, int(weight.shape[1])), "FLOAT", f"first layer {name} is Linear"
        if kind in ("Embedding", "EmbeddingBag"):
            return (1, _DEFAULT_SEQUENCE), "INT64", f"first layer {name} is {kind}"
        where = f"the first layer {name or 'of the model'} is {kind}"
        if kind.startswith("Conv"):
            where += f" with {int(weight.shape[1])} input channels"
        raise ShapeBindingError(None, f"give the input shape with --input-shape ({where})")
    raise ShapeBindingError(None, "give the input shape with --input-shape")


def _hf_default_inputs(model: Any) -> tuple[dict[str, tuple[tuple[int, ...], str]], str]:
    """Dummy inputs from a transformers model's config: (inputs, what was chosen, for a note)."""
    config = model.config
    main = getattr(model, "main_input_name", "input_ids")
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    seq = min(_DEFAULT_SEQUENCE, int(limit)) if limit else _DEFAULT_SEQUENCE
    inputs: dict[str, tuple[tuple[int, ...], str]] = {}
    if main == "input_ids":
        inputs["input_ids"] = ((1, seq), "INT64")
    elif main == "pixel_values":
        channels = int(getattr(config, "num_channels", 3))
        size = getattr(config, "image_size", 224)
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        inputs["pixel_values"] = ((1, channels, height, width), "FLOAT")
    elif main == "input_values":  # raw audio (wav2vec2-like): one second at 16 kHz
        inputs["input_values"] = ((1, 16000), "FLOAT")
    elif main == "input_features" and hasattr(config, "num_mel_bins"):
        # Whisper-like encoders take exactly 2 x max_source_positions frames.
        frames = 2 * int(getattr(config, "max_source_positions", 1500))
        inputs["input_features"] = ((1, int(config.num_mel_bins), frames), "FLOAT")
    else:
        raise ShapeBindingError(
            None, f"give the input shape with --input-shape (main input {main!r})"
        )
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in _forward_names(
        model
    ):
        inputs["decoder_input_ids"] = ((1, seq), "INT64")
    described = ", ".join(f"{name} {dims}" for name, (dims, _) in inputs.items())
    return inputs, f"dummy inputs from config.json: {described}"


def _default_dtype(name: str) -> str:
    """Token ids and masks (``input_ids``, ``attention_mask``) are integers; anything else float."""
    return "INT64" if name.endswith("ids") or "mask" in name else "FLOAT"


def _resolve_inputs(
    model: Any,
    bindings: Bindings,
    dynamic: Sequence[str],
    defaults: dict[str, tuple[tuple[int, ...], str]] | None,
    notes: list[str],
) -> list[InputSpec]:
    names = _forward_names(model)
    chosen: dict[str, tuple[tuple[int, ...], str]] = {}
    if bindings.shapes:
        for spec in bindings.shapes:
            if spec.name is None:
                if not names:
                    raise ShapeBindingError(None, "cannot tell the model's first input name")
                chosen[names[0]] = (spec.dims, _default_dtype(names[0]))
            elif names and spec.name not in names:
                raise ShapeBindingError(
                    None, f"the model has no input {spec.name!r}; forward takes {', '.join(names)}"
                )
            else:
                chosen[spec.name] = (spec.dims, _default_dtype(spec.name))
        if defaults:
            # Integer inputs (token ids) keep their dtype when only their shape is given.
            for key, (given_dims, _) in list(chosen.items()):
                if key in defaults:
                    chosen[key] = (given_dims, defaults[key][1])
    elif defaults:
        chosen = dict(defaults)
    else:
        dims, dtype, why = _guess_first_input(model)
        if not names:
            raise ShapeBindingError(None, "give the input shape with --input-shape")
        chosen[names[0]] = (dims, dtype)
        notes.append(f"input {names[0]} of shape {dims} ({why}); set it with --input-shape")
    specs: list[InputSpec] = []
    for name, (chosen_dims, default_dtype) in chosen.items():
        dims = chosen_dims
        dtype = bindings.dtypes.get(name, bindings.dtypes.get(None, default_dtype))
        if dtype not in TORCH_DTYPES:
            raise ShapeBindingError(
                None, f"--input-dtype {dtype} is not supported for PyTorch export"
            )
        if bindings.batch is not None and dims:
            dims = (bindings.batch, *dims[1:])
        axes = dynamic_axes_for(dims, dtype, dynamic)
        if any(dims[a] == 1 for a in axes):
            # torch.export specialises axes of size 0 or 1: an example of 2 keeps them symbolic.
            dims = tuple(2 if a in axes and d == 1 else d for a, d in enumerate(dims))
            notes.append(f"{name}: dynamic axes exported from an example of size 2")
        specs.append(InputSpec(name, tuple(dims), dtype, axes))
    return specs


def _example_tensors(specs: Sequence[InputSpec]) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, Any] = {}
    for spec in specs:
        dtype = getattr(torch, TORCH_DTYPES[spec.dtype])
        if dtype.is_floating_point:
            tensors[spec.name] = torch.randn(spec.dims, generator=generator).to(dtype)
        elif dtype == torch.bool:
            tensors[spec.name] = torch.ones(spec.dims, dtype=dtype)
        else:
            # Token ids of 0 are valid for every vocabulary.
            tensors[spec.name] = torch.zeros(spec.dims, dtype=dtype)
    return tensors


def _check_forward(
    model: Any, inputs: dict[str, Any], specs: Sequence[InputSpec], source: str, positional: bool
) -> None:
    import torch

    shapes = ", ".join(f"{s.name} {tuple(s.dims)} {s.dtype}" for s in specs)
    try:
        with torch.no_grad():
            if positional:
                model(*(inputs[s.name] for s in specs))
            else:
                model(**inputs)
    except Exception as e:
        raise ShapeBindingError(
            source, f"the model rejects the input ({shapes}): {first_line(e)}"
        ) from e


# ---------------------------------------------------------------------------------------------
# Export


def _export(
    model: Any, inputs: dict[str, Any], specs: Sequence[InputSpec], path: Path, positional: bool
) -> tuple[str, str | None]:
    """Export with dynamo (optimize=False), falling back to TorchScript. Returns (exporter, why).

    ``model`` may be an ``ExportedProgram`` (exported as is, with positional inputs).
    """
    import torch

    names = [s.name for s in specs]
    args = tuple(inputs[n] for n in names)
    fallback_reason: str | None = None
    is_script = isinstance(model, torch.jit.ScriptModule)
    if is_script:
        fallback_reason = "the dynamo exporter does not take TorchScript modules"
    else:
        report_progress("exporting with the dynamo exporter")
        try:
            dynamic_shapes: Any = None
            if any(s.dynamic for s in specs):
                dim = torch.export.Dim
                per_input = [
                    {a: dim(label) for a, label in s.dynamic.items()} or None for s in specs
                ]
                dynamic_shapes = (
                    tuple(per_input) if positional else dict(zip(names, per_input, strict=True))
                )
            program = torch.onnx.export(
                model,
                args if positional else (),
                kwargs=None if positional else inputs,
                dynamo=True,
                optimize=False,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
            if program is None:
                raise ConversionError(None, "the dynamo exporter returned nothing")
            program.save(str(path))
            return "torch.onnx.export(dynamo=True, optimize=False)", None
        except Exception as e:
            fallback_reason = f"dynamo exporter failed: {first_line(e)}"
    report_progress("exporting with the TorchScript exporter")
    # The TorchScript exporter merges initializers with equal values (a fresh model's LayerNorm
    # weights) when the root module is not training, and under TrainingMode.EVAL its eval peephole
    # folds BatchNorm into Conv. Exporting in PRESERVE mode with only the root module flagged as
    # training keeps every parameter while all submodules stay in eval mode (Dropout, BatchNorm
    # export as inference). The root's own forward may read self.training, so the result is
    # checked against the eval-mode output; if it differs, the plain eval export is used.
    try:
        _torchscript_export(model, args, inputs, specs, path, positional, preserve=True)
        if _outputs_match(model, path, inputs, specs, positional):
            exporter = "torch.onnx.export(dynamo=False, do_constant_folding=False, PRESERVE)"
            return exporter, fallback_reason
    except Exception:  # retried below in plain eval mode, whose error is reported
        pass
    try:
        _torchscript_export(model, args, inputs, specs, path, positional, preserve=False)
    except Exception as e:
        raise ConversionError(
            None, f"{fallback_reason}; TorchScript exporter failed: {first_line(e)}"
        ) from e
    return "torch.onnx.export(dynamo=False, do_constant_folding=False)", fallback_reason


def _torchscript_export(
    model: Any,
    args: tuple[Any, ...],
    inputs: dict[str, Any],
    specs: Sequence[InputSpec],
    path: Path,
    positional: bool,
    *,
    preserve: bool,
) -> None:
    import torch

    model.eval()
    if preserve:
        model.training = True  # the root only: see _export
    try:
        torch.onnx.export(
            model,
            args if positional else (),
            str(path),
            # By keyword: the inputs given need not be the first parameters of forward().
            kwargs=None if positional else inputs,
            dynamo=False,
            input_names=[s.name for s in specs],
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE if preserve else torch.onnx.TrainingMode.EVAL,
            dynamic_axes={s.name: dict(s.dynamic) for s in specs if s.dynamic} or None,
        )
    finally:
        model.eval()


def _outputs_match(
    model: Any, path: Path, inputs: dict[str, Any], specs: Sequence[InputSpec], positional: bool
) -> bool:
    """Whether the exported graph's first output equals the eval-mode model's (onnxruntime)."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name].numpy() for i in session.get_inputs() if i.name in inputs}
    if len(feed) != len(session.get_inputs()):
        return False
    got = session.run(None, feed)[0]
    with torch.no_grad():
        out = model(*(inputs[s.name] for s in specs)) if positional else model(**inputs)
    leaves = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    if not leaves or tuple(leaves[0].shape) != tuple(got.shape):
        return False
    expected = leaves[0].detach().float().numpy()
    return bool(np.allclose(got.astype(np.float64), expected, rtol=1e-3, atol=1e-4))


def convert_torch(
    *,
    kind: str,
    location: str,
    attr: str | None,
    source: str,
    out_path: str,
    bindings: dict[str, Any],
    dynamic: list[str],
    weights: str | None = None,
) -> dict[str, Any]:
    """Load a PyTorch source, export it to ONNX with framework metadata, return the result as JSON.

    Args:
        kind: a ``SourceKind`` value (torch_code, torchscript, torch_export, hf_folder).
        location: the file, folder or module path.
        attr: the class or factory name for code sources.
        source: the user's argument, for messages.
        out_path: the ONNX file to write.
        bindings: ``bindings_to_json`` of the user's input description.
        dynamic: ``DynamicAxis`` values to keep symbolic.
        weights: a state_dict checkpoint for code sources.

    Raises:
        SourceError: unusable code, checkpoint or folder.
        ShapeBindingError: no usable input shape, or the model rejects it.
        ConversionError: both exporters failed.
    """
    import torch

    notes: list[str] = []
    export_target: Any = None
    parsed = bindings_from_json(bindings)
    defaults: dict[str, tuple[tuple[int, ...], str]] | None = None
    report_progress("loading the model")
    if kind == "torch_code":
        assert attr is not None
        model = _build_from_code(location, attr, source)
        if weights:
            _load_state_dict(model, weights, source)
            notes.append(f"weights loaded from {weights} (weights_only=True)")
    elif kind == "torchscript":
        try:
            model = torch.jit.load(location, map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as e:
            raise SourceError(source, f"not a loadable TorchScript archive: {first_line(e)}") from e
    elif kind == "torch_export":
        try:
            program = torch.export.load(location)
        except Exception as e:
            raise SourceError(
                source, f"not a loadable torch.export program: {first_line(e)}"
            ) from e
        export_target = program
        model = program.module()
        example = getattr(program, "example_inputs", None)
        if example is not None and not parsed.shapes:
            args, kwargs = example
            names = _forward_names(model) or [f"input_{i}" for i in range(len(args))]
            defaults = {
                n: (tuple(int(d) for d in t.shape), _onnx_dtype_name(t))
                for n, t in zip(names, args, strict=False)
            }
            defaults.update(
                {
                    k: (tuple(int(d) for d in t.shape), _onnx_dtype_name(t))
                    for k, t in kwargs.items()
                }
            )
    elif kind == "hf_folder":
        model = _load_hf_folder(location, source, notes)
        if not parsed.shapes:
            defaults, why = _hf_default_inputs(model)
            notes.append(why + " (set it with --input-shape)")
        else:
            defaults, _ = _hf_default_inputs(model)
    else:
        raise SourceError(source, f"not a PyTorch source ({kind})")
    if kind != "torch_export":  # an exported program's module is already in its traced mode
        model.eval()
    tensors, totals = _collect_tensors(model)
    specs = _resolve_inputs(model, parsed, dynamic, defaults, notes)
    inputs = _example_tensors(specs)
    report_progress("checking the model on the example input")
    positional = kind in ("torch_export", "torchscript")
    _check_forward(model, inputs, specs, source, positional)

    out = Path(out_path)
    with tempfile.TemporaryDirectory(
        prefix=f".modelsize-export-{os.getpid()}-", dir=out.parent
    ) as tmp:
        exported = Path(tmp) / "model.onnx"
        exporter, fallback_reason = _export(
            export_target if export_target is not None else model,
            inputs,
            specs,
            exported,
            positional,
        )
        report_progress("recording framework counts")
        return finish_export(
            exported,
            out,
            tensors,
            framework="torch",
            version=torch.__version__,
            exporter=exporter,
            fallback_reason=fallback_reason,
            totals=totals,
            inputs=specs,
            notes=notes,
        )


def _onnx_dtype_name(tensor: Any) -> str:
    reverse = {v: k for k, v in TORCH_DTYPES.items()}
    return reverse.get(str(tensor.dtype).removeprefix("torch."), "FLOAT")
