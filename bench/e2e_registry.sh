#!/usr/bin/env bash
# End-to-end acceptance of issue #5 on the real archive and data ("Done when" 1-3):
#   1. audit --data: which checkpoint + scaler pairs fail, which scaler recovery fixes
#   2. retrain --missing (+ --register-existing): every manifest model verified in the registry at >= 99%
#   3. export each model@best and reproduce its recorded accuracy in a fresh process WITHOUT ckreg
#      (plain torch + safetensors + json: bench/e2e_export_check.py)
#   4. export each model@best as ONNX, dynamic and static INT8 (verified on the test split, recorded as
#      artifacts), and reproduce each artifact's accuracy with onnxruntime + numpy only
#      (bench/e2e_deploy_check.py)
# Long (trains GRU, StackedGRU and MS3DStackedGRU on CPU): run it in the background, e.g.
#   nohup bench/e2e_registry.sh > /tmp/ckreg-e2e.log 2>&1 &
# Re-running is cheap: retrain skips models whose inputs are unchanged (lock files in $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-../shared/data/signglove}
ARCHIVE=${ARCHIVE:-../shared/checkpoints/klp-archive}
MANIFEST=${MANIFEST:-manifests/signglove.yaml}
REG=${REG:-/tmp/ckreg-reg}
OUT=${OUT:-/tmp/ckreg-retrained}
EXP=${EXP:-/tmp/ckreg-export}
LOGS=${LOGS:-/tmp/ckreg-e2e}
MIN_ACC=${MIN_ACC:-0.99}
mkdir -p "$LOGS"

echo "== 1. ckreg audit $ARCHIVE -m $MANIFEST --data $DATA"
ckreg audit "$ARCHIVE" -m "$MANIFEST" --data "$DATA" --format json --output "$LOGS/audit.json"
echo "audit exit code: $? (1 expected: the archive has findings)"
python - "$LOGS/audit.json" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
for v in rep.get("extra", {}).get("verification", []):
    acc = "-" if v["accuracy"] is None else f"{100 * v['accuracy']:.2f}%"
    print(f"  pair {v['ckpt']:<58} {acc:>8}  {'pass' if v['passed'] else 'FAIL'}")
for f in rep["findings"]:
    if f["code"] in ("accuracy-below-declared", "scaler-recovered", "verify-failed", "model-missing"):
        print(f"  {f['code']:<24} {f['path']}: {f['message'][:160]}")
EOF

echo "== 2. ckreg retrain -m $MANIFEST --data $DATA --missing --register-existing --registry $REG --out $OUT --min-acc $MIN_ACC"
ckreg retrain -m "$MANIFEST" --data "$DATA" --archive "$ARCHIVE" --missing --register-existing \
    --registry "$REG" --out "$OUT" --min-acc "$MIN_ACC"
echo "retrain exit code: $?"

echo "== registry: every manifest model verified at >= $MIN_ACC, with provenance"
ckreg registry ls --json --registry "$REG" > "$LOGS/ls.json"
python - "$MANIFEST" "$LOGS/ls.json" "$REG" "$MIN_ACC" <<'EOF'
import json, sys
from ckreg.manifest import load_manifest
from ckreg.registry import Registry
manifest, ls, reg, min_acc = load_manifest(sys.argv[1]), json.load(open(sys.argv[2])), Registry(sys.argv[3]), float(sys.argv[4])
ok = True
print(f"  {'model':<15} {'ref':<18} {'accuracy':>9} verified  source           scaler")
for m in manifest.models:
    try:
        v = reg.resolve(f"{m.name}@best")
    except Exception as exc:
        print(f"  {m.name:<15} MISSING: {exc}"); ok = False; continue
    prov = v.provenance or {}
    good = v.verified and (v.accuracy or 0) >= min_acc and bool(prov)
    ok &= good
    sc = prov.get("scaler", {})
    how = f"recovered ({sc['recipe']})" if sc.get("recovered") else (v.scaler.recipe if v.scaler else "-")
    print(f"  {m.name:<15} {v.ref + ' @best':<18} {100 * v.accuracy:>8.2f}% {str(v.verified):<8} "
          f"{prov.get('source', '-'):<16} {how}")
print("  all manifest models verified in the registry:", "YES" if ok else "NO")
sys.exit(0 if ok else 1)
EOF
echo "registry check exit code: $?"

echo "== 3. ckreg export NAME@best --to $EXP/NAME, then a fresh process without ckreg"
rm -rf "$EXP"
names=$(python -c "from ckreg.manifest import load_manifest; print(' '.join(m.name for m in load_manifest('$MANIFEST').models))")
dirs=()
for n in $names; do
    ckreg export "$n@best" --to "$EXP/$n" --registry "$REG" > /dev/null && dirs+=("$EXP/$n")
done
python bench/e2e_export_check.py --data "$DATA" "${dirs[@]}"
echo "export check exit code: $?"

echo "== 4. ckreg export NAME@best --format onnx | onnx-int8 --quant dynamic|static, then onnxruntime + numpy only"
DEPLOY=${DEPLOY:-/tmp/ckreg-deploy}
rm -rf "$DEPLOY"
ddirs=()
for n in $names; do
    for kind in onnx dynamic static; do
        if [ "$kind" = onnx ]; then args=(--format onnx); else args=(--format onnx-int8 --quant "$kind"); fi
        ckreg export "$n@best" --to "$DEPLOY/$n-$kind" --registry "$REG" --data "$DATA" --threads 2 "${args[@]}" \
            > "$LOGS/deploy-$n-$kind.txt"
        echo "  $n $kind: exit $? ($(grep -m1 -o 'verified\|FAILED' "$LOGS/deploy-$n-$kind.txt"))"
        [ -f "$DEPLOY/$n-$kind/deploy.json" ] && ddirs+=("$DEPLOY/$n-$kind")
    done
done
python bench/e2e_deploy_check.py --data "$DATA" "${ddirs[@]}"
echo "deploy check exit code: $?"
