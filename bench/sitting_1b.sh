#!/usr/bin/env bash
# One "sitting" of issue 14's single-stream targets at the paper's 1B shapes: llama.cpp, then ours
# (dense-1b and dsmoe-1b top-9 timed round by round, one process per weight type, each followed by
# bench infer's memory read probe; then their decode again from an empty cache, after a one-token prompt, as
# llama-bench's tg test decodes: its n_prompt is 0), then llama.cpp again; prints the ratios the targets are stated in, each against the
# mean of llama.cpp's two runs around ours (a shared host drifts by tens of percent within minutes,
# so only ratios of one sitting mean anything). Optional, like bench/llamacpp_peer.sh, which it calls
# (with --no-build: build llama.cpp and write the GGUFs with that script first).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/sitting_1b.sh --llama-src PATH [options]

  --llama-src PATH   the llama.cpp checkout bench/llamacpp_peer.sh built (its build-dsmoe-peer folder)
  --work DIR         llamacpp_peer.sh's work folder (default: target/llamacpp-peer)
  --models DIR       its GGUFs (default: WORK/models)
  --out DIR          raw outputs of this sitting (default: target/sitting-<time>)
  --types LIST       weight types, from f32,bf16,q8_0 (default: all three)
  -p, --prompt N     prompt tokens (default 256)
  -n, --decode N     decoded tokens (default 32)
  -r, --reps N       llama-bench repetitions per run (default 2)
  --repeats N        our timed rounds (default 3)
  --summary-only     only print the table of the sitting already in --out (its raw files)

Example (this machine, about 10 minutes):
  bench/sitting_1b.sh --llama-src /work/peers/llama.cpp --work /work/peers --models /work/peers/models
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
src="" work="$repo/target/llamacpp-peer" models="" out="" types="f32,bf16,q8_0" prompt=256 decode=32 reps=2 repeats=3 only=0
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-src) src=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --types) types=$2; shift 2 ;;
    -p|--prompt) prompt=$2; shift 2 ;;
    -n|--decode) decode=$2; shift 2 ;;
    -r|--reps) reps=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --summary-only) only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "sitting_1b.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for ty in ${types//,/ }; do
  case "$ty" in f32|bf16|q8_0) ;; *) echo "sitting_1b.sh: unknown weight type '$ty' (f32, bf16, q8_0)" >&2; exit 2 ;; esac
done
if [ "$only" = 1 ]; then
  [ -n "$out" ] && [ -f "$out/llama2.md" ] || { echo "sitting_1b.sh: --summary-only needs --out DIR of a finished sitting" >&2; exit 2; }
else
[ -n "$src" ] || { echo "sitting_1b.sh: --llama-src is required (see --help)" >&2; exit 2; }
[ -n "$models" ] || models="$work/models"
[ -n "$out" ] || out="$repo/target/sitting-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"

peer=(env -u OPENBLAS_CORETYPE "$here/llamacpp_peer.sh" --src "$src" --work "$work" --models "$models" --no-build
      --types "$types" -p "$prompt" -n "$decode" -r "$reps")
log() { echo "[sitting $(date -u +%H:%M:%S)] $*" >&2; }

log "llama.cpp, first run"
"${peer[@]}" >"$out/llama1.md" 2>"$out/llama1.log" || { tail -20 "$out/llama1.log" >&2; exit 1; }
for ty in ${types//,/ }; do
  log "dsmoe4j $ty"
  (cd "$repo" && env -u OPENBLAS_CORETYPE ./dsmoe bench infer --presets dense-1b,dsmoe-1b --strategies top-k:9 --dtype "$ty" \
      --prompt "$prompt" --decode "$decode" --repeats "$repeats" --warmup 1 --json) >"$out/ours-$ty.jsonl" 2>"$out/ours-$ty.log" \
    || { tail -20 "$out/ours-$ty.log" >&2; exit 1; }
  # llama-bench's tg test decodes from an empty cache (its n_prompt is 0): the same for ours, after a one-token prompt
  log "dsmoe4j $ty, decode from an empty cache"
  (cd "$repo" && env -u OPENBLAS_CORETYPE ./dsmoe bench infer --presets dense-1b,dsmoe-1b --strategies top-k:9 --dtype "$ty" \
      --prompt 1 --decode "$decode" --repeats "$repeats" --warmup 1 --json) >"$out/ours-$ty-empty.jsonl" 2>"$out/ours-$ty-empty.log" \
    || { tail -20 "$out/ours-$ty-empty.log" >&2; exit 1; }
done
log "llama.cpp, second run"
"${peer[@]}" >"$out/llama2.md" 2>"$out/llama2.log" || { tail -20 "$out/llama2.log" >&2; exit 1; }
log "done: $out"
fi

"$PYTHON" - "$out" "$types" "$prompt" "$decode" <<'PY'
import json, os, re, sys
out, types, prompt, decode = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
def llama(path):
    r = {}
    for line in open(path):
        c = [x.strip() for x in line.split("|")]
        if len(c) > 6 and c[1] in types and re.match(r"(pp|tg)\d+$", c[4]):
            r[(c[1], c[4][:2])] = float(c[5])
    return r
def ours(path):
    rows = {}
    for line in open(path):
        if line.startswith("{"):
            r = json.loads(line)
            if "prefillTokensPerSecond" in r:
                rows[r["model"]] = r
            elif "readProbeGBPerSecond" in r:
                rows["probe"] = r["readProbeGBPerSecond"]  # bench infer's own probe, right after these rows
    return rows
l1, l2 = llama(f"{out}/llama1.md"), llama(f"{out}/llama2.md")
def gb(r, read):  # decode GB/s of weights, and its fraction of the read probe
    return f"{r['decodeGBPerSecond']:.1f}" + (f", {r['decodeGBPerSecond'] / read:.2f} of the probe" if read else "")
empty = all(os.path.exists(f"{out}/ours-{ty}-empty.jsonl") for ty in types)
print(f"prompt {prompt}, decode {decode}; ratios to the mean of llama.cpp's two runs; fractions of the read probe that each "
      f"bench infer ran right after its rows")
if empty:
    print(f"decode as llama-bench's tg{decode} measures it: from an empty cache (ours after a one-token prompt); "
          f"in brackets ours after the {prompt}-token prompt (attention over {prompt} more positions)")
else:
    print(f"decode after the {prompt}-token prompt (this sitting has no empty-cache runs; llama-bench's tg starts from an empty cache)")
print("| weights | llama.cpp pp / tg, 1st; 2nd | dense-1b prefill / decode (GB/s) | dsmoe-1b top-9 prefill / decode (GB/s) "
      "| dense prefill vs llama | dense decode vs llama | dsmoe decode vs llama (target 2x) | dsmoe / dense prefill (target 1.6x) |")
print("|---|---|---|---|---:|---:|---:|---:|")
for ty in types:
    rows = ours(f"{out}/ours-{ty}.jsonl")
    d, s, pr = rows["dense-1b"], rows["dsmoe-1b"], rows.get("probe")
    if empty:
        e = ours(f"{out}/ours-{ty}-empty.jsonl")
        de, se, pe = e["dense-1b"], e["dsmoe-1b"], e.get("probe")
    else:
        de, se, pe = d, s, pr
    pp = (l1[(ty, "pp")] + l2[(ty, "pp")]) / 2
    tg = (l1[(ty, "tg")] + l2[(ty, "tg")]) / 2
    after = lambda r: f" [{r['decodeTokensPerSecond']:.1f}]" if empty else ""
    print(f"| {ty} | {l1[(ty, 'pp')]:.2f} / {l1[(ty, 'tg')]:.2f}; {l2[(ty, 'pp')]:.2f} / {l2[(ty, 'tg')]:.2f} "
          f"| {d['prefillTokensPerSecond']:.0f} / {de['decodeTokensPerSecond']:.1f}{after(d)} ({gb(de, pe)}) "
          f"| {s['prefillTokensPerSecond']:.0f} / {se['decodeTokensPerSecond']:.1f}{after(s)} ({gb(se, pe)}) "
          f"| {d['prefillTokensPerSecond'] / pp:.2f}x | {de['decodeTokensPerSecond'] / tg:.2f}x "
          f"| {se['decodeTokensPerSecond'] / tg:.2f}x | {s['prefillTokensPerSecond'] / d['prefillTokensPerSecond']:.2f}x |")
PY
