"""Small architectures for the memory benchmark: factories taking no arguments (``file.py:Name``).

Random weights from configs (no downloads); sizes chosen so weights and activations are a few to a
few tens of MiB: big enough that the signal beats the runtimes' fixed costs, small enough for a
shared 2-core machine.
"""

from __future__ import annotations

from typing import Any


def mlp() -> Any:
    """Four Linear+GELU layers, 1024 wide (about 16 MiB of fp32 weights)."""
    import torch

    layers: list[Any] = []
    for _ in range(4):
        layers += [torch.nn.Linear(1024, 1024), torch.nn.GELU()]
    return torch.nn.Sequential(*layers)


def cnn() -> Any:
    """A small VGG-like CNN with BatchNorm and ReLU (about 4.5 MiB of weights)."""
    from torch import nn

    def block(cin: int, cout: int) -> list[Any]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 64),
        *block(64, 128),
        *block(128, 256),
        *block(256, 256),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(256, 1000),
    )


def hf_resnet() -> Any:
    """transformers ResNet (bottleneck, depths 2-2-2-2, small widths)."""
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(
        embedding_size=32,
        hidden_sizes=[64, 128, 256, 512],
        depths=[2, 2, 2, 2],
        layer_type="bottleneck",
    )
    return ResNetModel(config)


def hf_bert() -> Any:
    """transformers BERT: 4 layers, hidden 256, 4 heads, vocab 8000 (dropout off)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=8000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config, add_pooling_layer=False)


def hf_gpt2() -> Any:
    """transformers GPT-2 LM head: 4 layers, hidden 256, 4 heads, vocab 8000 (dropout off)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=8000,
        n_embd=256,
        n_layer=4,
        n_head=4,
        n_positions=256,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def hf_vit() -> Any:
    """transformers ViT: 4 layers, hidden 256, patch 8 on 64x64 images (dropout off)."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=64,
        patch_size=8,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTModel(config, add_pooling_layer=False)


# --- the training benchmark: eight architectures as their users train them (with their heads) ---


def resnet50() -> Any:
    """transformers ResNet-50 (bottleneck 3-4-6-3, widths 256-2048) with a 1000-class head."""
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(num_labels=1000))  # type: ignore[call-arg]


def bert_mlm() -> Any:
    """transformers BERT with its masked-LM head: 4 layers, hidden 256, vocab 8000 (no dropout)."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=8000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForMaskedLM(config)


def vit_classifier() -> Any:
    """transformers ViT with a 1000-class head: 4 layers, hidden 256, patch 8 on 64x64."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(  # type: ignore[call-arg]
        image_size=64,
        patch_size=8,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=1000,
    )
    return ViTForImageClassification(config)


def t5_lm() -> Any:
    """transformers T5 encoder-decoder with its LM head: 2+2 layers, d_model 256, vocab 8000.

    Wrapped so that ``forward(input_ids, decoder_input_ids)`` returns the logits (T5's own
    ``forward`` takes ``attention_mask`` second, which a positional export would fill).
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=8000,
        d_model=256,
        d_kv=32,
        d_ff=1024,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=8,
        dropout_rate=0.0,
    )

    class T5Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t5 = T5ForConditionalGeneration(config)

        def forward(self, input_ids: Any, decoder_input_ids: Any) -> Any:
            return self.t5(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits

    return T5Logits()


def lstm_lm() -> Any:
    """An LSTM language model: Embedding(8000, 256), 2-layer LSTM(256 -> 512), Linear(512, 8000)."""
    import torch

    class LstmLm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(8000, 256)
            self.lstm = torch.nn.LSTM(256, 512, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(512, 8000)

        def forward(self, input_ids: Any) -> Any:
            hidden, _ = self.lstm(self.embed(input_ids))
            return self.head(hidden)

    return LstmLm()
