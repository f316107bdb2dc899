"""Hand-written third-party architectures (torch), tiny and randomly initialised.

torchvision and timm cannot be installed beside the pinned torch, so their
layouts are written out here: the same module names and shapes as
`torchvision.models.resnet18` and a timm ViT, at small widths.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (conv1/bn1/layer1..4/fc), widths scaled by `w / 64`."""

    def __init__(self, w: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        widths = [w, 2 * w, 4 * w, 8 * w]
        cin = w
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)


class ViTBlock(nn.Module):
    def __init__(self, d: int, ffn: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, ffn)
        self.mlp.fc2 = nn.Linear(ffn, d)


class TimmViT(nn.Module):
    """timm's vit layout: patch_embed.proj, cls_token, pos_embed, blocks.N.attn.qkv, norm, head."""

    def __init__(self, d: int = 16, depth: int = 3, ffn: int = 40, num_classes: int = 5, patches: int = 16):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, d))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 4, 4)
        self.blocks = nn.Sequential(*[ViTBlock(d, ffn) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)


class Conv1D(nn.Module):
    """Hugging Face's GPT-2 Conv1D: weight stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))


class GPT2Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * d, d)
        self.attn.c_proj = Conv1D(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(4 * d, d)
        self.mlp.c_proj = Conv1D(d, 4 * d)


class GPT2ish(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, layers: int = 2, positions: int = 24):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(positions, d)
        self.h = nn.ModuleList([GPT2Block(d) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)


class LlamaAttn(nn.Module):
    def __init__(self, d: int, kv: int):
        super().__init__()
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class LlamaLayer(nn.Module):
    def __init__(self, d: int, kv: int, ffn: int):
        super().__init__()
        self.self_attn = LlamaAttn(d, kv)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, ffn, bias=False)
        self.mlp.up_proj = nn.Linear(d, ffn, bias=False)
        self.mlp.down_proj = nn.Linear(ffn, d, bias=False)
        self.input_layernorm = RMSNorm(d)
        self.post_attention_layernorm = RMSNorm(d)


class Llamaish(nn.Module):
    def __init__(self, vocab: int = 60, d: int = 32, kv: int = 8, ffn: int = 44, layers: int = 3):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList([LlamaLayer(d, kv, ffn) for _ in range(layers)])
        self.model.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)


class T5Attn(nn.Module):
    def __init__(self, d: int, rel: bool):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        if rel:
            self.relative_attention_bias = nn.Embedding(32, 4)


class T5Encoderish(nn.Module):
    def __init__(self, vocab: int = 40, d: int = 16, ffn: int = 24, layers: int = 2):
        super().__init__()
        self.shared = nn.Embedding(vocab, d)
        self.block = nn.ModuleList()
        for i in range(layers):
            b = nn.Module()
            b.layer = nn.ModuleList([nn.Module(), nn.Module()])
            b.layer[0].SelfAttention = T5Attn(d, rel=i == 0)
            b.layer[0].layer_norm = RMSNorm(d)
            b.layer[1].DenseReluDense = nn.Module()
            b.layer[1].DenseReluDense.wi = nn.Linear(d, ffn, bias=False)
            b.layer[1].DenseReluDense.wo = nn.Linear(ffn, d, bias=False)
            b.layer[1].layer_norm = RMSNorm(d)
            self.block.append(b)
        self.final_layer_norm = RMSNorm(d)


class CellStack(nn.Module):
    """A hand-unrolled recurrent model: LSTMCell/GRUCell stacks (weight_ih, no _l0)."""

    def __init__(self):
        super().__init__()
        self.cells = nn.ModuleList([nn.LSTMCell(8, 24), nn.LSTMCell(24, 24), nn.LSTMCell(24, 24)])
        self.gru_cell = nn.GRUCell(24, 12)
        self.out = nn.Linear(12, 4)


class PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.PReLU(), nn.Linear(16, 16), nn.PReLU(16), nn.Linear(16, 3))


class VQAutoencoder(nn.Module):
    """Encoder, codebook, decoder that reconstructs its 20-wide input: no classifier."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 8))
        self.quantizer = nn.Module()
        self.quantizer.codebook = nn.Embedding(64, 8)
        self.decoder = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 20))


def counts(model: nn.Module) -> tuple[int, int]:
    """(parameter elements, persistent buffer elements) as torch counts them (tied tensors once)."""
    params = sum(p.numel() for p in model.parameters())
    sd = model.state_dict(keep_vars=True)
    buffers = sum(v.numel() for k, v in sd.items() if not isinstance(v, nn.Parameter))
    return params, buffers
