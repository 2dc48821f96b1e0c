#!/usr/bin/env bash
# Optional llama.cpp peer for the inference benchmarks (issue 14), as bench/pytorch_peer.py is for
# training. dsmoe4j does not depend on it: nothing in the build or the tests calls this script.
#
# It builds llama.cpp's llama-bench, llama-quantize, llama-batched-bench and llama-server (the
# serving peer of `./dsmoe bench serve --llama-server`) (CPU only, Release,
# GGML_NATIVE), writes a random-weight GGUF of the paper's Dense-1B shape as a Llama
# (bench/llamacpp_gguf.py, with the checkout's own gguf-py), quantizes it to bf16 and q8_0 with
# llama-quantize, and runs llama-bench on f32, bf16 and q8_0 (and, with --batched,
# llama-batched-bench at several parallel sequences). Run `bench/llamacpp_peer.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/llamacpp_peer.sh --src PATH [options]

  --src PATH          a llama.cpp checkout, or a bare git mirror of one (then it is cloned into
                      WORK/llama.cpp, without the models/*.gguf vocab files; --rev picks the commit)
  --rev REV           commit to check out when cloning a mirror (default: the mirror's HEAD)
  --work DIR          clone, GGUFs and raw outputs go here (default: target/llamacpp-peer,
                      which git ignores)
  --models DIR        where the GGUFs are written and reused (default: WORK/models)
  --build DIR         cmake build folder (default: SRC/build-dsmoe-peer)
  --no-build          use the binaries already in the build folder
  --force-gguf        rewrite the f32 GGUF and requantize even if the files exist
  --types LIST        weight types to measure, from f32,bf16,q8_0 (default: all three)
  -t, --threads N     threads for llama-bench / llama-batched-bench (default 2)
  -p, --prompt N      prompt tokens of the pp test (default 256)
  -n, --decode N      generated tokens of the tg test (default 64)
  -r, --reps N        llama-bench repetitions (default 5)
  -b, --batch N       llama-bench / batched-bench logical batch size (llama.cpp's default if unset)
  -ub, --ubatch N     physical batch size (llama.cpp's default if unset)
  --cache-type T      KV cache type for K and V (-ctk/-ctv; llama.cpp's default, f16, if unset;
                      dsmoe4j keeps an fp32 cache). llama-bench of early 2025 takes f16, bf16,
                      q8_0 and the 4/5-bit types but not f32; llama-batched-bench also takes f32
  --short             prompt 32, decode 32 (the batched-decode table's lengths)
  --batched           run llama-batched-bench instead of llama-bench: prompt not shared,
                      -npp PROMPT -ntg DECODE -npl NPL, context = max(NPL) * (PROMPT + DECODE)
  --npl LIST          parallel sequences for --batched (default 1,4,16,64)
  --json              print the raw JSONL (llama-bench -o jsonl, batched-bench --output-format
                      jsonl: one object per test, every field) instead of the summary table
  --gguf-args "..."   extra arguments for bench/llamacpp_gguf.py (e.g. "--layers 2" for a smoke test)
  PYTHON=...          python3 with numpy (default python3)

Examples (this machine):
  bench/llamacpp_peer.sh --src /work/peers/llama.cpp --models /work/peers/models
  bench/llamacpp_peer.sh --src /work/peers/llama.cpp --models /work/peers/models --short --batched
The GGUFs take 4.3 GiB (f32) + 2.2 GiB (bf16) + 1.1 GiB (q8_0) of disk.
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
src="" rev="" work="$repo/target/llamacpp-peer" models="" build="" do_build=1 force=0
types="f32,bf16,q8_0" threads=2 prompt=256 decode=64 reps=5 batch="" ubatch=""
cache_type="" batched=0 npl="1,4,16,64" json=0 gguf_args=""
PYTHON=${PYTHON:-python3}

while [ $# -gt 0 ]; do
  case "$1" in
    --src) src=$2; shift 2 ;;
    --rev) rev=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --force-gguf) force=1; shift ;;
    --types) types=$2; shift 2 ;;
    -t|--threads) threads=$2; shift 2 ;;
    -p|--prompt) prompt=$2; shift 2 ;;
    -n|--decode) decode=$2; shift 2 ;;
    -r|--reps) reps=$2; shift 2 ;;
    -b|--batch) batch=$2; shift 2 ;;
    -ub|--ubatch) ubatch=$2; shift 2 ;;
    --cache-type) cache_type=$2; shift 2 ;;
    --short) prompt=32; decode=32; shift ;;
    --batched) batched=1; shift ;;
    --npl) npl=$2; shift 2 ;;
    --json) json=1; shift ;;
    --gguf-args) gguf_args=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "llamacpp_peer: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
done
[ -n "$src" ] || { echo "llamacpp_peer: --src PATH (a llama.cpp checkout or a bare mirror) is required" >&2; exit 2; }
for ty in ${types//,/ }; do
  case "$ty" in f32|bf16|q8_0) ;; *) echo "llamacpp_peer: unknown type '$ty' (f32, bf16, q8_0)" >&2; exit 2 ;; esac
done
log() { echo "[llamacpp_peer] $*" >&2; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
models=${models:-$work/models}
mkdir -p "$models" "$work/out"

# --- the llama.cpp source ----------------------------------------------------------------------
# a git directory without a work tree (a bare clone or a mirror snapshot, which may not even say
# core.bare): clone it
if [ ! -f "$src/CMakeLists.txt" ] && [ -d "$src/objects" ] && git --git-dir="$src" rev-parse -q --verify HEAD >/dev/null 2>&1; then
  dest="$work/llama.cpp"
  if [ ! -d "$dest/.git" ]; then
    log "cloning mirror $src into $dest"
    git clone -q --no-checkout "$src" "$dest"
    # a mirror may lack the large vocab test files; nothing here needs them
    git -C "$dest" sparse-checkout set --no-cone '/*' '!/models/*.gguf' 2>/dev/null || true
  fi
  want=${rev:-$(git --git-dir="$src" rev-parse HEAD)}
  git -C "$dest" fetch -q origin "$want" 2>/dev/null || true   # a commit or tag not yet in the clone
  git -C "$dest" checkout -q "$want" 2>/dev/null || git -C "$dest" checkout -q FETCH_HEAD 2>/dev/null \
    || { echo "llamacpp_peer: cannot check out '$want' from $src" >&2; exit 2; }
  src=$dest
fi
[ -f "$src/CMakeLists.txt" ] && [ -d "$src/gguf-py/gguf" ] \
  || { echo "llamacpp_peer: $src is not a llama.cpp checkout (no CMakeLists.txt or gguf-py/)" >&2; exit 2; }
src=$(cd "$src" && pwd)
commit=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
describe=$(git -C "$src" describe --tags --always 2>/dev/null || echo unknown)
log "llama.cpp $commit ($describe) at $src"

# --- build -------------------------------------------------------------------------------------
build=${build:-$src/build-dsmoe-peer}
bin=$build/bin
if [ "$do_build" = 1 ]; then
  t0=$(date +%s)
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF >"$work/out/cmake-configure.log" 2>&1 \
    || { tail -20 "$work/out/cmake-configure.log" >&2; exit 1; }
  nice -n 10 cmake --build "$build" -j"$(nproc)" \
        --target llama-bench llama-quantize llama-batched-bench llama-server >"$work/out/cmake-build.log" 2>&1 \
    || { tail -30 "$work/out/cmake-build.log" >&2; exit 1; }
  log "build done in $(( $(date +%s) - t0 )) s ($build)"
fi
for b in llama-bench llama-quantize llama-batched-bench; do
  [ -x "$bin/$b" ] || { echo "llamacpp_peer: $bin/$b missing (build without --no-build)" >&2; exit 1; }
done

# --- GGUFs -------------------------------------------------------------------------------------
f32="$models/dense-1b-llama-f32.gguf"
if [ "$force" = 1 ] || [ ! -s "$f32" ]; then
  log "writing $f32"
  # shellcheck disable=SC2086
  "$PYTHON" "$here/llamacpp_gguf.py" --gguf-py "$src/gguf-py" --out "$f32" $gguf_args >&2
fi
declare -A file=([f32]="$f32")
for ty in bf16 q8_0; do
  file[$ty]="$models/dense-1b-llama-$ty.gguf"
  case ",$types," in *",$ty,"*) ;; *) continue ;; esac
  if [ "$force" = 1 ] || [ ! -s "${file[$ty]}" ] || [ "$f32" -nt "${file[$ty]}" ]; then
    qt=$( [ "$ty" = bf16 ] && echo BF16 || echo Q8_0 )
    log "llama-quantize -> ${file[$ty]} ($qt)"
    "$bin/llama-quantize" "$f32" "${file[$ty]}.part" "$qt" "$threads" >"$work/out/quantize-$ty.log" 2>&1 \
      || { tail -20 "$work/out/quantize-$ty.log" >&2; exit 1; }
    mv "${file[$ty]}.part" "${file[$ty]}"
  fi
done

# --- benchmark ---------------------------------------------------------------------------------
extra=()
[ -n "$batch" ] && extra+=(-b "$batch")
[ -n "$ubatch" ] && extra+=(-ub "$ubatch")
[ -n "$cache_type" ] && extra+=(-ctk "$cache_type" -ctv "$cache_type")
stamp=$(date +%Y%m%d-%H%M%S)
summary="$work/out/summary-$stamp.tsv"
: >"$summary"
echo "# llama.cpp $commit ($describe); $(lscpu | sed -n 's/^Model name: *//p'); $(nproc) CPUs; $(date -Is)" >&2

for ty in ${types//,/ }; do
  m=${file[$ty]}
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ "$batched" = 1 ]; then
    maxpl=$(tr ',' '\n' <<<"$npl" | sort -n | tail -1)
    ctx=$(( maxpl * (prompt + decode) ))
    cmd=("$bin/llama-batched-bench" -m "$m" -c "$ctx" -t "$threads" -tb "$threads"
         -npp "$prompt" -ntg "$decode" -npl "$npl" "${extra[@]}" --output-format jsonl)
    raw="$work/out/batched-$ty-$stamp.jsonl"
  else
    cmd=("$bin/llama-bench" -m "$m" -t "$threads" -p "$prompt" -n "$decode" -r "$reps" "${extra[@]}" -o jsonl)
    raw="$work/out/bench-$ty-$stamp.jsonl"
  fi
  log "load $load0: ${cmd[*]}"
  "${cmd[@]}" >"$raw" 2>"$raw.log" || { tail -20 "$raw.log" >&2; exit 1; }
  [ "$batched" = 1 ] && { grep '^{' "$raw.log" >>"$raw" || true; }   # batched-bench logs JSONL to stderr
  load1=$(cut -d' ' -f1-3 /proc/loadavg)
  printf '%s\t%s\t%s\t%s\n' "$ty" "$raw" "$load0" "$load1" >>"$summary"
  if [ "$json" = 1 ]; then cat "$raw"; fi
done

[ "$json" = 1 ] && exit 0
"$PYTHON" - "$summary" "$batched" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
batched = sys.argv[2] == "1"
if batched:
    print("| weights | B | prompt | decode | prefill t/s | decode t/s (all B) | per seq t/s | load before / after |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
else:
    print("| weights | size GiB | params | test | t/s | ± sd | threads | KV cache | load before / after |")
    print("|---|---:|---:|---|---:|---:|---:|---|---|")
for ty, raw, l0, l1 in rows:
    for line in open(raw):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if batched:
            print(f"| {ty} | {r['pl']} | {r['pp']} | {r['tg']} | {r['speed_pp']:.2f} | {r['speed_tg']:.2f} "
                  f"| {r['speed_tg'] / r['pl']:.2f} | {l0} / {l1} |")
        else:
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}" if r["n_prompt"] == 0 \
                else f"pp{r['n_prompt']}+tg{r['n_gen']}"
            print(f"| {ty} | {r['model_size'] / 2**30:.2f} | {r['model_n_params'] / 1e9:.3f} B | {test} "
                  f"| {r['avg_ts']:.2f} | {r['stddev_ts']:.2f} | {r['n_threads']} | {r['type_k']} | {l0} / {l1} |")
PY
