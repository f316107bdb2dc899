"""Check `ckreg export` output WITHOUT ckreg: plain torch + safetensors + json (+ numpy, csv) only.

    python bench/e2e_export_check.py --data ../shared/data/signglove EXPORT_DIR [EXPORT_DIR ...]

Issue #5, "Done when" 3: the exported files must load in a fresh Python
process and reproduce the recorded accuracy. This script is deliberately
independent of ckreg: it re-implements the SignGlove preprocessing
(spec/families.md, "Data ...": columns flex1..flex5, pitch, roll, yaw; cut or
pad to T with the raw value 1.0; padding mask) and the forward passes of the
recurrent and CNN families from the spec, builds each model from the
`spec` in the safetensors `__metadata__`, loads the weights with
`strict=True`, scales with `scaler.json` and compares its accuracy over all
episodes with the `accuracy` recorded in the metadata. Prints a table; exit 1
on any mismatch.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import unicodedata
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

CHANNELS = ["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]


# ----------------------------------------------------------------------------- data (spec, "Data ...")

def load_signglove(root: Path, class_names: list[str], T: int, pad: float):
    X, M, Y, skipped = [], [], [], 0
    index = {unicodedata.normalize("NFC", c): i for i, c in enumerate(class_names)}
    for cdir in sorted(root.iterdir()):
        k = index.get(unicodedata.normalize("NFC", cdir.name))
        if k is None or not cdir.is_dir():
            continue
        for f in sorted(cdir.rglob("episode_*.csv")):
            with open(f, encoding="utf-8-sig", newline="") as fh:
                rows = [r for r in csv.reader(fh)]
            head = [h.strip().lower() for h in rows[0]] if rows else []
            body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
            try:
                idx = [head.index(c) for c in CHANNELS]
                arr = np.array([[r[i] for i in idx] for r in body[:T]], dtype=np.float64)
            except (ValueError, IndexError):
                skipped += 1
                continue
            if len(body) < 2 or not np.isfinite(arr).all():   # degenerate: skipped, as ckreg does by default
                skipped += 1
                continue
            x = np.full((T, len(CHANNELS)), pad, dtype=np.float32)
            m = np.ones(T, dtype=np.uint8)
            x[:len(arr)] = arr
            m[:len(arr)] = 0
            X.append(x)
            M.append(m)
            Y.append(k)
    return np.stack(X), np.stack(M), np.asarray(Y), skipped


# ----------------------------------------------------------------------------- models (spec, "Families")

def readout(out, mask, mode):
    if mode == "last":
        return out[:, -1]
    idx = ((mask == 0).sum(1).long() - 1).clamp(0, out.size(1) - 1)
    return out[torch.arange(out.size(0)), idx]


class RNNHead(nn.Module):
    def __init__(self, n_in, h, k):
        super().__init__()
        self.output_layers = nn.Sequential(nn.Linear(n_in, 2 * h), nn.Identity(), nn.Tanh(), nn.Linear(2 * h, k))

    def forward(self, x):
        return self.output_layers(x)


class Recurrent(nn.Module):
    """GRU / LSTM (dense projection `RNN.0`, stack `RNN.1`) and StackedGRU / StackedLSTM (`RNN`): last-step."""

    def __init__(self, s):
        super().__init__()
        cell = {"GRU": nn.GRU, "LSTM": nn.LSTM}[s.get("cell") or ("LSTM" if "LSTM" in s["family"] else "GRU")]
        bi = bool(s.get("bidirectional"))
        H, L = s["hidden_size"], s["num_layers"]
        if s["family"] in ("GRU", "LSTM"):
            self.RNN = nn.Sequential(nn.Linear(s["input_size"], s["proj_size"]),
                                     cell(s["proj_size"], H, L, batch_first=True, bidirectional=bi))
        else:
            self.RNN = cell(s["input_size"], H, L, batch_first=True, bidirectional=bi)
        self.output_layers = RNNHead(H * (2 if bi else 1), H, s["num_classes"])

    def forward(self, x, mask):
        out = self.RNN[1](self.RNN[0](x))[0] if isinstance(self.RNN, nn.Sequential) else self.RNN(x)[0]
        return self.output_layers(readout(out, mask, "last"))


class ConvRecurrent(nn.Module):
    """CNNGRU, CNNStackedGRU, MSCGRU, MSCSGRU (1D), MS3DGRU, MS3DStackedGRU (3D): valid-step readout."""

    def __init__(self, s):
        super().__init__()
        fam, H, L, F = s["family"], s["hidden_size"], s["num_layers"], s["cnn_filters"]
        self.ms3d = fam.startswith("MS3D")
        self.two = fam in ("CNNStackedGRU", "MSCSGRU", "MS3DStackedGRU")
        kernels = [tuple(k) * (3 if self.ms3d and len(k) == 1 else 1) for k in s["tower_kernels"]]
        conv, bn, cin = (nn.Conv3d, nn.BatchNorm3d, 1) if self.ms3d else (nn.Conv1d, nn.BatchNorm1d, s["input_size"])
        self.towers = []
        if fam in ("CNNGRU", "CNNStackedGRU"):
            k = kernels[0]
            self.cnn = nn.Sequential(conv(cin, F, k, padding=tuple(v // 2 for v in k)), bn(F), nn.ReLU(),
                                     nn.MaxPool1d(2, 2), nn.Identity())
            rnn_in = F
        else:
            for i, k in enumerate(kernels, 1):
                layers = [conv(cin, F, k, padding=tuple(v // 2 for v in k)), bn(F), nn.ReLU()]
                if fam == "MS3DStackedGRU":
                    layers += [nn.Conv3d(F, F, 3, padding=1), nn.BatchNorm3d(F), nn.ReLU()]
                setattr(self, f"tower{i}", nn.Sequential(*layers))
                self.towers.append(f"tower{i}")
            n = len(kernels) * F
            if self.ms3d:
                pool = tuple(s.get("pool") or ((2, 4, 2) if fam == "MS3DGRU" else (1, 4, 2)))
                self.cnn_post = nn.Sequential(bn(n), nn.ReLU(), nn.MaxPool3d(pool), nn.Identity())
                rnn_in = n * (4 // pool[1]) * (2 // pool[2])
            else:
                self.cnn_post = nn.Sequential(bn(n), nn.ReLU(), nn.MaxPool1d(2, 2), nn.Identity())
                rnn_in = n
        if self.two:
            self.gru1 = nn.GRU(rnn_in, H, 1, batch_first=True)
            self.gru2 = nn.GRU(H, H, L - 1, batch_first=True)
        else:
            self.gru = nn.GRU(rnn_in, H, L, batch_first=True)
        self.output_layers = nn.Sequential(nn.Linear(H, 2 * H), nn.ReLU(), nn.Identity(), nn.Linear(2 * H, s["num_classes"]))

    def forward(self, x, mask):
        B, T, C = x.shape
        if self.ms3d:
            z = x.reshape(B, T, 4, 2).unsqueeze(1)
            z = self.cnn_post(torch.cat([getattr(self, t)(z) for t in self.towers], 1)).permute(0, 2, 1, 3, 4)
            z = z.reshape(B, z.size(1), -1)
        else:
            z = x.transpose(1, 2)
            z = self.cnn_post(torch.cat([getattr(self, t)(z) for t in self.towers], 1)) if self.towers else self.cnn(z)
            z = z.transpose(1, 2)
        out = self.gru2(self.gru1(z)[0])[0] if self.two else self.gru(z)[0]
        return self.output_layers(readout(out, mask, "valid"))


def build(spec: dict) -> nn.Module:
    fam = spec["family"]
    if fam in ("GRU", "LSTM", "StackedGRU", "StackedLSTM"):
        return Recurrent(spec)
    if fam in ("CNNGRU", "CNNStackedGRU", "MSCGRU", "MSCSGRU", "MS3DGRU", "MS3DStackedGRU"):
        return ConvRecurrent(spec)
    raise SystemExit(f"{fam}: not covered by this standalone check")


# ----------------------------------------------------------------------------- main

def check(export: Path, data: Path, cache: dict) -> dict:
    with safe_open(str(export / "weights.safetensors"), framework="pt") as f:
        meta = f.metadata() or {}
    spec = json.loads(meta["spec"])
    classes = json.loads(meta["class_names"])
    pre = json.loads(meta.get("preprocessing") or "{}")
    T, pad = int(pre.get("T", 87)), float(pre.get("pad_value", 1.0))
    key = (tuple(classes), T, pad)
    if key not in cache:
        cache[key] = load_signglove(data, classes, T, pad)
    X, M, Y, skipped = cache[key]
    model = build(spec)
    model.load_state_dict(load_file(str(export / "weights.safetensors")), strict=True)
    model.eval()
    sc = json.load(open(export / "scaler.json", encoding="utf-8"))
    Xs = ((X.astype(np.float64) - np.asarray(sc["mean"])) / np.asarray(sc["scale"])).astype(np.float32)
    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(Xs[i:i + 256]), torch.from_numpy(M[i:i + 256]))
                            for i in range(0, len(Xs), 256)])
    acc = float((logits.argmax(1).numpy() == Y).mean())
    recorded = float(meta["accuracy"]) if meta.get("accuracy") else None
    return {"export": str(export), "name": meta.get("name"), "version": meta.get("version"), "family": spec["family"],
            "recorded": recorded, "reproduced": acc, "n": int(len(Y)), "skipped": skipped,
            "match": recorded is not None and abs(acc - recorded) * len(Y) < 0.5}   # the same episode count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("exports", nargs="+", type=Path)
    args = ap.parse_args(argv)
    assert "ckreg" not in sys.modules
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cache: dict = {}
    rows = [check(e, args.data, cache) for e in args.exports]
    assert not any(m.startswith("ckreg") for m in sys.modules), "this check must not import ckreg"
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(f"{'model':<16} {'family':<15} {'recorded':>9} {'reproduced':>10} {'episodes':>8}  match")
        for r in rows:
            rec = "-" if r["recorded"] is None else f"{100 * r['recorded']:.2f}%"
            print(f"{r['name'] + '@' + str(r['version']):<16} {r['family']:<15} {rec:>9} "
                  f"{100 * r['reproduced']:>9.2f}% {r['n']:>8}  {'yes' if r['match'] else 'NO'}")
    return 0 if all(r["match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
