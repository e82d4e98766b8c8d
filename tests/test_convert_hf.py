"""Local Hugging Face folders (config.json + safetensors) to ONNX, offline, tiny random configs.

Oracle: torch's unique ``parameters()`` of the same model loaded by transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from converters.sources import SourceInspection, SourceKind, detect_source, inspect_source  # noqa: E402
from graph_analysis.framework import Cause  # noqa: E402

pytestmark = pytest.mark.torch


def _save(model: Any, folder: Path) -> tuple[int, int]:
    model.save_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return total, buffers


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceInspection, int, Any]:
    folder = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=96, n_positions=32, tie_word_embeddings=True
    )
    model = transformers.GPT2LMHeadModel(config)
    assert model.lm_head.weight is model.transformer.wte.weight
    total, _ = _save(model, folder)
    assert detect_source(str(folder)).kind is SourceKind.HF_FOLDER
    return inspect_source(str(folder)), total, model


def test_gpt2_tied_embedding_counted_once(gpt2: tuple[SourceInspection, int, Any]) -> None:
    ins, total, model = gpt2
    untied = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert untied == total + 96 * 32  # the tie really saves one embedding
    assert ins.framework is not None and ins.reconciliation is not None
    assert ins.framework.totals.total == total
    assert ins.framework.totals.trainable == total
    assert ins.report.parameters.total == total
    # No duplicate storage or any other difference with dynamo(optimize=False).
    assert ins.reconciliation.entries == ()
    assert ins.conversion is not None
    assert any("input_ids" in n for n in ins.conversion.notes)  # says which dummy input was used


def test_gpt2_layer_norms_are_not_merged(gpt2: tuple[SourceInspection, int, Any]) -> None:
    ins, _, model = gpt2
    ln_names = {n for n, _ in model.named_parameters() if ".ln_" in n}
    assert len(ln_names) == 10
    assert ln_names <= {t.name for t in ins.report.tensors}


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceInspection, int, int]:
    folder = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
    )
    # Only config.json: the model is built with random weights (and a note says so).
    config.save_pretrained(folder)
    model = transformers.BertModel(config)
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return inspect_source(str(folder)), total, buffers


def test_tiny_bert(bert: tuple[SourceInspection, int, int]) -> None:
    ins, total, buffers = bert
    assert ins.framework is not None and ins.reconciliation is not None
    assert ins.framework.totals.total == total
    assert ins.framework.totals.buffers == buffers
    # Every difference (if any) is explained to the element, and none changes the parameter count
    # except buffers the graph holds (position/token type ids are constants, not parameters).
    assert ins.reconciliation.is_exact
    assert ins.report.parameters.total == total + sum(
        e.delta_elements for e in ins.reconciliation.entries
    )
    assert all(e.cause is Cause.BUFFER_IN_GRAPH for e in ins.reconciliation.entries)
    assert ins.report.parameters.total == total
    assert ins.conversion is not None
    assert any("randomly initialised" in n for n in ins.conversion.notes)


def test_tiny_t5_encoder_decoder(tmp_path: Path) -> None:
    """Encoder-decoder: decoder_input_ids are added; with this torch the dynamo exporter fails on
    T5 and the TorchScript fallback must keep the six equal (all-ones) norm weights apart."""
    config = transformers.T5Config(
        vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    total, _ = _save(transformers.T5ForConditionalGeneration(config), tmp_path)
    ins = inspect_source(str(tmp_path))
    assert ins.framework is not None and ins.reconciliation is not None
    assert ins.framework.totals.total == total
    assert ins.reconciliation.is_exact
    assert Cause.IDENTICAL_CONTENT not in {e.cause for e in ins.reconciliation.entries}
    assert Cause.REMOVED not in {e.cause for e in ins.reconciliation.entries}
    assert ins.conversion is not None
    assert [i.name for i in ins.conversion.inputs] == ["input_ids", "decoder_input_ids"]
    if ins.conversion.fallback_reason:
        assert "PRESERVE" in ins.conversion.exporter
