"""Check `ckreg export --format onnx|onnx-int8` folders WITHOUT ckreg or torch: onnxruntime + numpy (+ stdlib).

    python bench/e2e_deploy_check.py --data ../shared/data/signglove EXPORT_DIR [EXPORT_DIR ...]

Each folder must reproduce, in a fresh Python process, the accuracy its
`deploy.json` records. The script reads only the folder's own files and the
raw SignGlove CSVs (spec/families.md, "Data ...": columns flex1..flex5, pitch,
roll, yaw in the order `deploy.json` lists; cut to T rows or padded with the
raw pad value; mask 1 on padding rows): it checks the model file's sha256
against `deploy.json`, scales with `scaler.json`, runs the model with
onnxruntime on exactly the recorded `episode_ids` (the label is the class
folder), and compares the accuracy with the recorded one. Prints a table;
exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import unicodedata
from pathlib import Path

import numpy as np
import onnxruntime as ort


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def episode_files(root: Path) -> dict[str, Path]:
    """Relative path (NFC, '/'-separated) -> file, for every CSV under the data folder."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".csv"):
                p = Path(dirpath) / f
                out[nfc(p.relative_to(root).as_posix())] = p
    return out


def read_episode(path: Path, channels: list[str], T: int, pad: float):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    head = [h.strip().lower() for h in rows[0]]
    body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    idx = [head.index(c.lower()) for c in channels]
    arr = np.array([[float(r[i]) for i in idx] for r in body[:T]], dtype=np.float64)
    x = np.full((T, len(channels)), pad, dtype=np.float64)
    m = np.ones(T, dtype=np.int64)
    x[:len(arr)] = arr
    m[:len(arr)] = 0
    return x, m


def check(folder: Path, files: dict[str, Path], threads: int) -> dict:
    rec = json.loads((folder / "deploy.json").read_text(encoding="utf-8"))
    sc = json.loads((folder / "scaler.json").read_text(encoding="utf-8"))
    model = folder / rec["model_file"]
    digest_ok = hashlib.sha256(model.read_bytes()).hexdigest() == rec["files"][rec["model_file"]]
    classes = [nfc(c) for c in rec["classes"]]
    X, M, Y = [], [], []
    for eid in rec["episode_ids"]:
        x, m = read_episode(files[nfc(eid)], rec["channels"], int(rec["T"]), float(rec["pad_value"]))
        X.append(x)
        M.append(m)
        Y.append(classes.index(nfc(eid).split("/", 1)[0]))
    x = ((np.stack(X) - np.asarray(sc["mean"])) / np.asarray(sc["scale"])).astype(np.float32)
    mask, y = np.stack(M), np.asarray(Y)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    preds = []
    for i in range(0, len(x), 64):
        feed = {"x": x[i:i + 64], "mask": mask[i:i + 64]}
        preds.append(sess.run(None, {n: feed[n] for n in names})[0].argmax(1))
    acc = float((np.concatenate(preds) == y).mean())
    quant = (rec.get("quantization") or {}).get("mode")
    return {"folder": str(folder), "ref": rec["ref"], "family": rec["family"],
            "kind": f"int8-{quant}" if quant else rec["format"], "status": rec["status"],
            "recorded": rec["accuracy"], "reproduced": acc, "n": len(y), "sha256_ok": digest_ok,
            "match": digest_ok and abs(acc - rec["accuracy"]) * len(y) < 0.5}   # the same episode count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("exports", nargs="+", type=Path)
    args = ap.parse_args(argv)
    files = episode_files(args.data)
    rows = [check(f, files, args.threads) for f in args.exports]
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("ckreg", "torch"))
    assert not leaked, f"this check must not import {leaked}"
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(f"{'model':<22} {'kind':<12} {'status':<8} {'recorded':>9} {'reproduced':>10} {'episodes':>8}  match")
        for r in rows:
            print(f"{r['ref']:<22} {r['kind']:<12} {r['status']:<8} {100 * r['recorded']:>8.2f}% "
                  f"{100 * r['reproduced']:>9.2f}% {r['n']:>8}  {'yes' if r['match'] else 'NO'}"
                  + ("" if r["sha256_ok"] else " (model file digest differs)"))
        print("torch or ckreg imported: no")
    return 0 if all(r["match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
